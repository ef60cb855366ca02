package modproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// Two processes that share a database and a storage directory, as agora
// import beside a server on one SQLite data directory does, or two nodes
// on one PostgreSQL and one shared volume: each a Service of its own, with
// locks of its own in memory. A test makes one of them do its part while
// the other is between two steps, with hooks in the other's storage, and
// checks that the two keep the storage tree and the records in agreement.

// process is one of two processes sharing a database and a storage
// directory.
type process struct {
	*modproxy.Service
	name  string
	store *storeHooks
}

// processes are two processes on one database and one storage directory,
// and what both see of them.
type processes struct {
	a, b  *process
	meta  modproxy.Metadata // the database, as either sees it
	disk  *storage.Disk
	locks *lockTracker
	parts sync.WaitGroup // run by between
}

// twoProcesses returns two processes on one fresh database of dialect,
// each with a connection of its own, and one storage directory: a, as
// agora import or a node, fetching public modules from aUp unless it is
// nil, and b, a server fetching them from bUp.
func twoProcesses(t *testing.T, dialect string, aUp, bUp modproxy.Upstream) *processes {
	t.Helper()
	url := modelstest.URL(t, dialect)
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ps := &processes{disk: disk, locks: &lockTracker{held: make(map[string]string), waiting: make(chan string, 16)}}
	newProcess := func(name string, up modproxy.Upstream) *process {
		conn := modelstest.OpenURL(t, url) // migrated by the first
		meta := &trackedMetadata{Metadata: models.NewRegistry(conn), process: name, locks: ps.locks}
		p := &process{name: name, store: &storeHooks{Store: disk}}
		cfg := modproxy.Config{Metadata: meta, Blobs: p.store, TempDir: t.TempDir()}
		if up != nil {
			cfg.Upstream = func(string) modproxy.Upstream { return up }
		}
		p.Service = modproxy.New(cfg)
		if ps.meta == nil {
			ps.meta = meta
		}
		return p
	}
	ps.a = newProcess("a", aUp)
	ps.b = newProcess("b", bUp)
	return ps
}

// between runs part, the part of the process other, while p is between
// two steps: it returns once part has ended, or once other waits for a
// lock that p holds, when what other does next waits for p. The test
// waits for part to end with ps.wait before it looks at the outcome.
func (ps *processes) between(t *testing.T, p, other *process, part func()) {
	t.Helper()
	done := make(chan struct{})
	ps.parts.Add(1)
	go func() {
		defer ps.parts.Done()
		defer close(done)
		part()
	}()
	for {
		select {
		case <-done:
			return
		case w := <-ps.locks.waiting:
			if w == other.name+" waits for "+p.name {
				return
			}
		case <-time.After(time.Minute):
			t.Fatalf("process %s neither ended nor waited for %s", other.name, p.name)
		}
	}
}

// wait waits for the parts that between started to end, and fails t if a
// hook was never run: the processes did not meet as the test meant.
func (ps *processes) wait(t *testing.T) {
	t.Helper()
	ps.parts.Wait()
	for _, p := range []*process{ps.a, ps.b} {
		p.store.mu.Lock()
		for what := range p.store.hooks {
			t.Errorf("process %s never got to %s", p.name, what)
		}
		p.store.mu.Unlock()
	}
}

// lockTracker knows which process holds which lock it took through
// Metadata.Exclusive, so that a test knows when one waits for the other.
type lockTracker struct {
	mu      sync.Mutex
	held    map[string]string // key → the process that holds it
	waiting chan string       // "b waits for a" when b asks for a lock a holds
}

// trackedMetadata is a process's Metadata, which tells its lockTracker the
// locks the process takes.
type trackedMetadata struct {
	modproxy.Metadata
	process string
	locks   *lockTracker
}

func (m *trackedMetadata) Exclusive(ctx context.Context, key string, fn func(context.Context) error) error {
	m.locks.mu.Lock()
	if holder, ok := m.locks.held[key]; ok && holder != m.process {
		select {
		case m.locks.waiting <- m.process + " waits for " + holder:
		default:
		}
	}
	m.locks.mu.Unlock()
	return m.Metadata.Exclusive(ctx, key, func(ctx context.Context) error {
		m.locks.mu.Lock()
		m.locks.held[key] = m.process
		m.locks.mu.Unlock()
		defer func() {
			m.locks.mu.Lock()
			delete(m.locks.held, key)
			m.locks.mu.Unlock()
		}()
		return fn(ctx)
	})
}

// storeHooks is a storage.Store that runs a hook before it writes or
// removes a file of a kind, once.
type storeHooks struct {
	storage.Store
	mu    sync.Mutex
	hooks map[string]func() // "put .mod", "delete"
}

// before makes the store run hook before its next write of a file of kind
// ("put .mod"), or its next removal of a version's files ("delete").
func (s *storeHooks) before(what string, hook func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hooks == nil {
		s.hooks = make(map[string]func())
	}
	s.hooks[what] = hook
}

func (s *storeHooks) run(what string) {
	s.mu.Lock()
	hook := s.hooks[what]
	delete(s.hooks, what)
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (s *storeHooks) Put(ctx context.Context, path, version string, kind storage.Kind, content io.Reader) error {
	s.run("put " + string(kind))
	return s.Store.Put(ctx, path, version, kind, content)
}

func (s *storeHooks) PutFile(ctx context.Context, path, version string, kind storage.Kind, src string) error {
	s.run("put " + string(kind))
	return s.Store.PutFile(ctx, path, version, kind, src)
}

func (s *storeHooks) Delete(ctx context.Context, path, version string) error {
	s.run("delete")
	return s.Store.Delete(ctx, path, version)
}

// stored returns the content of path@version's stored file of kind, or nil
// if it is not stored.
func (ps *processes) stored(t *testing.T, path, version string, kind storage.Kind) []byte {
	t.Helper()
	f, err := ps.disk.Open(context.Background(), path, version, kind)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertAgree fails t unless the files stored of path@version are those
// its record announces: a go.mod and a zip with the recorded hashes, an
// .info with the recorded time. Where they differ, every go command that
// downloads the version fails, its go.sum checksum mismatching.
func (ps *processes) assertAgree(t *testing.T, path, version string) *modproxy.Version {
	t.Helper()
	v, err := ps.meta.Version(context.Background(), path, version)
	if err != nil {
		t.Fatal(err)
	}
	if v.Has(storage.Mod) {
		if mod := ps.stored(t, path, version, storage.Mod); mod == nil || hashGoMod(t, mod) != v.ModHash {
			t.Errorf("stored .mod %q does not have the recorded hash %s", mod, v.ModHash)
		}
	}
	if v.Has(storage.Zip) {
		if zip := ps.stored(t, path, version, storage.Zip); zip == nil || hashZipBytes(t, zip) != v.ZipHash {
			t.Errorf("stored zip does not have the recorded hash %s", v.ZipHash)
		}
	}
	if v.Has(storage.Info) {
		var info struct{ Time time.Time }
		raw := ps.stored(t, path, version, storage.Info)
		if err := json.Unmarshal(raw, &info); err != nil || !info.Time.Equal(v.Time) {
			t.Errorf("stored .info %s does not give the recorded time %v", raw, v.Time)
		}
	}
	return v
}

// eachDialect runs fn for each database.
func eachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range modelstest.Dialects {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// TestImportBesideFetch checks that an import beside a server that fetches
// the same version (or on another node) never leaves storage with a file
// other than the one recorded: between the import's reading the record and
// its writing a file, the server fetches that file and records it, or the
// other way round. The import here has other content than the upstream,
// as a tampered or corrupt module cache would.
func TestImportBesideFetch(t *testing.T) {
	const path, version = "example.com/dep", "v1.2.0"
	otherMod := []byte(goMod(path) + "\nrequire example.com/x v1.0.0\n")
	importedInfo := []byte(`{"Version":"v1.2.0","Time":"2024-05-01T00:00:00Z"}`)
	for _, tt := range []struct {
		name string
		// run makes the two processes meet.
		run func(t *testing.T, ps *processes)
	}{
		{"fetched .mod while an import writes another", func(t *testing.T, ps *processes) {
			c := newModuleCache(t)
			c.write(path, version, ".mod", otherMod)
			ps.a.store.before("put .mod", func() {
				ps.between(t, ps.a, ps.b, func() { ps.b.Open(context.Background(), path, version, storage.Mod) })
			})
			ps.a.ImportDir(context.Background(), admin, c.root, func(modproxy.ImportEvent) {})
		}},
		{"fetched .info while an import writes another", func(t *testing.T, ps *processes) {
			c := newModuleCache(t)
			c.write(path, version, ".mod", []byte(goMod(path)))
			c.write(path, version, ".info", importedInfo)
			ps.a.store.before("put .info", func() {
				ps.between(t, ps.a, ps.b, func() { ps.b.Open(context.Background(), path, version, storage.Info) })
			})
			ps.a.ImportDir(context.Background(), admin, c.root, func(modproxy.ImportEvent) {})
		}},
		{"imported zip while a fetch writes another", func(t *testing.T, ps *processes) {
			zipData := moduleZip(t, path, version, "imported")
			ps.b.store.before("put .zip", func() {
				ps.between(t, ps.b, ps.a, func() {
					ps.a.Import(context.Background(), admin, path, version, importedInfo, []byte(goMod(path)), writeTemp(t, zipData))
				})
			})
			ps.b.Open(context.Background(), path, version, storage.Zip)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachDialect(t, func(t *testing.T, dialect string) {
				up := newFakeUpstream()
				up.add(t, path, version, "upstream")
				ps := twoProcesses(t, dialect, nil, up)
				tt.run(t, ps)
				ps.wait(t)
				ps.assertAgree(t, path, version)
			})
		})
	}
}

// TestRestoreBesideDelete checks that a file a node restores while another
// node deletes the version does not outlive the delete: the restore read
// the record live, the delete removed the version's files, and then the
// restore wrote its file, which the storage tree, a GOPROXY=file://
// directory, would go on serving.
func TestRestoreBesideDelete(t *testing.T) {
	const path, version = "example.com/m", "v1.0.0"
	eachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		ps := twoProcesses(t, dialect, nil, nil)
		if _, err := ps.a.Publish(ctx, alice, path, version, bytes.NewReader(moduleZip(t, path, version, "a"))); err != nil {
			t.Fatal(err)
		}
		disk := &testRegistry{disk: ps.disk}
		before := disk.storedNames(t)
		// Storage lost the .info.
		if err := os.Remove(disk.storedFile(path, version, storage.Info)); err != nil {
			t.Fatal(err)
		}
		var deleteErr error
		ps.a.store.before("put .info", func() {
			ps.between(t, ps.a, ps.b, func() {
				deleteErr = ps.b.Delete(ctx, alice, path, version, modproxy.DeleteOptions{Reason: "withdrawn"})
			})
		})
		ps.a.Open(ctx, path, version, storage.Info) // restores it
		ps.wait(t)
		if deleteErr != nil {
			t.Fatalf("delete: %v", deleteErr)
		}
		if got := disk.storedNames(t); slices.ContainsFunc(got, func(name string) bool { return strings.Contains(name, "/@v/"+version+".") }) {
			t.Errorf("storage holds %q after the delete (before: %q); want no file of the deleted version", got, before)
		}
	})
}

// TestFetchesOfOneVersionSideBySide checks that a node fetching a
// version's .mod does not wait for another node's fetch of its zip, which
// may take minutes: the version's lock is held while what was downloaded
// is stored, not while it downloads.
func TestFetchesOfOneVersionSideBySide(t *testing.T) {
	const path, version = "example.com/dep", "v1.2.0"
	eachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		up := newFakeUpstream()
		fv := up.add(t, path, version, "a")
		up.hold = make(chan struct{})
		ps := twoProcesses(t, dialect, up, up)

		zipDone := make(chan error, 1)
		go func() {
			f, _, err := ps.b.Open(ctx, path, version, storage.Zip)
			if err == nil {
				f.Close()
			}
			zipDone <- err
		}()
		for up.count("zip") == 0 {
			time.Sleep(time.Millisecond)
		}
		modDone := make(chan error, 1)
		go func() {
			f, _, err := ps.a.Open(ctx, path, version, storage.Mod)
			if err == nil {
				b, _ := io.ReadAll(f)
				f.Close()
				if string(b) != fv.mod {
					err = fmt.Errorf("served %q; want %q", b, fv.mod)
				}
			}
			modDone <- err
		}()
		select {
		case err := <-modDone:
			if err != nil {
				t.Errorf(".mod fetched while another node fetches the zip: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the .mod's fetch waited for the other node's fetch of the zip")
		}
		close(up.hold)
		if err := <-zipDone; err != nil {
			t.Errorf("zip: %v", err)
		}
		if v := ps.assertAgree(t, path, version); !v.Has(storage.Zip) || !v.Has(storage.Mod) {
			t.Errorf("record %+v; want the .mod and the zip", v)
		}
	})
}
