// Package storagetest is the conformance suite for storage.Store
// implementations. Every backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) })
//	}
//
// The suite states the contract: round trips of each kind, not-found errors
// that wrap fs.ErrNotExist, module paths that share prefixes (a.com/b,
// a.com/b-c, a.com/b/v2) and differ only in case, atomic replacement seen by
// concurrent readers, delete, and a walk that finds what was stored.
package storagetest

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
	"slices"
	"strings"
	"sync"
	"testing"

	"agora/storage"
)

// Run runs the conformance suite against stores made by newStore; each
// subtest gets a fresh, empty store.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"PrefixSharingPaths", testPrefixSharingPaths},
		{"CaseEncodedPaths", testCaseEncodedPaths},
		{"Replace", testReplace},
		{"PutFile", testPutFile},
		{"Delete", testDelete},
		{"List", testList},
		{"Walk", testWalk},
		{"InvalidNames", testInvalidNames},
		{"ConcurrentReadersDuringWrite", testConcurrentReaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}

// put stores body and fails the test on error.
func put(t *testing.T, s storage.Store, path, version string, kind storage.Kind, body string) {
	t.Helper()
	if err := s.Put(context.Background(), path, version, kind, strings.NewReader(body)); err != nil {
		t.Fatalf("Put(%s@%s%s): %v", path, version, kind, err)
	}
}

// read returns the stored content, failing the test if it cannot be read.
func read(t *testing.T, s storage.Store, path, version string, kind storage.Kind) string {
	t.Helper()
	f, err := s.Open(context.Background(), path, version, kind)
	if err != nil {
		t.Fatalf("Open(%s@%s%s): %v", path, version, kind, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading %s@%s%s: %v", path, version, kind, err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatalf("Stat(%s@%s%s): %v", path, version, kind, err)
	}
	if fi.Size() != int64(len(b)) {
		t.Errorf("Stat(%s@%s%s).Size() = %d, read %d bytes", path, version, kind, fi.Size(), len(b))
	}
	return string(b)
}

// wantNotExist fails the test unless path@version's kind is absent.
func wantNotExist(t *testing.T, s storage.Store, path, version string, kind storage.Kind) {
	t.Helper()
	f, err := s.Open(context.Background(), path, version, kind)
	if err == nil {
		f.Close()
		t.Fatalf("Open(%s@%s%s) succeeded, want not found", path, version, kind)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(%s@%s%s) = %v, want an error wrapping fs.ErrNotExist", path, version, kind, err)
	}
}

func testRoundTrip(t *testing.T, s storage.Store) {
	bodies := map[storage.Kind]string{
		storage.Info: `{"Version":"v1.0.0","Time":"2026-01-02T03:04:05Z"}`,
		storage.Mod:  "module example.com/a\n",
		storage.Zip:  string(bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<16)),
	}
	for kind, body := range bodies {
		put(t, s, "example.com/a", "v1.0.0", kind, body)
	}
	for kind, body := range bodies {
		if got := read(t, s, "example.com/a", "v1.0.0", kind); got != body {
			t.Errorf("%s: read %d bytes, want the %d bytes stored", kind, len(got), len(body))
		}
	}
}

func testNotFound(t *testing.T, s storage.Store) {
	wantNotExist(t, s, "example.com/missing", "v1.0.0", storage.Info)
	put(t, s, "example.com/a", "v1.0.0", storage.Mod, "module example.com/a\n")
	wantNotExist(t, s, "example.com/a", "v1.0.0", storage.Zip)
	wantNotExist(t, s, "example.com/a", "v1.0.1", storage.Mod)
}

func testPrefixSharingPaths(t *testing.T, s storage.Store) {
	paths := []string{"a.com/b", "a.com/b-c", "a.com/b/v2", "a.com/b/c", "a.com/bc"}
	for _, p := range paths {
		v := "v1.0.0"
		if strings.HasSuffix(p, "/v2") {
			v = "v2.0.0"
		}
		put(t, s, p, v, storage.Mod, "module "+p+"\n")
	}
	for _, p := range paths {
		v := "v1.0.0"
		if strings.HasSuffix(p, "/v2") {
			v = "v2.0.0"
		}
		if got, want := read(t, s, p, v, storage.Mod), "module "+p+"\n"; got != want {
			t.Errorf("%s@%s.mod = %q, want %q", p, v, got, want)
		}
	}
	// Deleting one must leave its prefix-sharing neighbours alone.
	if err := s.Delete(context.Background(), "a.com/b", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	wantNotExist(t, s, "a.com/b", "v1.0.0", storage.Mod)
	for _, p := range []string{"a.com/b-c", "a.com/b/c", "a.com/bc"} {
		read(t, s, p, "v1.0.0", storage.Mod)
	}
	read(t, s, "a.com/b/v2", "v2.0.0", storage.Mod)
}

func testCaseEncodedPaths(t *testing.T, s storage.Store) {
	// Paths and versions that differ only in case must not collide, even on
	// a case-insensitive file system: the store case-encodes them.
	put(t, s, "example.com/Upper", "v1.0.0", storage.Mod, "upper")
	put(t, s, "example.com/upper", "v1.0.0", storage.Mod, "lower")
	put(t, s, "example.com/upper", "v1.0.0-RC", storage.Mod, "rc upper")
	put(t, s, "example.com/upper", "v1.0.0-rc", storage.Mod, "rc lower")
	for _, c := range []struct{ path, version, want string }{
		{"example.com/Upper", "v1.0.0", "upper"},
		{"example.com/upper", "v1.0.0", "lower"},
		{"example.com/upper", "v1.0.0-RC", "rc upper"},
		{"example.com/upper", "v1.0.0-rc", "rc lower"},
	} {
		if got := read(t, s, c.path, c.version, storage.Mod); got != c.want {
			t.Errorf("%s@%s.mod = %q, want %q", c.path, c.version, got, c.want)
		}
	}
}

func testReplace(t *testing.T, s storage.Store) {
	put(t, s, "example.com/a", "v1.0.0", storage.Info, "first")
	put(t, s, "example.com/a", "v1.0.0", storage.Info, "second, and longer")
	if got := read(t, s, "example.com/a", "v1.0.0", storage.Info); got != "second, and longer" {
		t.Errorf("after replacing, read %q", got)
	}
}

// PutFile stores a file's content, replacing what was there, whether it
// moves or copies the file; a bad name stores nothing and leaves the file.
func testPutFile(t *testing.T, s storage.Store) {
	ctx := context.Background()
	put(t, s, "example.com/a", "v1.0.0", storage.Zip, "old")
	for i, body := range []string{"new, and longer", ""} {
		src := filepath.Join(t.TempDir(), "upload.zip")
		if err := os.WriteFile(src, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFile(ctx, "example.com/a", "v1.0.0", storage.Zip, src); err != nil {
			t.Fatalf("PutFile #%d: %v", i, err)
		}
		if got := read(t, s, "example.com/a", "v1.0.0", storage.Zip); got != body {
			t.Errorf("PutFile #%d stored %q, want %q", i, got, body)
		}
	}
	src := filepath.Join(t.TempDir(), "upload.zip")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile(ctx, "example.com/../a", "v1.0.0", storage.Zip, src); err == nil {
		t.Error("PutFile accepted an invalid module path")
	}
	if _, err := os.Stat(src); err != nil {
		t.Errorf("PutFile with an invalid path lost the file: %v", err)
	}
	if err := s.PutFile(ctx, "example.com/b", "v1.0.0", storage.Zip, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("PutFile of a missing file succeeded")
	}
	wantNotExist(t, s, "example.com/b", "v1.0.0", storage.Zip)
}

func testDelete(t *testing.T, s storage.Store) {
	for _, kind := range storage.Kinds {
		put(t, s, "example.com/a", "v1.0.0", kind, "x")
	}
	put(t, s, "example.com/a", "v1.1.0", storage.Mod, "keep")
	if err := s.Delete(context.Background(), "example.com/a", "v1.0.0"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, kind := range storage.Kinds {
		wantNotExist(t, s, "example.com/a", "v1.0.0", kind)
	}
	if got := read(t, s, "example.com/a", "v1.1.0", storage.Mod); got != "keep" {
		t.Errorf("other version after delete = %q", got)
	}
	// Deleting what is not there is not an error.
	if err := s.Delete(context.Background(), "example.com/a", "v1.0.0"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete(context.Background(), "example.com/never", "v1.0.0"); err != nil {
		t.Errorf("Delete of a module never stored: %v", err)
	}
}

func testList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	readList := func(path string, want []string) {
		t.Helper()
		got, err := s.ReadList(ctx, path)
		if err != nil || !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("ReadList(%s) = %#v, %v; want %#v", path, got, err, want)
		}
	}
	if err := s.PutList(ctx, "example.com/a", []string{"v1.0.0", "v1.1.0"}); err != nil {
		t.Fatalf("PutList: %v", err)
	}
	readList("example.com/a", []string{"v1.0.0", "v1.1.0"})
	if err := s.PutList(ctx, "example.com/a", []string{"v1.0.0"}); err != nil {
		t.Fatalf("PutList: %v", err)
	}
	readList("example.com/a", []string{"v1.0.0"})
	readList("example.com/a-b", nil)
	if err := s.PutList(ctx, "example.com/a", nil); err != nil {
		t.Fatalf("PutList(empty): %v", err)
	}
	readList("example.com/a", nil)
	if err := s.PutList(ctx, "example.com/never", nil); err != nil {
		t.Fatalf("PutList(empty) of a module never stored: %v", err)
	}
	readList("example.com/never", nil)
}

// testWalk checks that Walk finds every module with files, by its
// unescaped path and versions, among prefix-sharing paths, and what its
// @v/list file names; and nothing of what was deleted.
func testWalk(t *testing.T, s storage.Store) {
	ctx := context.Background()
	put(t, s, "a.com/b", "v1.0.0", storage.Zip, "z")
	put(t, s, "a.com/b", "v1.0.0", storage.Mod, "m")
	put(t, s, "a.com/b", "v1.1.0-RC", storage.Info, "i")
	put(t, s, "a.com/b-c", "v1.0.0", storage.Mod, "m")
	put(t, s, "a.com/B/v2", "v2.0.0", storage.Mod, "m")
	put(t, s, "a.com/gone", "v1.0.0", storage.Mod, "m")
	if err := s.Delete(ctx, "a.com/gone", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	for path, list := range map[string][]string{"a.com/b": {"v1.0.0", "v1.1.0-RC"}, "a.com/listed": {"v0.1.0"}} {
		if err := s.PutList(ctx, path, list); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	err := s.Walk(ctx, func(m storage.StoredModule) error {
		if _, dup := got[m.Path]; dup {
			t.Errorf("Walk found %s twice", m.Path)
		}
		var files []string
		for version, kinds := range m.Files {
			for _, kind := range kinds {
				files = append(files, version+string(kind))
			}
		}
		slices.Sort(files)
		list := "no list"
		if m.List != nil {
			list = fmt.Sprintf("list %q", m.List)
		}
		got[m.Path] = fmt.Sprintf("%q %s", files, list)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	want := map[string]string{
		"a.com/b":      `["v1.0.0.mod" "v1.0.0.zip" "v1.1.0-RC.info"] list ["v1.0.0" "v1.1.0-RC"]`,
		"a.com/b-c":    `["v1.0.0.mod"] no list`,
		"a.com/B/v2":   `["v2.0.0.mod"] no list`,
		"a.com/listed": `[] list ["v0.1.0"]`,
	}
	if !maps.Equal(got, want) {
		t.Errorf("Walk found\n%q\nwant\n%q", got, want)
	}

	stop := errors.New("stop")
	calls := 0
	if err := s.Walk(ctx, func(storage.StoredModule) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk whose fn fails = %v after %d calls; want fn's error after 1", err, calls)
	}
}

func testInvalidNames(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for _, c := range []struct{ path, version string }{
		{"../../etc", "v1.0.0"},
		{"example.com/a/../b", "v1.0.0"},
		{"/abs.com/a", "v1.0.0"},
		{"example.com/a", "v1.0.0/../../x"},
		{"example.com/a", ""},
	} {
		if err := s.Put(ctx, c.path, c.version, storage.Mod, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q, %q) succeeded, want an error", c.path, c.version)
		}
		if f, err := s.Open(ctx, c.path, c.version, storage.Mod); err == nil {
			f.Close()
			t.Errorf("Open(%q, %q) succeeded, want an error", c.path, c.version)
		}
	}
}

func testConcurrentReaders(t *testing.T, s storage.Store) {
	// Readers racing with writers must always see one whole version of the
	// file, never a mixture or a truncated one.
	const size = 256 << 10
	bodies := make([]string, 4)
	for i := range bodies {
		bodies[i] = strings.Repeat(fmt.Sprint(i), size)
	}
	put(t, s, "example.com/race", "v1.0.0", storage.Zip, bodies[0])

	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, err := s.Open(ctx, "example.com/race", "v1.0.0", storage.Zip)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					errs <- err
					return
				}
				if len(b) != size || strings.Count(string(b), string(b[0])) != size {
					errs <- fmt.Errorf("reader saw a torn file of %d bytes", len(b))
					return
				}
			}
		}()
	}
	for i := 0; i < 40; i++ {
		body := bodies[i%len(bodies)]
		if err := s.Put(ctx, "example.com/race", "v1.0.0", storage.Zip, strings.NewReader(body)); err != nil {
			t.Errorf("Put: %v", err)
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
