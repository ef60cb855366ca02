package modproxy_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	modzip "golang.org/x/mod/zip"

	"agora/auth"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
)

func TestPublishRecordsVersion(t *testing.T) {
	r := newTestRegistry(t)
	upload := moduleZip(t, "example.com/m", "v1.2.3", "first")
	res := r.publish(t, alice, "example.com/m", "v1.2.3", upload)

	zipHash := hashZipBytes(t, upload)
	modHash := hashGoMod(t, []byte(goMod("example.com/m")))
	want := modproxy.Version{
		Path:        "example.com/m",
		Version:     "v1.2.3",
		Time:        t0,
		Size:        int64(len(upload)),
		ZipHash:     zipHash,
		ModHash:     modHash,
		Source:      modproxy.SourceUploaded,
		PublishedBy: "alice",
		PublishedAt: t0,
	}
	if *res.Version != want {
		t.Errorf("Publish = %+v\nwant %+v", *res.Version, want)
	}
	recorded, err := r.meta.Version(context.Background(), "example.com/m", "v1.2.3")
	if err != nil || *recorded != want {
		t.Errorf("recorded %+v, %v\nwant %+v", recorded, err, want)
	}
	wantSum := []string{
		"example.com/m v1.2.3 " + zipHash,
		"example.com/m v1.2.3/go.mod " + modHash,
	}
	if got := res.GoSum(); !slices.Equal(got, wantSum) {
		t.Errorf("GoSum() = %q\nwant %q", got, wantSum)
	}
	if got, want := r.actions(), []string{"publish alice example.com/m@v1.2.3"}; !slices.Equal(got, want) {
		t.Errorf("audit log = %q; want %q", got, want)
	}
	if e := r.meta.Events()[0]; !strings.Contains(e.Detail, zipHash) || !e.At.Equal(t0) {
		t.Errorf("publish event = %+v; want it at %v naming %s", e, t0, zipHash)
	}
	r.assertTempDirEmpty(t)
}

func TestPublishIdenticalAgain(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	upload := moduleZip(t, "example.com/m", "v1.0.0", "first")
	first := r.publish(t, alice, "example.com/m", "v1.0.0", upload)
	r.clock.Advance(time.Hour)

	res, err := r.Publish(ctx, bob, "example.com/m", "v1.0.0", bytes.NewReader(upload))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created {
		t.Error("Created = true for an identical upload; want false")
	}
	if *res.Version != *first.Version {
		t.Errorf("identical upload reported %+v; want the first record %+v", *res.Version, *first.Version)
	}
	if got := r.actions(); len(got) != 1 {
		t.Errorf("audit log = %q; want the first publish only", got)
	}
	r.assertTempDirEmpty(t)
}

func TestPublishConflict(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	first := moduleZip(t, "example.com/m", "v1.0.0", "first")
	r.publish(t, alice, "example.com/m", "v1.0.0", first)
	other := moduleZip(t, "example.com/m", "v1.0.0", "other")

	_, err := r.Publish(ctx, bob, "example.com/m", "v1.0.0", bytes.NewReader(other))
	var cerr *modproxy.ConflictError
	if !errors.As(err, &cerr) || !errors.Is(err, modproxy.ErrConflict) {
		t.Fatalf("Publish(other content) = %v; want a *ConflictError wrapping ErrConflict", err)
	}
	want := modproxy.ConflictError{
		Path: "example.com/m", Version: "v1.0.0",
		RecordedHash: hashZipBytes(t, first), UploadedHash: hashZipBytes(t, other),
	}
	if *cerr != want {
		t.Errorf("ConflictError = %+v; want %+v", *cerr, want)
	}
	for _, h := range []string{want.RecordedHash, want.UploadedHash} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not name hash %s", err, h)
		}
	}
	if got := r.read(t, "example.com/m", "v1.0.0", storage.Zip); !bytes.Equal(got, first) {
		t.Error("the stored zip changed after a conflicting upload")
	}
	wantLog := []string{"publish alice example.com/m@v1.0.0", "publish.rejected bob example.com/m@v1.0.0"}
	if got := r.actions(); !slices.Equal(got, wantLog) {
		t.Errorf("audit log = %q; want %q", got, wantLog)
	}
	if e := r.meta.Events()[1]; !strings.Contains(e.Detail, want.UploadedHash) {
		t.Errorf("rejection event detail %q does not name the uploaded hash", e.Detail)
	}
	r.assertTempDirEmpty(t)
}

// TestPublishAfterDelete walks a version through delete, re-upload, block
// and purge, checking at each step what publishing it again does.
func TestPublishAfterDelete(t *testing.T) {
	ctx := context.Background()
	const path, version = "example.com/m", "v1.0.0"
	r := newTestRegistry(t)
	first := moduleZip(t, path, version, "first")
	other := moduleZip(t, path, version, "other")
	r.publish(t, alice, path, version, first)
	r.clock.Advance(time.Hour)

	if err := r.Delete(ctx, alice, path, version, modproxy.DeleteOptions{Reason: "oops"}); err != nil {
		t.Fatal(err)
	}

	// Deleted: other content still conflicts, naming the deletion.
	_, err := r.Publish(ctx, alice, path, version, bytes.NewReader(other))
	var cerr *modproxy.ConflictError
	if !errors.As(err, &cerr) || !cerr.Deleted {
		t.Fatalf("Publish(other content) after delete = %v; want a *ConflictError with Deleted", err)
	}
	if !strings.Contains(err.Error(), "later deleted") {
		t.Errorf("error %q does not say the version was deleted", err)
	}

	// Deleted: identical content restores it, with its original time.
	r.clock.Advance(time.Hour)
	res := r.publish(t, bob, path, version, first)
	if !res.Time.Equal(t0) || res.PublishedBy != "bob" || !res.Live() {
		t.Errorf("restored version = %+v; want live, published by bob, with time %v", *res.Version, t0)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, first) {
		t.Error("the restored version serves another zip")
	}
	if got := r.read(t, path, version, storage.Info); !strings.Contains(string(got), t0.Format(time.RFC3339)) {
		t.Errorf(".info = %s; want the original time %v", got, t0)
	}
	if list, err := r.List(ctx, path); err != nil || !slices.Equal(list, []string{version}) {
		t.Errorf("List = %q, %v; want [%s]", list, err, version)
	}

	// Blocked: not even identical content comes back.
	if err := r.Delete(ctx, admin, path, version, modproxy.DeleteOptions{Reason: "malware", Block: true}); err != nil {
		t.Fatal(err)
	}
	filesBefore := r.storedFiles(t)
	if _, err := r.Publish(ctx, alice, path, version, bytes.NewReader(first)); !errors.Is(err, modproxy.ErrGone) {
		t.Fatalf("Publish(identical) after block = %v; want ErrGone", err)
	}
	if got := r.storedFiles(t); !slices.Equal(sortedKeys(got), sortedKeys(filesBefore)) {
		t.Errorf("storage holds %q after a refused upload; want %q", sortedKeys(got), sortedKeys(filesBefore))
	}

	// Purge needs an administrator and a reason.
	if err := r.Purge(ctx, alice, path, version, "mine"); !errors.Is(err, modproxy.ErrForbidden) {
		t.Errorf("Purge by a publisher = %v; want ErrForbidden", err)
	}
	if err := r.Purge(ctx, admin, path, version, ""); !errors.Is(err, modproxy.ErrInvalid) {
		t.Errorf("Purge without a reason = %v; want ErrInvalid", err)
	}
	if err := r.Purge(ctx, admin, path, version, "wrong content, approved"); err != nil {
		t.Fatal(err)
	}
	r.assertNoRecord(t, path, version)

	// Purged: other content is a new version.
	res = r.publish(t, alice, path, version, other)
	if res.ZipHash != hashZipBytes(t, other) {
		t.Errorf("ZipHash = %s; want the new content's", res.ZipHash)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, other) {
		t.Error("after purge and publish, the old zip is served")
	}

	wantLog := []string{
		"publish alice example.com/m@v1.0.0",
		"delete alice example.com/m@v1.0.0",
		"publish.rejected alice example.com/m@v1.0.0",
		"publish bob example.com/m@v1.0.0",
		"block root example.com/m@v1.0.0",
		"purge root example.com/m@v1.0.0",
		"publish alice example.com/m@v1.0.0",
	}
	if got := r.actions(); !slices.Equal(got, wantLog) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLog, "\n"))
	}
	if e := r.meta.Events()[5]; !strings.Contains(e.Detail, hashZipBytes(t, first)) {
		t.Errorf("purge event detail %q does not name the forgotten hash", e.Detail)
	}
}

// TestPublishRefused checks uploads refused before their zip is looked at
// store nothing and leave no temporary file.
func TestPublishRefused(t *testing.T) {
	valid := moduleZip(t, "example.com/m", "v1.0.0", "x")
	tests := []struct {
		name string
		who  auth.Principal
		body io.Reader
		want error
	}{
		{"anonymous", nobody, bytes.NewReader(valid), modproxy.ErrForbidden},
		{"read scope", reader, bytes.NewReader(valid), modproxy.ErrForbidden},
		{"read token of a publisher", auth.Principal{User: "alice", Role: auth.RolePublisher, Scope: auth.ScopeRead}, bytes.NewReader(valid), modproxy.ErrForbidden},
		{"empty body", alice, strings.NewReader(""), modproxy.ErrInvalid},
		{"not a zip", alice, strings.NewReader("PK but not really a zip"), modproxy.ErrInvalid},
		{"truncated zip", alice, bytes.NewReader(valid[:len(valid)/2]), modproxy.ErrInvalid},
		{"over the size limit", alice, io.LimitReader(zeros{}, modzip.MaxZipFile+10), modproxy.ErrTooLarge},
		{"failing body", alice, io.MultiReader(bytes.NewReader(valid[:10]), failingReader{}), errBodyFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRegistry(t)
			res, err := r.Publish(context.Background(), tt.who, "example.com/m", "v1.0.0", tt.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Publish = %+v, %v; want an error wrapping %q", res, err, tt.want)
			}
			if files := r.storedFiles(t); len(files) != 0 {
				t.Errorf("storage holds %q; want nothing", sortedKeys(files))
			}
			r.assertNoRecord(t, "example.com/m", "v1.0.0")
			r.assertTempDirEmpty(t)
			if got := r.meta.Events(); len(got) != 0 {
				t.Errorf("audit log = %+v; want empty", got)
			}
		})
	}
}

// zeros is an endless reader of zero bytes, to stand for a huge upload
// without holding it in memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// errBodyFailed is what failingReader returns.
var errBodyFailed = errors.New("connection reset")

// failingReader is an upload body whose connection breaks.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBodyFailed }

// TestPublishZipBomb checks that a small zip whose entries claim more than
// modzip.MaxZipFile bytes uncompressed is refused without being extracted.
func TestPublishZipBomb(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		size uint64
	}{
		{"example.com/m@v1.0.0/go.mod", uint64(len(goMod("example.com/m")))},
		{"example.com/m@v1.0.0/big.txt", modzip.MaxZipFile + 1},
	} {
		// Stored raw: the header claims the size; CheckZip must believe it.
		w, err := zw.CreateRaw(&zip.FileHeader{Name: f.name, Method: zip.Store, UncompressedSize64: f.size, CompressedSize64: 1})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	r := newTestRegistry(t)
	_, err := r.Publish(context.Background(), alice, "example.com/m", "v1.0.0", &buf)
	if !errors.Is(err, modproxy.ErrInvalid) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Publish(zip bomb) = %v; want ErrInvalid saying the contents are too large", err)
	}
	if files := r.storedFiles(t); len(files) != 0 {
		t.Errorf("storage holds %q; want nothing", sortedKeys(files))
	}
	r.assertTempDirEmpty(t)
}

// TestPublishLosesRace covers uploads whose transaction read no record, but
// whose insert then found one committed by a concurrent transaction: what a
// SQL database allows and MemStore, serialising transactions, does not.
func TestPublishLosesRace(t *testing.T) {
	const path, version = "example.com/m", "v1.0.0"
	first := moduleZip(t, path, version, "first")
	tests := []struct {
		name        string
		upload      []byte
		wantCreated bool
		wantErr     error
	}{
		{"identical", first, false, nil},
		{"other content", moduleZip(t, path, version, "other"), false, modproxy.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			fake := modproxytest.NewMemStore()
			r := newTestRegistryOn(t, &staleReads{MemStore: fake}, fake)
			r.publish(t, alice, path, version, first)
			filesBefore := r.storedFiles(t)

			res, err := r.Publish(ctx, bob, path, version, bytes.NewReader(tt.upload))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Publish = %v; want %v", err, tt.wantErr)
			}
			if err == nil && res.Created != tt.wantCreated {
				t.Errorf("Created = %v; want %v", res.Created, tt.wantCreated)
			}
			if got := r.storedFiles(t); !maps.Equal(got, filesBefore) {
				t.Error("the losing upload changed the stored files")
			}
			if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, first) {
				t.Error("the losing upload replaced the winner's zip")
			}
		})
	}
}

// staleReads is a Metadata whose transactions see no version record, as a
// transaction that began before a concurrent one committed would.
type staleReads struct {
	*modproxytest.MemStore
}

func (s *staleReads) Update(ctx context.Context, fn func(tx modproxy.MetadataTx) error) error {
	return s.MemStore.Update(ctx, func(tx modproxy.MetadataTx) error {
		return fn(staleTx{tx})
	})
}

// staleTx reports every version as missing, while its writes still see
// what is committed.
type staleTx struct{ modproxy.MetadataTx }

func (tx staleTx) Version(path, version string) (*modproxy.Version, error) {
	return nil, &modproxy.Error{Kind: modproxy.ErrNotFound, Path: path, Version: version, Err: errors.New("not yet visible")}
}

// TestPublishUnderPublicModuleRefused checks that no version can be
// published under the path of a module that versions were fetched of from
// an upstream, even deleted ones, and by administrators too: it is a
// public module, and whatever is published under its path would be
// served as its versions (a new @latest, say).
func TestPublishUnderPublicModuleRefused(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/public"
	up.add(t, path, "v1.0.0", "a")
	up.add(t, path, "v1.1.0", "b")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	r.read(t, path, "v1.0.0", storage.Mod)
	r.read(t, path, "v1.1.0", storage.Info)
	if err := r.Delete(ctx, admin, path, "v1.0.0", modproxy.DeleteOptions{Reason: "gone upstream"}); err != nil {
		t.Fatal(err)
	}
	events := len(r.meta.Events())

	for _, who := range []auth.Principal{alice, admin} {
		res, err := r.Publish(ctx, who, path, "v1.2.0", bytes.NewReader(moduleZip(t, path, "v1.2.0", "mine")))
		if !errors.Is(err, modproxy.ErrConflict) {
			t.Fatalf("Publish by %s under a public module's path = %+v, %v; want ErrConflict", who.User, res, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "public module") || !strings.Contains(msg, up.url) || !strings.Contains(msg, "path of its own") {
			t.Errorf("error %q; want it to say that the path is a public module's, served from %s, and that a private module needs a path of its own", msg, up.url)
		}
	}
	r.assertNoRecord(t, path, "v1.2.0")
	r.assertTempDirEmpty(t)
	if got := len(r.meta.Events()); got != events {
		t.Errorf("audit events %d; want %d, none for a refused publish", got, events)
	}

	// A path of its own, even below the public one, may be published.
	r.publish(t, alice, path+"/private", "v1.2.0", moduleZip(t, path+"/private", "v1.2.0", "mine"))
}

// TestPublishPseudoVersionTime checks that a published pseudo-version's
// .info gives the time the pseudo-version names, as the go command and
// an import give it, not the time of the upload.
func TestPublishPseudoVersionTime(t *testing.T) {
	r := newTestRegistry(t)
	const path, version = "example.com/m", "v0.0.0-20260102030405-abcdefabcdef"
	want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res := r.publish(t, alice, path, version, moduleZip(t, path, version, "x"))
	if !res.Time.Equal(want) || !res.PublishedAt.Equal(t0) {
		t.Errorf("Publish: time %v, published at %v; want %v and %v", res.Time, res.PublishedAt, want, t0)
	}
	var info struct{ Time time.Time }
	if err := json.Unmarshal(r.read(t, path, version, storage.Info), &info); err != nil || !info.Time.Equal(want) {
		t.Errorf(".info time %v, %v; want %v", info.Time, err, want)
	}
}

// listlessStore is a storage.Store whose @v/list files cannot be
// written: a disk that filled up just then, or a server killed between a
// publish's commit and its rewriting the list.
type listlessStore struct{ storage.Store }

func (listlessStore) PutList(ctx context.Context, path string, versions []string) error {
	return &os.PathError{Op: "write", Path: path + "/@v/list", Err: syscall.ENOSPC}
}

// TestPublishAgainWritesList checks that publishing a version again, as a
// client does whose publish failed or got no answer, rewrites the @v/list
// file that the first publish committed the version without. Else the
// storage tree, a GOPROXY=file:// directory, does not list the version
// (nor has it as its @latest) until another version is published.
func TestPublishAgainWritesList(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	upload := moduleZip(t, "example.com/m", "v1.0.0", "first")
	first := r.node(t, func(c *modproxy.Config) { c.Blobs = listlessStore{r.disk} })
	if res, err := first.Publish(ctx, alice, "example.com/m", "v1.0.0", bytes.NewReader(upload)); err != nil || !res.Created {
		t.Fatalf("Publish, its list not written: %+v, %v", res, err)
	}
	if list, ok := r.storedFiles(t)["example.com/m/@v/list"]; ok {
		t.Fatalf("@v/list = %q; want none written", list)
	}

	res, err := r.Publish(ctx, alice, "example.com/m", "v1.0.0", bytes.NewReader(upload))
	if err != nil || res.Created {
		t.Fatalf("Publish again = %+v, %v; want the identical version", res, err)
	}
	if list := r.storedFiles(t)["example.com/m/@v/list"]; list != "v1.0.0\n" {
		t.Errorf("@v/list after publishing again = %q; want %q", list, "v1.0.0\n")
	}
}
