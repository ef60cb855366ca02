package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"agora/auth"
	"agora/internal/testutil"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
)

// The principals tests act as.
var (
	alice  = auth.Principal{UserID: 1, User: "alice", Role: auth.RolePublisher, Scope: auth.ScopePublish}
	bob    = auth.Principal{UserID: 2, User: "bob", Role: auth.RolePublisher, Scope: auth.ScopePublish}
	admin  = auth.Principal{UserID: 3, User: "root", Role: auth.RoleAdmin, Scope: auth.ScopeAdmin}
	reader = auth.Principal{UserID: 4, User: "carol", Role: auth.RoleViewer, Scope: auth.ScopeRead}
	nobody = auth.Principal{}
)

// t0 is the time every test registry starts at.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// testRegistry is a Service on a MemStore and a real disk store, with
// access to both for assertions.
type testRegistry struct {
	*modproxy.Service
	meta    *modproxytest.MemStore
	disk    *storage.Disk
	tempDir string
	clock   *testutil.Clock
}

// newTestRegistry returns an empty registry whose clock starts at t0.
func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	meta := modproxytest.NewMemStore()
	return newTestRegistryOn(t, meta, meta)
}

// newTestRegistryOn returns a registry on the given metadata store; fake is
// the MemStore underneath it, for assertions.
func newTestRegistryOn(t *testing.T, meta modproxy.Metadata, fake *modproxytest.MemStore) *testRegistry {
	t.Helper()
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{meta: fake, disk: disk, tempDir: t.TempDir(), clock: testutil.NewClock(t0)}
	r.Service = modproxy.New(modproxy.Config{Metadata: meta, Blobs: disk, TempDir: r.tempDir, Now: r.clock.Now})
	return r
}

// node returns another Service on r's database and storage, as another
// node sharing them runs, with a temporary directory of its own; change,
// if not nil, changes its Config first.
func (r *testRegistry) node(t *testing.T, change func(*modproxy.Config)) *modproxy.Service {
	c := modproxy.Config{Metadata: r.meta, Blobs: r.disk, TempDir: t.TempDir(), Now: r.clock.Now}
	if change != nil {
		change(&c)
	}
	return modproxy.New(c)
}

// publish publishes zipData as path@version on behalf of who and fails the
// test if it is not created.
func (r *testRegistry) publish(t *testing.T, who auth.Principal, path, version string, zipData []byte) *modproxy.PublishResult {
	t.Helper()
	res, err := r.Publish(context.Background(), who, path, version, bytes.NewReader(zipData))
	if err != nil {
		t.Fatalf("Publish(%s@%s): %v", path, version, err)
	}
	if !res.Created {
		t.Fatalf("Publish(%s@%s): Created = false, want true", path, version)
	}
	return res
}

// read returns the content of path@version's file of kind as served.
func (r *testRegistry) read(t *testing.T, path, version string, kind storage.Kind) []byte {
	t.Helper()
	f, _, err := r.Open(context.Background(), path, version, kind)
	if err != nil {
		t.Fatalf("Open(%s@%s%s): %v", path, version, kind, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openInBackground opens path@version's file of kind in a goroutine, as a
// request would, closes it, and sends the error on the channel returned.
func (r *testRegistry) openInBackground(path, version string, kind storage.Kind) <-chan error {
	done := make(chan error, 1)
	go func() {
		f, _, err := r.Open(context.Background(), path, version, kind)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	return done
}

// storedFiles returns every regular file in the storage tree, as slash
// paths relative to its root mapped to their contents.
func (r *testRegistry) storedFiles(t *testing.T) map[string]string {
	t.Helper()
	files := make(map[string]string)
	err := filepath.WalkDir(r.disk.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(r.disk.Root(), p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// assertTempDirEmpty fails the test if an upload left a file in TempDir.
func (r *testRegistry) assertTempDirEmpty(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(r.tempDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temporary directory still holds %s", e.Name())
	}
}

// assertNoRecord fails the test unless the metadata store has no record of
// path@version.
func (r *testRegistry) assertNoRecord(t *testing.T, path, version string) {
	t.Helper()
	if v, err := r.meta.Version(context.Background(), path, version); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("metadata Version(%s@%s) = %+v, %v; want ErrNotFound", path, version, v, err)
	}
}

// actions returns the action of every audit event, oldest first, as
// "action actor path@version".
func (r *testRegistry) actions() []string {
	var out []string
	for _, e := range r.meta.Events() {
		out = append(out, fmt.Sprintf("%s %s %s@%s", e.Action, e.Actor, e.Path, e.Version))
	}
	return out
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cacheObserver is a modproxy.Observer that counts what it is told.
type cacheObserver struct {
	mu       sync.Mutex
	requests map[string]int // "kind hit" or "kind miss" → requests
	restores map[string]int // "kind ok" or "kind failed" → restores
}

func newCacheObserver() *cacheObserver {
	return &cacheObserver{requests: make(map[string]int), restores: make(map[string]int)}
}

func (o *cacheObserver) CacheRequest(kind string, hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests[kind+map[bool]string{true: " hit", false: " miss"}[hit]]++
}

func (o *cacheObserver) StorageRestore(kind string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.restores[kind+map[bool]string{true: " ok", false: " failed"}[ok]]++
}

// check fails t unless the requests and restores counted are want's, as
// "kind result" → count.
func (o *cacheObserver) check(t *testing.T, wantRequests, wantRestores map[string]int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !maps.Equal(o.requests, wantRequests) {
		t.Errorf("requests counted = %v; want %v", o.requests, wantRequests)
	}
	if !maps.Equal(o.restores, wantRestores) {
		t.Errorf("restores counted = %v; want %v", o.restores, wantRestores)
	}
}
