//go:build unix

package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"agora/storage"
)

// sameDevice reports whether directories a and b are on one file system.
func sameDevice(t *testing.T, a, b string) bool {
	t.Helper()
	var devs [2]uint64
	for i, name := range []string{a, b} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		devs[i] = uint64(fi.Sys().(*syscall.Stat_t).Dev)
	}
	return devs[0] == devs[1]
}

// Across file systems, where rename fails, PutFile copies.
func TestDiskPutFileAcrossFileSystems(t *testing.T) {
	d := newDisk(t)
	other, err := os.MkdirTemp("/dev/shm", "agora-test-")
	if err != nil {
		t.Skipf("no other file system to put from: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	if sameDevice(t, other, d.Root()) {
		t.Skip("/dev/shm is on the store's file system")
	}
	src := filepath.Join(other, "upload.zip")
	if err := os.WriteFile(src, []byte("zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.PutFile(context.Background(), "example.com/a", "v1.0.0", storage.Zip, src); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(d.Root(), "example.com/a/@v/v1.0.0.zip"))
	if err != nil || string(got) != "zip" {
		t.Errorf("stored %q, %v; want \"zip\"", got, err)
	}
}
