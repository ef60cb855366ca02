package modproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"agora/internal/testutil"
	"agora/modproxy"
	"agora/storage"
)

// removeStored removes path@version's stored file of kind, as a disk fault
// or storage restored from an older backup than the database would, and
// makes the registry forget what it holds in memory.
func (r *testRegistry) removeStored(t *testing.T, path, version string, kind storage.Kind) {
	t.Helper()
	if err := os.Remove(r.storedFile(path, version, kind)); err != nil {
		t.Fatal(err)
	}
	r.InvalidateAll()
}

// storedFile returns the name of path@version's file of kind in storage.
func (r *testRegistry) storedFile(path, version string, kind storage.Kind) string {
	escPath, _ := module.EscapePath(path)
	escVersion, _ := module.EscapeVersion(version)
	return filepath.Join(r.disk.Root(), filepath.FromSlash(escPath), "@v", escVersion+string(kind))
}

func TestRestoreMissingFetchedFiles(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	for _, kind := range storage.Kinds {
		r.read(t, path, version, kind)
	}
	record, err := r.meta.Version(ctx, path, version)
	if err != nil {
		t.Fatal(err)
	}

	// The .mod and .info come back from what is recorded and stored,
	// without the upstream.
	up.setDown(errors.New("offline"))
	r.removeStored(t, path, version, storage.Mod)
	r.removeStored(t, path, version, storage.Info)
	if got := r.read(t, path, version, storage.Mod); string(got) != fv.mod {
		t.Errorf("restored .mod = %q; want %q", got, fv.mod)
	}
	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(r.read(t, path, version, storage.Info), &info); err != nil || info.Version != version || !info.Time.Equal(record.Time) {
		t.Errorf("restored .info = %+v, %v; want %s at %v", info, err, version, record.Time)
	}
	for _, kind := range []storage.Kind{storage.Mod, storage.Info} {
		if _, err := os.Stat(r.storedFile(path, version, kind)); err != nil {
			t.Errorf("%s not back in storage: %v", kind, err)
		}
	}

	// The zip comes again from the upstream, with the recorded hash.
	up.setDown(nil)
	r.removeStored(t, path, version, storage.Zip)
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, fv.zip) {
		t.Error("the restored zip differs from the one fetched first")
	}
	if n := up.count("zip"); n != 2 {
		t.Errorf("upstream zip requests = %d; want 2", n)
	}
	if got, err := r.meta.Version(ctx, path, version); err != nil || *got != *record {
		t.Errorf("record after restoring = %+v, %v; want it unchanged %+v", got, err, record)
	}

	// An upstream that now serves other content restores nothing.
	up.add(t, path, version, "tampered")
	r.removeStored(t, path, version, storage.Zip)
	_, _, err = r.Open(ctx, path, version, storage.Zip)
	if !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "not the recorded "+record.ZipHash) {
		t.Errorf("Open of a zip the upstream now serves otherwise: %v; want a bad gateway, naming the recorded hash", err)
	}
	if _, err := os.Stat(r.storedFile(path, version, storage.Zip)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a zip with another hash was stored: %v", err)
	}
	// An upstream that is down: a bad gateway, as for a miss.
	up.setDown(errors.New("connection refused"))
	if _, _, err := r.Open(ctx, path, version, storage.Zip); !errors.Is(err, modproxy.ErrUpstream) {
		t.Errorf("Open of a lost zip with the upstream down: %v; want a bad gateway", err)
	}
	r.assertTempDirEmpty(t)
}

// TestRestoreFetchedInfo checks that a fetched version's lost .info comes
// back as its upstream serves it, Origin and all, as a fetch stores it,
// if the upstream still gives the recorded time; else from the record.
func TestRestoreFetchedInfo(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	first := r.read(t, path, version, storage.Info)
	if !bytes.Contains(first, []byte(`"Origin"`)) {
		t.Fatalf(".info = %s; want the upstream's, with its Origin", first)
	}
	record, err := r.meta.Version(ctx, path, version)
	if err != nil {
		t.Fatal(err)
	}

	r.removeStored(t, path, version, storage.Info)
	if got := r.read(t, path, version, storage.Info); !bytes.Equal(got, first) {
		t.Errorf("restored .info = %s; want the upstream's again, %s", got, first)
	}
	if n := up.count("info"); n != 2 {
		t.Errorf("upstream .info requests = %d; want 2", n)
	}

	// An upstream that now gives another time, or none, or is down: the
	// .info the record gives.
	fromRecord := fmt.Sprintf(`{"Version":%q,"Time":%q}`, version, record.Time.Format(time.RFC3339Nano))
	for _, change := range []struct {
		name string
		set  func(fv *fakeVersion)
		down error
	}{
		{"another time", func(fv *fakeVersion) { fv.info = fv.info.Add(time.Second) }, nil},
		{"no time", func(fv *fakeVersion) { fv.info = time.Time{} }, nil},
		{"down", nil, errors.New("connection refused")},
	} {
		up.mu.Lock()
		fv := up.versions[path+"@"+version]
		if change.set != nil {
			change.set(&fv)
		}
		up.versions[path+"@"+version] = fv
		up.mu.Unlock()
		up.setDown(change.down)
		r.removeStored(t, path, version, storage.Info)
		if got := r.read(t, path, version, storage.Info); string(got) != fromRecord {
			t.Errorf("%s: restored .info = %s; want %s", change.name, got, fromRecord)
		}
	}
	if got, err := r.meta.Version(ctx, path, version); err != nil || *got != *record {
		t.Errorf("record after restoring = %+v, %v; want it unchanged %+v", got, err, record)
	}

	// An upstream that does not answer is not waited for long: the
	// record gives an .info at once, and the go command waits on it.
	up.setDown(nil)
	up.mu.Lock()
	up.hangInfo = true
	up.mu.Unlock()
	modproxy.SetRestoreInfoWait(r.Service, 10*time.Millisecond)
	r.removeStored(t, path, version, storage.Info)
	if got := r.read(t, path, version, storage.Info); string(got) != fromRecord {
		t.Errorf("upstream not answering: restored .info = %s; want %s", got, fromRecord)
	}
}

// fullStore is a storage.Store on a disk that is full: every write fails
// with ENOSPC.
type fullStore struct{ storage.Store }

func (fullStore) Put(ctx context.Context, path, version string, kind storage.Kind, content io.Reader) error {
	return &os.PathError{Op: "write", Path: path + "@" + version + string(kind), Err: syscall.ENOSPC}
}

func (fullStore) PutFile(ctx context.Context, path, version string, kind storage.Kind, src string) error {
	return &os.PathError{Op: "write", Path: path + "@" + version + string(kind), Err: syscall.ENOSPC}
}

// TestRestoreOnFullDisk checks that a lost file that cannot be put back
// because the disk is full fails with ENOSPC, which is answered 507 and
// logged for the operator, not as not found (404), which blames the
// module and hides the disk.
func TestRestoreOnFullDisk(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	for _, kind := range storage.Kinds {
		r.read(t, path, version, kind)
	}
	r.refetchFrom(up, func(c *modproxy.Config) { c.Blobs = fullStore{r.disk} })
	for _, kind := range storage.Kinds {
		r.removeStored(t, path, version, kind)
		_, _, err := r.Open(ctx, path, version, kind)
		if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, modproxy.ErrNotFound) || errors.Is(err, modproxy.ErrUpstream) {
			t.Errorf("Open(%s) of a lost file with the disk full = %v; want ENOSPC, neither not found nor a bad gateway", kind, err)
		}
	}
	r.assertTempDirEmpty(t)
}

func TestRestoreMissingUploadedFiles(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	r := cachingRegistry(t, up, nil) // the path has an upstream, which is not asked
	const path, version = "example.com/private", "v1.0.0"
	zipData := moduleZip(t, path, version, "private")
	res := r.publish(t, alice, path, version, zipData)

	r.removeStored(t, path, version, storage.Mod)
	if got := r.read(t, path, version, storage.Mod); string(got) != goMod(path) {
		t.Errorf("restored .mod = %q; want the zip's go.mod", got)
	}

	r.removeStored(t, path, version, storage.Zip)
	_, _, err := r.Open(ctx, path, version, storage.Zip)
	if !errors.Is(err, modproxy.ErrNotFound) || !strings.Contains(err.Error(), "missing from storage") || !strings.Contains(err.Error(), "publish the same zip again") {
		t.Errorf("Open of a lost upload: %v; want not found, saying what to do", err)
	}
	// Without the zip, a lost .mod cannot be restored either.
	r.removeStored(t, path, version, storage.Mod)
	if _, _, err := r.Open(ctx, path, version, storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Open of a lost .mod without its zip: %v; want not found", err)
	}
	if n := up.count("zip") + up.count("mod"); n != 0 {
		t.Errorf("the upstream was asked %d times for an upload's files; want never (its path may be private)", n)
	}

	// Publishing the same zip again puts the files back, and records nothing.
	again, err := r.Publish(ctx, alice, path, version, bytes.NewReader(zipData))
	if err != nil || again.Created {
		t.Fatalf("Publish of the same zip again = %+v, %v; want it accepted as already there", again, err)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, zipData) {
		t.Error("the zip was not restored by publishing it again")
	}
	if got := r.read(t, path, version, storage.Mod); string(got) != goMod(path) {
		t.Errorf(".mod after publishing again = %q", got)
	}
	if v, err := r.meta.Version(ctx, path, version); err != nil || *v != *res.Version {
		t.Errorf("record = %+v, %v; want it unchanged", v, err)
	}
	if got := r.actions(); len(got) != 1 {
		t.Errorf("audit log = %q; want the first publish only", got)
	}
}

func TestRestoreMissingImportedZip(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	c := newModuleCache(t)
	m := c.add("example.com/dep", "v1.0.0", t0.Add(-time.Hour), moduleFiles("example.com/dep", "dep"))
	if _, _, err := r.importAll(ctx, c.root); err != nil {
		t.Fatal(err)
	}
	r.removeStored(t, m.path, m.version, storage.Zip)
	if _, _, err := r.Open(ctx, m.path, m.version, storage.Zip); !errors.Is(err, modproxy.ErrNotFound) || !strings.Contains(err.Error(), "import it again") {
		t.Errorf("Open of a lost imported zip: %v; want not found, saying what to do", err)
	}
	sum, _, err := r.importAll(ctx, c.root)
	if err != nil || sum.Restored != 1 {
		t.Fatalf("import again = %+v, %v; want it restored", sum, err)
	}
	if got := r.read(t, m.path, m.version, storage.Zip); !bytes.Equal(got, m.zip) {
		t.Error("the zip was not restored by importing it again")
	}
}

// TestRestoreIsAMiss checks that a request for a file that storage had
// lost is a miss, whether the file is put back (from the record, the
// stored zip, or the upstream) or not: it was not answered from what is
// stored, and the zip's restore asks the upstream as a miss does.
// agora_storage_restores_total tells these misses apart.
func TestRestoreIsAMiss(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	obs := newCacheObserver()
	r.Service = r.node(t, func(c *modproxy.Config) {
		c.Upstream = func(string) modproxy.Upstream { return up }
		c.Observer = obs
	})
	for range 2 { // fetched (the zip's fetch stores the .mod), then stored
		for _, kind := range storage.Kinds {
			r.read(t, path, version, kind)
		}
	}

	// From the record and the stored zip, without the upstream.
	up.setDown(errors.New("offline"))
	r.removeStored(t, path, version, storage.Mod)
	r.read(t, path, version, storage.Mod)
	r.removeStored(t, path, version, storage.Info)
	r.read(t, path, version, storage.Info)
	// From the upstream.
	up.setDown(nil)
	r.removeStored(t, path, version, storage.Zip)
	r.read(t, path, version, storage.Zip)
	// Not at all.
	up.setDown(errors.New("connection refused"))
	r.removeStored(t, path, version, storage.Zip)
	if _, _, err := r.Open(ctx, path, version, storage.Zip); !errors.Is(err, modproxy.ErrUpstream) {
		t.Fatalf("Open of a lost zip with the upstream down: %v; want a bad gateway", err)
	}

	obs.check(t,
		map[string]int{"info hit": 1, "info miss": 2, "mod hit": 2, "mod miss": 1, "zip hit": 1, "zip miss": 3},
		map[string]int{"info ok": 1, "mod ok": 1, "zip ok": 1, "zip failed": 1})
}

// deletedAfterRestore is storage on which another node deletes a version
// the moment after this one restored a file of it, before it opens the
// file to serve it.
type deletedAfterRestore struct {
	storage.Store
	restored bool
	delete   func()
}

func (s *deletedAfterRestore) Put(ctx context.Context, path, version string, kind storage.Kind, content io.Reader) error {
	err := s.Store.Put(ctx, path, version, kind, content)
	s.restored = err == nil
	return err
}

func (s *deletedAfterRestore) Open(ctx context.Context, path, version string, kind storage.Kind) (storage.File, error) {
	if s.restored {
		s.restored = false
		s.delete()
	}
	return s.Store.Open(ctx, path, version, kind)
}

// TestRestoreThenDeleted checks that a file restored and then removed by
// another node's delete before it is served is answered as the version
// is, gone, and not as a failure of the server.
func TestRestoreThenDeleted(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	const path, version = "example.com/m", "v1.0.0"
	r.publish(t, alice, path, version, moduleZip(t, path, version, "m"))
	other := r.node(t, nil)
	s := &deletedAfterRestore{Store: r.disk}
	s.delete = func() {
		if err := other.Delete(ctx, admin, path, version, modproxy.DeleteOptions{Reason: "broken"}); err != nil {
			t.Errorf("the other node's delete: %v", err)
		}
	}
	node := r.node(t, func(c *modproxy.Config) { c.Blobs = s })
	r.removeStored(t, path, version, storage.Mod)
	if _, _, err := node.Open(ctx, path, version, storage.Mod); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("Open of a file restored, then deleted by another node: %v; want gone", err)
	}
}

// TestRestoreOutlivesItsCaller checks that a client that goes away while a
// lost file is being restored is not taken for a failed restore: the
// restore goes on for the others (it is shared work), so neither an error
// is logged nor a failure counted for the client that left. Each restore
// is counted once, however many clients wait for it.
func TestRestoreOutlivesItsCaller(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	r.read(t, path, version, storage.Zip)
	r.removeStored(t, path, version, storage.Zip)

	var logs testutil.Buffer // written by the detached restore too
	obs := newCacheObserver()
	held := heldZipUpstream{up, make(chan struct{})}
	s := r.node(t, func(c *modproxy.Config) {
		c.Upstream = func(string) modproxy.Upstream { return held }
		c.Observer = obs
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	held.hangUp(t, s, path, version)
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a client that went away during a restore was logged as an error:\n%s", logs.String())
	}
	obs.check(t, map[string]int{"zip miss": 1}, map[string]int{})

	// Abandoned (a shutdown that cannot wait), the restore fails: once.
	s.Abandon()
	wctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := s.Wait(wctx); err != nil {
		t.Fatalf("Wait after Abandon = %v", err)
	}
	obs.check(t, map[string]int{"zip miss": 1}, map[string]int{"zip failed": 1})
}
