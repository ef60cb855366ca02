package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"agora/modproxy"
	"agora/storage"
)

// twoNodes returns a registry and a second Service on the same stores, as
// two Agora nodes sharing a database and a volume.
func twoNodes(t *testing.T) (*testRegistry, *modproxy.Service) {
	t.Helper()
	r := newTestRegistry(t)
	other := r.node(t, nil)
	return r, other
}

// list returns path's list as r serves it.
func list(t *testing.T, r *testRegistry, path string) []string {
	t.Helper()
	l, err := r.List(context.Background(), path)
	if err != nil {
		t.Fatalf("List(%s): %v", path, err)
	}
	return l
}

// A node serves a version's .info and .mod, and the module's list, from
// memory. When another node deletes the version, the first keeps serving
// it until it is told, and stops when it is.
func TestInvalidate(t *testing.T) {
	ctx := context.Background()
	r, other := twoNodes(t)
	const path = "example.com/m"
	publishAll(t, r, path, "v1.0.0", "v1.1.0")
	for _, kind := range []storage.Kind{storage.Info, storage.Mod} {
		r.read(t, path, "v1.1.0", kind)
	}
	if got := list(t, r, path); !slices.Equal(got, []string{"v1.0.0", "v1.1.0"}) {
		t.Fatalf("List = %q", got)
	}

	if err := other.Delete(ctx, alice, path, "v1.1.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Memory still answers: this is what the notice is for.
	if _, _, err := r.Open(ctx, path, "v1.1.0", storage.Mod); err != nil {
		t.Fatalf("Open before the notice = %v; the test needs it served from memory", err)
	}

	r.Invalidate(path, "v1.1.0")
	for _, kind := range []storage.Kind{storage.Info, storage.Mod, storage.Zip} {
		if _, _, err := r.Open(ctx, path, "v1.1.0", kind); !errors.Is(err, modproxy.ErrGone) {
			t.Errorf("Open %s after the notice = %v; want ErrGone", kind, err)
		}
	}
	if got := list(t, r, path); !slices.Equal(got, []string{"v1.0.0"}) {
		t.Errorf("List after the notice = %q; want [v1.0.0]", got)
	}
	if got := r.read(t, path, "v1.0.0", storage.Mod); len(got) == 0 {
		t.Error("v1.0.0's .mod is empty")
	}
}

// InvalidateAll drops everything: a version purged and published again
// with other content elsewhere is served with the new content.
func TestInvalidateAll(t *testing.T) {
	ctx := context.Background()
	r, other := twoNodes(t)
	const path = "example.com/m"
	publishAll(t, r, path, "v1.0.0")
	old := r.read(t, path, "v1.0.0", storage.Mod)
	list(t, r, path)

	if err := other.Purge(ctx, admin, path, "v1.0.0", "wrong content"); err != nil {
		t.Fatal(err)
	}
	newZip := buildZip(t, []zipFile{
		{path + "@v1.0.0/go.mod", "module " + path + "\n\ngo 1.23\n"},
		{path + "@v1.0.0/m.go", "package m\n"},
	})
	if _, err := other.Publish(ctx, alice, path, "v1.0.0", bytes.NewReader(newZip)); err != nil {
		t.Fatal(err)
	}
	publishAll(t, &testRegistry{Service: other}, path, "v1.2.0")

	r.InvalidateAll()
	if got := r.read(t, path, "v1.0.0", storage.Mod); bytes.Equal(got, old) {
		t.Errorf(".mod after InvalidateAll is the purged one: %q", got)
	}
	if got := list(t, r, path); !slices.Equal(got, []string{"v1.0.0", "v1.2.0"}) {
		t.Errorf("List after InvalidateAll = %q; want [v1.0.0 v1.2.0]", got)
	}
}

// racingMeta is a Metadata that runs a hook once, right after a read
// returns and before the Service can keep what it read: another node's
// change and its notice arriving at the worst moment.
type racingMeta struct {
	modproxy.Metadata
	afterVersion, afterList  func()
	versionDone, listingDone bool
}

func (m *racingMeta) Version(ctx context.Context, path, version string) (*modproxy.Version, error) {
	v, err := m.Metadata.Version(ctx, path, version)
	if m.afterVersion != nil && !m.versionDone {
		m.versionDone = true
		m.afterVersion()
	}
	return v, err
}

func (m *racingMeta) Versions(ctx context.Context, path string) ([]*modproxy.Version, error) {
	vs, err := m.Metadata.Versions(ctx, path)
	if m.afterList != nil && !m.listingDone {
		m.listingDone = true
		m.afterList()
	}
	return vs, err
}

// A record read just before another node deleted the version, and kept
// after the notice dropped it, would be served for as long as it stays in
// memory. The request that read it may answer with it once; later
// requests must not.
func TestInvalidateRacingRead(t *testing.T) {
	ctx := context.Background()
	base := newTestRegistry(t)
	const path = "example.com/m"
	publishAll(t, base, path, "v1.0.0", "v1.1.0")

	meta := &racingMeta{Metadata: base.meta}
	r := &testRegistry{
		Service: modproxy.New(modproxy.Config{Metadata: meta, Blobs: base.disk, TempDir: t.TempDir(), Now: base.clock.Now}),
		meta:    base.meta, disk: base.disk, clock: base.clock,
	}
	// Another node, with a disk of its own: the record changes, this
	// node's files stay.
	deleteAndNotify := func(version string) func() {
		return func() {
			update(t, base.meta, func(tx modproxy.MetadataTx) error {
				v, err := tx.Version(path, version)
				if err != nil {
					return err
				}
				v.DeletedAt, v.DeletedBy = t0, "root"
				return tx.Tombstone(v)
			})
			r.Invalidate(path, version)
		}
	}

	meta.afterVersion = deleteAndNotify("v1.1.0")
	if f, _, err := r.Open(ctx, path, "v1.1.0", storage.Mod); err == nil {
		f.Close() // read while live: this answer may stand
	}
	for _, kind := range []storage.Kind{storage.Mod, storage.Info} {
		if _, _, err := r.Open(ctx, path, "v1.1.0", kind); !errors.Is(err, modproxy.ErrGone) {
			t.Errorf("Open %s after the racing delete = %v; want ErrGone", kind, err)
		}
	}

	meta.afterList = deleteAndNotify("v1.0.0")
	list(t, r, path) // computed from records read before the delete
	if got, err := r.List(ctx, path); err != nil || len(got) != 0 {
		t.Errorf("List after the racing delete = %q, %v; want none", got, err)
	}
}
