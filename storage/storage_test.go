package storage_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"agora/storage"
	"agora/storage/storagetest"
)

func newDisk(t *testing.T) *storage.Disk {
	t.Helper()
	d, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDiskConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newDisk(t) })
}

func TestDiskLayoutIsGOPROXYLayout(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	if err := d.Put(ctx, "example.com/Upper/v2", "v2.0.0-RC1", storage.Zip, strings.NewReader("z")); err != nil {
		t.Fatal(err)
	}
	if err := d.PutList(ctx, "example.com/Upper/v2", []string{"v2.0.0-RC1"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"example.com/!upper/v2/@v/v2.0.0-!r!c1.zip",
		"example.com/!upper/v2/@v/list",
	} {
		if _, err := os.Stat(filepath.Join(d.Root(), filepath.FromSlash(name))); err != nil {
			t.Errorf("want %s in the tree: %v", name, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(d.Root(), "example.com/!upper/v2/@v/list"))
	if err != nil || string(b) != "v2.0.0-RC1\n" {
		t.Errorf("list = %q, %v; want one line", b, err)
	}
}

// TestDiskPutListUnchanged checks that PutList leaves a list file that
// already names the versions as it is, writing and syncing nothing (an
// import rewrites the list of every module it visits, most unchanged), and
// rewrites one that differs, if only by a byte.
func TestDiskPutListUnchanged(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	name := filepath.Join(d.Root(), "example.com/a/@v/list")
	put := func(versions ...string) os.FileInfo {
		t.Helper()
		if err := d.PutList(ctx, "example.com/a", versions); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(name)
		if want := strings.Join(versions, "\n") + "\n"; err != nil || string(b) != want {
			t.Fatalf("list = %q, %v; want %q", b, err, want)
		}
		return fi
	}
	first := put("v1.0.0", "v1.1.0")
	if again := put("v1.0.0", "v1.1.0"); !os.SameFile(first, again) {
		t.Error("the same list was written again")
	}
	if other := put("v1.0.0", "v1.1.1"); os.SameFile(first, other) {
		t.Error("a list of the same size was not rewritten")
	}
}

func TestDiskRemoveTemp(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	if err := d.Put(ctx, "example.com/a", "v1.0.0", storage.Mod, strings.NewReader("keep")); err != nil {
		t.Fatal(err)
	}
	// What a crash between create and rename left behind an hour ago, and
	// what another node sharing the tree is writing now.
	dir := filepath.Join(d.Root(), "example.com/a/@v")
	leftover := filepath.Join(dir, ".v1.0.1.zip.123456.agora-tmp")
	writing := filepath.Join(dir, ".v1.0.2.zip.654321.agora-tmp")
	for _, name := range []string{leftover, writing} {
		if err := os.WriteFile(name, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(leftover, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	n, err := d.RemoveTemp(10 * time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("RemoveTemp() = %d, %v; want 1, nil", n, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
	if _, err := os.Stat(writing); err != nil {
		t.Errorf("RemoveTemp removed a file being written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "v1.0.0.mod")); err != nil {
		t.Errorf("RemoveTemp removed a real file: %v", err)
	}
}

// On the store's file system, PutFile moves the file into place: no
// second copy of a large zip is written. The stored file is readable by
// others, as Put's are, although a temporary file is created private.
func TestDiskPutFileMoves(t *testing.T) {
	d := newDisk(t)
	src := filepath.Join(d.Root(), "..", "upload.zip") // beside the store, on its file system
	if err := os.WriteFile(src, []byte("zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.PutFile(context.Background(), "example.com/a", "v1.0.0", storage.Zip, src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("the file put is still at its old name (%v): it was copied, not moved", err)
	}
	fi, err := os.Stat(filepath.Join(d.Root(), "example.com/a/@v/v1.0.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("stored file mode %v, want 0644", fi.Mode().Perm())
	}
}

// TestDiskDeleteAnnouncingFilesFirst checks that a delete that stops part
// way leaves no version that GOPROXY=file:// readers see without its zip:
// it removes the .info and .mod, which announce a version, before the zip.
// A .mod that cannot be removed (here a directory that is not empty, in
// life a crash) stops it.
func TestDiskDeleteAnnouncingFilesFirst(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	const path, version = "example.com/m", "v1.0.0"
	for _, kind := range []storage.Kind{storage.Info, storage.Zip} {
		if err := d.Put(ctx, path, version, kind, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	stuck := filepath.Join(d.Root(), "example.com/m/@v/v1.0.0.mod")
	if err := os.MkdirAll(filepath.Join(stuck, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, path, version); err == nil {
		t.Fatal("Delete removed a .mod that cannot be removed")
	}
	for kind, want := range map[storage.Kind]bool{storage.Info: false, storage.Zip: true} {
		f, err := d.Open(ctx, path, version, kind)
		if err == nil {
			f.Close()
		}
		if got := err == nil; got != want {
			t.Errorf("after a delete stopped at the .mod, the %s is there: %v; want %v", kind, got, want)
		}
	}
}

// TestCheckNames checks the longest names CheckNames lets through against
// a real disk: each is stored, with every kind, and one byte more is
// refused. Upper-case letters count twice, as they are stored escaped.
func TestCheckNames(t *testing.T) {
	ctx := context.Background()
	d, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	longestElem := strings.Repeat("a", storage.MaxNameLen)
	const versionMax = storage.MaxNameLen - len(".info") - len("..4294967295.agora-tmp")
	longestVersion := "v1.0.0-" + strings.Repeat("a", versionMax-len("v1.0.0-"))
	tests := []struct {
		path, version string
		ok            bool
	}{
		{"example.com/" + longestElem, "", true},
		{"example.com/" + longestElem + "a", "", false},
		{"example.com/" + strings.Repeat("A", storage.MaxNameLen/2), "", true}, // "!a" each
		{"example.com/" + strings.Repeat("A", storage.MaxNameLen/2+1), "", false},
		{"example.com/m", longestVersion, true},
		{"example.com/m", longestVersion + "a", false},
		{"example.com/m", "v1.0.0-" + strings.Repeat("A", (versionMax-len("v1.0.0-"))/2+1), false},
	}
	for _, tt := range tests {
		err := storage.CheckNames(tt.path, tt.version)
		if (err == nil) != tt.ok {
			t.Errorf("CheckNames(%.30s…, %.30s…) = %v; want ok: %v", tt.path, tt.version, err, tt.ok)
		}
		if err != nil || tt.version == "" {
			continue
		}
		for _, kind := range storage.Kinds {
			if err := d.Put(ctx, tt.path, tt.version, kind, strings.NewReader("x")); err != nil {
				t.Errorf("storing a %s of a version CheckNames accepts: %v", kind, err)
			}
		}
	}
	// The longest path element, stored.
	if err := d.Put(ctx, "example.com/"+longestElem, "v1.0.0", storage.Mod, strings.NewReader("x")); err != nil {
		t.Errorf("storing under the longest path element CheckNames accepts: %v", err)
	}
}

// TestDiskOpenDirectory checks that a directory where a stored file
// should be (a restore gone wrong, a hand at work in the tree) is an
// error naming it, and not opened as the file: it would be served with
// its size and no content.
func TestDiskOpenDirectory(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	if err := d.Put(ctx, "example.com/a", "v1.0.0", storage.Zip, strings.NewReader("z")); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(d.Root(), "example.com/a/@v/v1.0.0.zip")
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(name, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := d.Open(ctx, "example.com/a", "v1.0.0", storage.Zip)
	if err == nil {
		f.Close()
		t.Fatal("Open of a directory succeeded; want an error")
	}
	if errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), name) {
		t.Errorf("Open of a directory = %v; want an error naming %s, other than not found", err, name)
	}
}

// TestDiskWalkSkipsOtherNames checks that Walk finds the files a
// GOPROXY=file:// reader is served, whatever else the tree holds:
// temporary files, a module cache's .ziphash and .lock, names that are no
// module's or version's, a directory where a file would be; and that an
// empty @v/list file is an empty list, not none.
func TestDiskWalkSkipsOtherNames(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	if err := d.Put(ctx, "example.com/a", "v1.0.0", storage.Mod, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.Root(), "example.com/a/@v")
	for _, name := range []string{
		".v1.0.1.zip.123456.agora-tmp", "v1.0.0.ziphash", "v1.0.0.lock", "V1.0.0.zip", "list",
		"../../../NotAModule/@v/v1.0.0.zip", "../../../@v/v1.0.0.zip",
	} {
		name = filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "v1.2.0.zip"), 0o755); err != nil {
		t.Fatal(err)
	}
	var found []storage.StoredModule
	if err := d.Walk(ctx, func(m storage.StoredModule) error { found = append(found, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Path != "example.com/a" || len(found[0].Files) != 1 ||
		!slices.Equal(found[0].Files["v1.0.0"], []storage.Kind{storage.Mod}) || found[0].List == nil || len(found[0].List) != 0 {
		t.Errorf("Walk found %+v; want example.com/a with v1.0.0.mod and an empty list", found)
	}
}
