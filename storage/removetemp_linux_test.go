package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"agora/storage"
)

// TestDiskRemoveTempSkipsUnreadable checks that a directory in the tree
// that Agora may not read does not stop RemoveTemp, and so the server's
// start: the lost+found directory, root's and private, at the root of a
// file system made for the storage directory, which Agora, running as a
// user of its own, cannot list. Agora never wrote there.
func TestDiskRemoveTempSkipsUnreadable(t *testing.T) {
	d := newDisk(t)
	if err := d.Put(context.Background(), "example.com/a", "v1.0.0", storage.Mod, strings.NewReader("keep")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(d.Root(), "example.com/a/@v/.v1.0.1.zip.123456.agora-tmp")
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(leftover, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	lostFound := filepath.Join(d.Root(), "lost+found")
	if err := os.Mkdir(lostFound, 0o700); err != nil {
		t.Fatal(err)
	}

	var n int
	var err error
	if os.Geteuid() != 0 {
		if err := os.Chmod(lostFound, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(lostFound, 0o700) })
		n, err = d.RemoveTemp(10 * time.Minute)
	} else {
		// Root reads everything: walk the tree as another user, who owns
		// it but for lost+found. The file system user is the thread's.
		const nobody = 65534
		for _, dir := range []string{filepath.Dir(d.Root()), d.Root()} {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		chown := func(p string, _ os.FileInfo, err error) error {
			if err != nil || p == lostFound {
				return err
			}
			return os.Chown(p, nobody, nobody)
		}
		if err := filepath.Walk(d.Root(), chown); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // and ended with the goroutine: its fsuid is changed
			syscall.Setfsuid(nobody)
			n, err = d.RemoveTemp(10 * time.Minute)
		}()
		<-done
	}
	if err != nil || n != 1 {
		t.Fatalf("RemoveTemp() with an unreadable directory in the tree = %d, %v; want 1, nil", n, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
}
