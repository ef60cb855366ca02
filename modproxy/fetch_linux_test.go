//go:build linux

package modproxy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"syscall"
	"testing"

	"agora/modproxy"
	"agora/storage"
)

// TestFetchZipDiskFull checks that a zip that does not fit on the disk
// is this side's failure, not the upstream's (which a 502 would blame), and
// leaves no temporary file and no record of a zip behind. It needs a small
// file system of its own for the temporary files, which only root can
// mount.
func TestFetchZipDiskFull(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/big", "v1.0.0"
	random := make([]byte, 256<<10)
	rand.Read(random)
	up.add(t, path, version, base64.StdEncoding.EncodeToString(random)) // a zip of about 256 KiB
	r := cachingRegistry(t, up, nil)
	if err := syscall.Mount("tmpfs", r.tempDir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a 64 KiB tmpfs for the temporary files: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(r.tempDir, 0) })
	ctx := context.Background()

	_, _, err := r.Open(ctx, path, version, storage.Zip)
	if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, modproxy.ErrUpstream) {
		t.Fatalf("Open(.zip) with the disk full = %v; want ENOSPC, not ErrUpstream", err)
	}
	if entries, err := os.ReadDir(r.tempDir); err != nil || len(entries) != 0 {
		t.Errorf("temporary files left: %v, %v", entries, err)
	}
	if v, err := r.meta.Version(ctx, path, version); err == nil && v.ZipHash != "" {
		t.Errorf("record %+v announces a zip that was never stored", v)
	}
	// What needs no temporary file is still fetched.
	if got := r.read(t, path, version, storage.Mod); len(got) == 0 {
		t.Error("empty .mod")
	}
}
