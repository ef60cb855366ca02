//go:build unix

package command

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestServeLogSettings checks that the server logs as AGORA_LOG_FORMAT and
// AGORA_LOG_LEVEL say: every line a JSON object with json, one of them
// each request's; nothing of the requests, or of the start, with warn.
func TestServeLogSettings(t *testing.T) {
	for _, tt := range []struct {
		format, level string
		requests      bool // whether request lines are logged
	}{
		{"json", "info", true},
		{"json", "warn", false},
		{"text", "warn", false},
		{"text", "debug", true},
	} {
		t.Run(tt.format+","+tt.level, func(t *testing.T) {
			serveEnv(t)
			addr := freeAddr(t)
			t.Setenv("ADDR", addr)
			t.Setenv("AGORA_LOG_FORMAT", tt.format)
			t.Setenv("AGORA_LOG_LEVEL", tt.level)
			p := startAgora(t, "serve")
			healthz := "http://" + addr + "/healthz"
			deadline := time.Now().Add(time.Minute)
			for {
				resp, err := http.Get(healthz)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				select {
				case <-p.exited:
					t.Fatalf("agora ended (%v) before serving\n%s", p.err, p.output)
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s: %v, not 200 within a minute\n%s", healthz, err, p.output)
				}
			}
			p.terminate(t)
			if p.err != nil {
				t.Fatalf("agora ended with %v\n%s", p.err, p.output)
			}

			out := p.output.String()
			var request, listening bool
			for line := range strings.Lines(out) {
				if tt.format == "json" {
					var rec struct{ Msg, Path string }
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("a line that is not a JSON object: %q: %v", line, err)
					}
					request = request || rec.Msg == "request" && rec.Path == "/healthz"
					listening = listening || rec.Msg == "agora listening"
					continue
				}
				request = request || strings.Contains(line, "msg=request method=GET path=/healthz status=200")
				listening = listening || strings.Contains(line, `msg="agora listening"`)
			}
			if request != tt.requests || listening != tt.requests {
				t.Errorf("logged the request: %v, the start: %v; want %v\n%s", request, listening, tt.requests, out)
			}
		})
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
