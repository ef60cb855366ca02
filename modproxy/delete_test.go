package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"agora/auth"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
)

func TestDeleteAuthorization(t *testing.T) {
	tests := []struct {
		name string
		who  auth.Principal
		opts modproxy.DeleteOptions
		want error
	}{
		{"publisher deletes own version", alice, modproxy.DeleteOptions{Reason: "superseded"}, nil},
		{"publisher deletes another's version", bob, modproxy.DeleteOptions{}, modproxy.ErrForbidden},
		{"publisher blocks own version", alice, modproxy.DeleteOptions{Block: true}, modproxy.ErrForbidden},
		{"publisher with a read token", auth.Principal{User: "alice", Role: auth.RolePublisher, Scope: auth.ScopeRead}, modproxy.DeleteOptions{}, modproxy.ErrForbidden},
		{"viewer", reader, modproxy.DeleteOptions{}, modproxy.ErrForbidden},
		{"anonymous", nobody, modproxy.DeleteOptions{}, modproxy.ErrForbidden},
		{"admin deletes", admin, modproxy.DeleteOptions{}, nil},
		{"admin blocks", admin, modproxy.DeleteOptions{Reason: "malware", Block: true}, nil},
		{"reason too long", alice, modproxy.DeleteOptions{Reason: strings.Repeat("x", modproxy.MaxReasonLen+1)}, modproxy.ErrInvalid},
		{"reason not UTF-8", admin, modproxy.DeleteOptions{Reason: "\xff"}, modproxy.ErrInvalid},
		{"reason with a NUL byte", admin, modproxy.DeleteOptions{Reason: "a\x00b"}, modproxy.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := newTestRegistry(t)
			r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))
			r.clock.Advance(time.Microsecond) // the stores keep microseconds

			err := r.Delete(ctx, tt.who, "example.com/m", "v1.0.0", tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Delete = %v; want %v", err, tt.want)
			}
			v, verr := r.meta.Version(ctx, "example.com/m", "v1.0.0")
			if verr != nil {
				t.Fatal(verr)
			}
			if tt.want != nil {
				if !v.Live() {
					t.Errorf("a refused delete tombstoned the version: %+v", v)
				}
				r.read(t, "example.com/m", "v1.0.0", storage.Zip)
				if got := r.actions(); len(got) != 1 {
					t.Errorf("audit log = %q; want the publish only", got)
				}
				return
			}
			if v.Live() || v.DeletedBy != tt.who.User || !v.DeletedAt.Equal(t0.Add(time.Microsecond)) || v.DeleteReason != tt.opts.Reason || v.Blocked != tt.opts.Block {
				t.Errorf("tombstone = %+v; want deleted at %v by %s, reason %q, blocked %v", v, t0.Add(time.Microsecond), tt.who.User, tt.opts.Reason, tt.opts.Block)
			}
			if _, _, err := r.Open(ctx, "example.com/m", "v1.0.0", storage.Mod); !errors.Is(err, modproxy.ErrGone) {
				t.Errorf("Open after delete = %v; want ErrGone", err)
			}
			action := modproxy.ActionDelete
			if tt.opts.Block {
				action = modproxy.ActionBlock
			}
			events := r.meta.Events()
			if e := events[len(events)-1]; e.Action != action || e.Actor != tt.who.User || e.Detail != tt.opts.Reason {
				t.Errorf("last audit event = %+v; want %s by %s with detail %q", e, action, tt.who.User, tt.opts.Reason)
			}
		})
	}
}

func TestDeleteTwice(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))

	if err := r.Delete(ctx, alice, "example.com/m", "v1.0.0", modproxy.DeleteOptions{Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, alice, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("second Delete = %v; want ErrGone", err)
	}
	r.clock.Advance(time.Microsecond) // the stores keep microseconds
	// An administrator may still block a version that was only deleted; the
	// deletion keeps its time and author.
	if err := r.Delete(ctx, admin, "example.com/m", "v1.0.0", modproxy.DeleteOptions{Reason: "malware", Block: true}); err != nil {
		t.Fatalf("blocking a deleted version: %v", err)
	}
	v, err := r.meta.Version(ctx, "example.com/m", "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !v.Blocked || v.DeletedBy != "alice" || !v.DeletedAt.Equal(t0) || v.DeleteReason != "malware" {
		t.Errorf("after block = %+v; want blocked, deleted by alice at %v, reason malware", v, t0)
	}
	if err := r.Delete(ctx, admin, "example.com/m", "v1.0.0", modproxy.DeleteOptions{Block: true}); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("blocking twice = %v; want ErrGone", err)
	}
	want := []string{"publish alice example.com/m@v1.0.0", "delete alice example.com/m@v1.0.0", "block root example.com/m@v1.0.0"}
	if got := r.actions(); !slices.Equal(got, want) {
		t.Errorf("audit log = %q; want %q", got, want)
	}
}

func TestDeleteInvalid(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))
	tests := []struct {
		path, version string
		want          error
	}{
		{"example.com/m", "v1.0.1", modproxy.ErrNotFound},
		{"example.com/other", "v1.0.0", modproxy.ErrNotFound},
		{"example.com/m", "v1.0", modproxy.ErrInvalid},
		{"example.com/m", "master", modproxy.ErrInvalid},
		{"example.com/m", "v2.0.0", modproxy.ErrInvalid},
		{"Example.com/m", "v1.0.0", modproxy.ErrInvalid},
	}
	for _, tt := range tests {
		if err := r.Delete(ctx, admin, tt.path, tt.version, modproxy.DeleteOptions{}); !errors.Is(err, tt.want) {
			t.Errorf("Delete(%s@%s) = %v; want %v", tt.path, tt.version, err, tt.want)
		}
		if err := r.Purge(ctx, admin, tt.path, tt.version, "reason"); !errors.Is(err, tt.want) {
			t.Errorf("Purge(%s@%s) = %v; want %v", tt.path, tt.version, err, tt.want)
		}
	}
}

func TestDeleteModule(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	publishAll(t, r, "example.com/m", "v1.0.0", "v1.1.0", "v1.2.0")
	publishAll(t, r, "example.com/m/v2", "v2.0.0")
	if err := r.Delete(ctx, alice, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	n, err := r.DeleteModule(ctx, alice, "example.com/m", modproxy.DeleteOptions{Reason: "retired"})
	if err != nil || n != 2 {
		t.Fatalf("DeleteModule = %d, %v; want 2 (one of three was already deleted)", n, err)
	}
	if _, err := r.DeleteModule(ctx, alice, "example.com/m", modproxy.DeleteOptions{}); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("DeleteModule again = %v; want ErrGone", err)
	}
	// Blocking reaches the versions that were only deleted.
	if n, err := r.DeleteModule(ctx, admin, "example.com/m", modproxy.DeleteOptions{Block: true}); err != nil || n != 3 {
		t.Errorf("DeleteModule(block) = %d, %v; want 3", n, err)
	}
	if _, err := r.DeleteModule(ctx, admin, "example.com/m", modproxy.DeleteOptions{Block: true}); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("DeleteModule(block) again = %v; want ErrGone", err)
	}
	// The module at /v2 is another module.
	if list, err := r.List(ctx, "example.com/m/v2"); err != nil || !slices.Equal(list, []string{"v2.0.0"}) {
		t.Errorf("List(example.com/m/v2) = %q, %v; want [v2.0.0]", list, err)
	}
	if _, err := r.DeleteModule(ctx, admin, "example.com/none", modproxy.DeleteOptions{}); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("DeleteModule(unknown) = %v; want ErrNotFound", err)
	}
}

// TestDeleteModuleAllOrNothing checks that a publisher who may not delete
// every version deletes none: the versions they could delete are rolled back
// with the transaction, whatever order the store returns them in.
func TestDeleteModuleAllOrNothing(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	for _, version := range []string{"v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"} {
		r.publish(t, alice, "example.com/m", version, moduleZip(t, "example.com/m", version, version))
	}
	r.publish(t, bob, "example.com/m", "v1.4.0", moduleZip(t, "example.com/m", "v1.4.0", "bob's"))
	filesBefore := r.storedFiles(t)

	for range 10 { // MemStore returns versions in random order
		if _, err := r.DeleteModule(ctx, alice, "example.com/m", modproxy.DeleteOptions{}); !errors.Is(err, modproxy.ErrForbidden) {
			t.Fatalf("DeleteModule by alice = %v; want ErrForbidden", err)
		}
	}
	all, err := r.meta.Versions(ctx, "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range all {
		if !v.Live() {
			t.Errorf("%s was tombstoned by a refused DeleteModule", v.Version)
		}
	}
	if got := r.storedFiles(t); len(got) != len(filesBefore) {
		t.Errorf("storage holds %d files; want the %d from before", len(got), len(filesBefore))
	}
	if got := r.actions(); len(got) != 5 {
		t.Errorf("audit log = %q; want the five publishes only", got)
	}
}

// afterUpdate is a Metadata that runs hook once, right after the first
// transaction to commit once hook is set. The hook may use the store.
type afterUpdate struct {
	modproxy.Metadata
	hook atomic.Pointer[func()]
}

func (m *afterUpdate) Update(ctx context.Context, fn func(tx modproxy.MetadataTx) error) error {
	if err := m.Metadata.Update(ctx, fn); err != nil {
		return err
	}
	if hook := m.hook.Swap(nil); hook != nil {
		(*hook)()
	}
	return nil
}

// A delete commits its tombstone before it removes the files. An identical
// upload that restores the version in between must keep its files: the
// version is live again, so it must still be served.
func TestDeleteRacingIdenticalRestore(t *testing.T) {
	fake := modproxytest.NewMemStore()
	meta := &afterUpdate{Metadata: fake}
	r := newTestRegistryOn(t, meta, fake)
	zipData := moduleZip(t, "example.com/a", "v1.0.0", "package a\n")
	r.publish(t, alice, "example.com/a", "v1.0.0", zipData)

	restore := func() {
		// Runs after Delete's transaction commits, before its files go.
		res, err := r.Publish(context.Background(), alice, "example.com/a", "v1.0.0", bytes.NewReader(zipData))
		if err != nil || !res.Created {
			t.Errorf("restoring publish: %+v, %v", res, err)
		}
	}
	meta.hook.Store(&restore)
	if err := r.Delete(context.Background(), alice, "example.com/a", "v1.0.0", modproxy.DeleteOptions{Reason: "oops"}); err != nil {
		t.Fatal(err)
	}
	if got := r.read(t, "example.com/a", "v1.0.0", storage.Zip); !bytes.Equal(got, zipData) {
		t.Errorf("after a delete raced by a restore, the zip served is %d bytes, want the %d published", len(got), len(zipData))
	}
}

// TestChangesOutliveTheirCaller checks that a delete, and a publish, whose
// caller goes away once the change is committed, as a request's does when
// its client hangs up, still bring the module's @v/list file up to date:
// the change is made, and the storage tree, a GOPROXY=file:// directory,
// must show it. The list named a deleted version, and missed a published
// one, until storage:verify rewrote it.
func TestChangesOutliveTheirCaller(t *testing.T) {
	fake := modproxytest.NewMemStore()
	meta := &afterUpdate{Metadata: fake}
	r := newTestRegistryOn(t, meta, fake)
	r.publish(t, alice, "example.com/a", "v1.0.0", moduleZip(t, "example.com/a", "v1.0.0", "package a\n"))
	list := func() string { return r.storedFiles(t)["example.com/a/@v/list"] }

	// The caller hangs up once the change is committed.
	hangUp := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		hook := func() { cancel() }
		meta.hook.Store(&hook)
		return ctx
	}
	res, err := r.Publish(hangUp(), alice, "example.com/a", "v1.1.0", bytes.NewReader(moduleZip(t, "example.com/a", "v1.1.0", "package a\n")))
	if err != nil || !res.Created {
		t.Fatalf("publish: %+v, %v", res, err)
	}
	if got, want := list(), "v1.0.0\nv1.1.0\n"; got != want {
		t.Errorf("@v/list after a publish whose caller hung up = %q; want %q", got, want)
	}
	if err := r.Delete(hangUp(), alice, "example.com/a", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := list(), "v1.1.0\n"; got != want {
		t.Errorf("@v/list after a delete whose caller hung up = %q; want %q", got, want)
	}
	if _, ok := r.storedFiles(t)["example.com/a/@v/v1.0.0.zip"]; ok {
		t.Error("the deleted version's zip is still stored")
	}
}

// readOnlyStore is a storage.Store that removes nothing: a storage
// directory remounted read-only, or a process killed between a delete's
// commit and the removal of its files.
type readOnlyStore struct{ storage.Store }

func (readOnlyStore) Delete(ctx context.Context, path, version string) error {
	return &os.PathError{Op: "remove", Path: path + "@" + version, Err: syscall.EROFS}
}

func (readOnlyStore) PutList(ctx context.Context, path string, versions []string) error {
	return &os.PathError{Op: "open", Path: path + "/@v/list", Err: syscall.EROFS}
}

// TestDeleteAgainRemovesFilesLeftBehind checks that a delete whose files
// outlived its tombstone (the server killed between the two, the storage
// read-only or failing) can be finished by running it again: the second
// delete is Gone, as the version is, and removes its files and rewrites
// the @v/list file. Else the storage tree, a GOPROXY=file:// directory,
// serves and lists the deleted (perhaps blocked) version forever, as its
// @latest even (storage:verify reports them).
func TestDeleteAgainRemovesFilesLeftBehind(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		delete func(s *modproxy.Service) error
	}{
		{"version", func(s *modproxy.Service) error {
			return s.Delete(ctx, admin, "example.com/m", "v1.1.0", modproxy.DeleteOptions{Reason: "broken", Block: true})
		}},
		{"module", func(s *modproxy.Service) error {
			_, err := s.DeleteModule(ctx, admin, "example.com/m", modproxy.DeleteOptions{Reason: "retired"})
			return err
		}},
		{"purge", func(s *modproxy.Service) error {
			return s.Purge(ctx, admin, "example.com/m", "v1.1.0", "leaked a secret")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRegistry(t)
			publishAll(t, r, "example.com/m", "v1.0.0", "v1.1.0")
			before := r.storedFiles(t)
			failing := r.node(t, func(c *modproxy.Config) { c.Blobs = readOnlyStore{r.disk} })
			if err := tt.delete(failing); err != nil {
				t.Fatalf("delete, its files not removed: %v", err)
			}
			if got := r.storedFiles(t); !maps.Equal(got, before) {
				t.Fatalf("the failing storage removed files: %q", sortedKeys(got))
			}

			want := modproxy.ErrGone
			if tt.name == "purge" { // the record is forgotten
				want = modproxy.ErrNotFound
			}
			if err := tt.delete(r.Service); !errors.Is(err, want) {
				t.Errorf("delete again = %v; want %v", err, want)
			}
			live := map[string]bool{}
			if tt.name != "module" {
				live = map[string]bool{"example.com/m/@v/v1.0.0.info": true, "example.com/m/@v/v1.0.0.mod": true, "example.com/m/@v/v1.0.0.zip": true, "example.com/m/@v/list": true}
			}
			got := r.storedFiles(t)
			if !slices.Equal(sortedKeys(got), slices.Sorted(maps.Keys(live))) {
				t.Errorf("storage after the delete again holds %q; want %q", sortedKeys(got), slices.Sorted(maps.Keys(live)))
			}
			if list, ok := got["example.com/m/@v/list"]; ok && list != "v1.0.0\n" {
				t.Errorf("@v/list = %q; want the live version only", list)
			}
		})
	}
}
