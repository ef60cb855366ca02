package modproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"agora/modproxy"
	"agora/storage"
)

func TestOpenServesUploadedFiles(t *testing.T) {
	r := newTestRegistry(t)
	const path, version = "example.com/Upper/v2", "v2.1.0-RC.1"
	upload := moduleZip(t, path, version, "x")
	r.publish(t, alice, path, version, upload)

	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(r.read(t, path, version, storage.Info), &info); err != nil {
		t.Fatalf(".info is not JSON: %v", err)
	}
	if info.Version != version || !info.Time.Equal(t0) {
		t.Errorf(".info = %+v; want Version %s, Time %v", info, version, t0)
	}
	if got := r.read(t, path, version, storage.Mod); string(got) != goMod(path) {
		t.Errorf(".mod = %q; want %q", got, goMod(path))
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, upload) {
		t.Error(".zip differs from the upload")
	}
	f, v, err := r.Open(context.Background(), path, version, storage.Zip)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if v.Path != path || v.Version != version || v.Size != int64(len(upload)) {
		t.Errorf("Open returned record %+v; want %s@%s of %d bytes", v, path, version, len(upload))
	}
	// Stored in the GOPROXY layout, with case-encoded names.
	if _, err := os.Stat(filepath.Join(r.disk.Root(), "example.com/!upper/v2/@v/v2.1.0-!r!c.1.zip")); err != nil {
		t.Errorf("zip not at its GOPROXY path: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	for _, version := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		r.publish(t, alice, "example.com/m", version, moduleZip(t, "example.com/m", version, version))
	}
	if err := r.Delete(ctx, alice, "example.com/m", "v1.1.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, admin, "example.com/m", "v1.2.0", modproxy.DeleteOptions{Reason: "malware", Block: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, version string
		want          error
	}{
		{"example.com/m", "v1.0.0", nil},
		{"example.com/m", "v1.3.0", modproxy.ErrNotFound},
		{"example.com/other", "v1.0.0", modproxy.ErrNotFound},
		{"example.com/m", "v1.1.0", modproxy.ErrGone},
		{"example.com/m", "v1.2.0", modproxy.ErrGone},
		{"example.com/m", "master", modproxy.ErrNotFound},
		{"example.com/m", "v1.0", modproxy.ErrNotFound},
		{"example.com/m", "v1.0.0+build", modproxy.ErrNotFound},
		{"example.com/m", "latest", modproxy.ErrNotFound},
		{"example.com/m", "", modproxy.ErrNotFound},
		{"not a path", "v1.0.0", modproxy.ErrInvalid},
		{"example.com/m/../x", "v1.0.0", modproxy.ErrInvalid},
	}
	for _, tt := range tests {
		for _, kind := range storage.Kinds {
			f, _, err := r.Open(ctx, tt.path, tt.version, kind)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Open(%q, %q, %s) = %v; want %v", tt.path, tt.version, kind, err, tt.want)
			}
		}
	}
	_, _, err := r.Open(ctx, "example.com/m", "v1.2.0", storage.Zip)
	if want := "example.com/m@v1.2.0: blocked: malware"; err == nil || err.Error() != want {
		t.Errorf("Open(blocked) = %v; want %q", err, want)
	}
}

// TestOpenAfterDeleteOnAnotherNode checks that a Service that served a
// version from its cache notices when another Service on the same stores
// deletes it.
func TestOpenAfterDeleteOnAnotherNode(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	other := r.node(t, nil)
	r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))
	r.read(t, "example.com/m", "v1.0.0", storage.Zip)

	if err := other.Delete(ctx, alice, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first notices, the second no longer trusts the cache
		if _, _, err := r.Open(ctx, "example.com/m", "v1.0.0", storage.Zip); !errors.Is(err, modproxy.ErrGone) {
			t.Errorf("Open after a delete elsewhere = %v; want ErrGone", err)
		}
	}
}

// publishAll publishes each version of path with distinct content.
func publishAll(t *testing.T, r *testRegistry, path string, versions ...string) {
	t.Helper()
	for _, version := range versions {
		r.publish(t, alice, path, version, moduleZip(t, path, version, version))
	}
}

const (
	pseudoOld = "v0.0.0-20261120000000-aaaaaaaaaaaa"
	pseudoNew = "v0.0.0-20261121000000-bbbbbbbbbbbb"
	// pseudoPre is a pseudo-version derived from a pre-release tag.
	pseudoPre = "v1.3.0-rc.1.0.20261121000000-cccccccccccc"
)

func TestListAndLatest(t *testing.T) {
	tests := []struct {
		name       string
		publish    []string
		delete     []string
		wantList   []string
		wantLatest string // "" for ErrNotFound
	}{
		{
			name:       "releases in semver order",
			publish:    []string{"v1.10.0", "v1.2.0", "v1.9.9", "v0.1.0"},
			wantList:   []string{"v0.1.0", "v1.2.0", "v1.9.9", "v1.10.0"},
			wantLatest: "v1.10.0",
		},
		{
			name:       "a release wins over a higher pre-release",
			publish:    []string{"v1.2.0", "v1.3.0-rc.1", "v1.3.0-beta"},
			wantList:   []string{"v1.2.0", "v1.3.0-beta", "v1.3.0-rc.1"},
			wantLatest: "v1.2.0",
		},
		{
			name:       "pre-releases only",
			publish:    []string{"v1.3.0-beta", "v1.3.0-rc.1", "v1.3.0-alpha"},
			wantList:   []string{"v1.3.0-alpha", "v1.3.0-beta", "v1.3.0-rc.1"},
			wantLatest: "v1.3.0-rc.1",
		},
		{
			name:       "pseudo-versions are not listed beside tags",
			publish:    []string{pseudoNew, "v0.1.0", pseudoPre},
			wantList:   []string{"v0.1.0"},
			wantLatest: "v0.1.0",
		},
		{
			name:       "a pre-release wins over a higher pseudo-version",
			publish:    []string{"v1.3.0-beta", pseudoPre},
			wantList:   []string{"v1.3.0-beta"},
			wantLatest: "v1.3.0-beta",
		},
		{
			name:       "pseudo-versions only",
			publish:    []string{pseudoNew, pseudoOld},
			wantList:   []string{pseudoOld, pseudoNew},
			wantLatest: pseudoNew,
		},
		{
			name:       "deleted versions are neither listed nor latest",
			publish:    []string{"v1.0.0", "v1.1.0", "v1.2.0-rc.1"},
			delete:     []string{"v1.1.0"},
			wantList:   []string{"v1.0.0", "v1.2.0-rc.1"},
			wantLatest: "v1.0.0",
		},
		{
			name:       "deleting the tags lists the pseudo-versions again",
			publish:    []string{"v1.0.0", pseudoOld},
			delete:     []string{"v1.0.0"},
			wantList:   []string{pseudoOld},
			wantLatest: pseudoOld,
		},
		{
			name:       "all deleted",
			publish:    []string{"v1.0.0"},
			delete:     []string{"v1.0.0"},
			wantList:   nil,
			wantLatest: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := newTestRegistry(t)
			publishAll(t, r, "example.com/m", tt.publish...)
			for _, version := range tt.delete {
				if err := r.Delete(ctx, alice, "example.com/m", version, modproxy.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			list, err := r.List(ctx, "example.com/m")
			if err != nil || !slices.Equal(list, tt.wantList) {
				t.Errorf("List = %q, %v; want %q", list, err, tt.wantList)
			}
			checkListFile(t, r, "example.com/m", tt.wantList)
			v, err := r.Latest(ctx, "example.com/m")
			switch {
			case tt.wantLatest == "":
				if !errors.Is(err, modproxy.ErrNotFound) {
					t.Errorf("Latest = %+v, %v; want ErrNotFound", v, err)
				}
			case err != nil || v.Version != tt.wantLatest:
				t.Errorf("Latest = %+v, %v; want %s", v, err, tt.wantLatest)
			}
		})
	}
}

// checkListFile checks the storage tree's @v/list file of path, which
// GOPROXY=file:// serves, lists exactly want; no versions, no file.
func checkListFile(t *testing.T, r *testRegistry, path string, want []string) {
	t.Helper()
	name := filepath.Join(r.disk.Root(), filepath.FromSlash(path), "@v", "list")
	b, err := os.ReadFile(name)
	if len(want) == 0 {
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("@v/list = %q, %v; want no file", b, err)
		}
		return
	}
	wantText := ""
	for _, v := range want {
		wantText += v + "\n"
	}
	if err != nil || string(b) != wantText {
		t.Errorf("@v/list = %q, %v; want %q", b, err, wantText)
	}
}

func TestListUnknownModule(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	publishAll(t, r, "example.com/a/b", "v1.0.0")
	// Paths that share a prefix with a known one are other modules.
	for _, path := range []string{"example.com/a", "example.com/a/b-c", "example.com/a/b/v2", "example.com/A/b"} {
		if list, err := r.List(ctx, path); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("List(%s) = %q, %v; want ErrNotFound", path, list, err)
		}
		if v, err := r.Latest(ctx, path); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("Latest(%s) = %+v, %v; want ErrNotFound", path, v, err)
		}
	}
	if _, err := r.List(ctx, "Example.com/a/b"); !errors.Is(err, modproxy.ErrInvalid) {
		t.Errorf("List(invalid path) = %v; want ErrInvalid", err)
	}
}

// TestDeleteRewritesListFile checks the storage tree stays a usable
// GOPROXY=file:// directory through publishes and deletes.
func TestDeleteRewritesListFile(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	publishAll(t, r, "example.com/m", "v1.1.0", "v1.0.0")
	checkListFile(t, r, "example.com/m", []string{"v1.0.0", "v1.1.0"})

	if err := r.Delete(ctx, alice, "example.com/m", "v1.1.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	checkListFile(t, r, "example.com/m", []string{"v1.0.0"})
	if list, err := r.List(ctx, "example.com/m"); err != nil || !slices.Equal(list, []string{"v1.0.0"}) {
		t.Errorf("List = %q, %v; want [v1.0.0]", list, err)
	}
	for _, kind := range storage.Kinds {
		if _, err := os.Stat(filepath.Join(r.disk.Root(), "example.com/m/@v/v1.1.0"+string(kind))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted version's %s file still stored: %v", kind, err)
		}
	}

	if n, err := r.DeleteModule(ctx, alice, "example.com/m", modproxy.DeleteOptions{}); err != nil || n != 1 {
		t.Fatalf("DeleteModule = %d, %v; want 1", n, err)
	}
	checkListFile(t, r, "example.com/m", nil)
	if files := r.storedFiles(t); len(files) != 0 {
		t.Errorf("storage holds %q after every version was deleted", sortedKeys(files))
	}
}

// .info and .mod are served from memory after the first read; what is
// served must stay what is stored, and a delete must drop it.
func TestSmallFilesServedFromMemory(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	r.publish(t, alice, "example.com/m", "v1.0.0", moduleZip(t, "example.com/m", "v1.0.0", "x"))
	for _, kind := range []storage.Kind{storage.Info, storage.Mod} {
		first := r.read(t, "example.com/m", "v1.0.0", kind)
		// Remove the file behind the cache's back: the second read must
		// come from memory, byte for byte, with the file's information.
		name := filepath.Join(r.disk.Root(), "example.com/m/@v/v1.0.0"+string(kind))
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
		f, _, err := r.Open(ctx, "example.com/m", "v1.0.0", kind)
		if err != nil {
			t.Fatalf("%s: second Open: %v", kind, err)
		}
		got, _ := io.ReadAll(f)
		mfi, _ := f.Stat()
		f.Close()
		if !bytes.Equal(got, first) || mfi.Size() != fi.Size() || !mfi.ModTime().Equal(fi.ModTime()) {
			t.Errorf("%s from memory: %q (size %d, %v), want %q (size %d, %v)", kind, got, mfi.Size(), mfi.ModTime(), first, fi.Size(), fi.ModTime())
		}
	}
	if err := r.Delete(ctx, alice, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []storage.Kind{storage.Info, storage.Mod} {
		if _, _, err := r.Open(ctx, "example.com/m", "v1.0.0", kind); !errors.Is(err, modproxy.ErrGone) {
			t.Errorf("%s after delete: %v, want ErrGone", kind, err)
		}
	}
}

// TestListFileOfTwoNodes checks the storage tree's @v/list file when two
// nodes change one module at once: node A reads the versions, node B
// publishes another and writes its list, then A writes what it read. The
// file must name both versions in the end, as the database does.
func TestListFileOfTwoNodes(t *testing.T) {
	const path = "example.com/m"
	r := newTestRegistry(t)
	a := r.node(t, func(c *modproxy.Config) {
		c.Blobs = &hookedStore{Store: r.disk, beforeList: func() {
			r.publish(t, alice, path, "v1.1.0", moduleZip(t, path, "v1.1.0", "b"))
		}}
	})
	if _, err := a.Publish(context.Background(), alice, path, "v1.0.0", bytes.NewReader(moduleZip(t, path, "v1.0.0", "a"))); err != nil {
		t.Fatal(err)
	}
	got := r.storedFiles(t)[path+"/@v/list"]
	if want := "v1.0.0\nv1.1.0\n"; got != want {
		t.Errorf("@v/list file = %q; want %q", got, want)
	}
}
