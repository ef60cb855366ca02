//go:build unix

package command

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestServeRefusesADataDirInUse checks that a second server on the data
// directory of a running one stops before it touches anything: it used to
// clear tmp/ first, deleting the running server's uploads and fetches in
// progress, and only then find its port taken.
func TestServeRefusesADataDirInUse(t *testing.T) {
	cfg := serveEnv(t)
	if err := os.MkdirAll(cfg.TempDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	upload := filepath.Join(cfg.TempDir(), "upload-1.zip")
	if err := os.WriteFile(upload, []byte("in progress"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The running server: its lock, and its pid in the lock file.
	lock, err := os.OpenFile(filepath.Join(cfg.DataDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	lock.WriteString("4242\n")

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // were it to start, it would stop at once
	err = serve(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "in use by another agora (pid 4242)") || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Errorf("serve = %v; want the data directory in use by pid 4242", err)
	}
	// Most often the other is the server being restarted, still
	// draining: the operator is told to wait for it, not only that
	// servers need data directories of their own.
	if err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("serve = %v; want it to say that the other may be shutting down", err)
	}
	if _, err := os.Stat(upload); err != nil {
		t.Errorf("the running server's upload: %v", err)
	}
}

// TestServeLocksTheDataDir checks that a server holds the lock while it
// runs and gives it back when it stops, with its pid in the lock file.
func TestServeLocksTheDataDir(t *testing.T) {
	cfg := serveEnv(t)
	if err := serveAndStop(cfg, slog.DiscardHandler); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, "lock"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file = %q, %v; want this process's pid", b, err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		t.Fatalf("after serve returned: %v", err)
	}
	unlock()
}
