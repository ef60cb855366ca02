package e2e

import (
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"
)

// Two agora processes on one PostgreSQL database and one storage volume,
// the scale-out of ARCHITECTURE.md: what is published or deleted through
// one is served so by the other at once, although the other held the
// version, and the module's list, in memory.
func TestTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds agora and runs the go command; skipped in -short mode")
	}
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	bin := agoraBinary(t)
	a := startAgora(t, bin, "postgres")
	b := startAgora(t, bin, "postgres", "DATABASE_URL="+a.DatabaseURL, "AGORA_STORAGE_DIR="+a.StorageDir)
	token := a.createPublisher(t, "alice")
	hello := "/example.com/hello/@v/"

	if status, _, body := a.publish(t, token, fixtures[0]); status != http.StatusCreated {
		t.Fatalf("publishing %v through the first node: status %d: %s", fixtures[0], status, body)
	}
	for range 2 { // the second from memory
		for _, file := range []string{"v1.0.0.info", "v1.0.0.mod", "list"} {
			if status, body := b.do(t, http.MethodGet, hello+file, "", nil, nil); status != http.StatusOK {
				t.Fatalf("GET %s from the second node: status %d: %s", hello+file, status, body)
			}
		}
	}

	// A new version is listed at once, not when the list expires (60 s).
	if status, _, body := a.publish(t, token, fixtures[1]); status != http.StatusCreated {
		t.Fatalf("publishing %v through the first node: status %d: %s", fixtures[1], status, body)
	}
	eventually(t, "the second node lists v1.1.0", func() bool {
		status, body := b.do(t, http.MethodGet, hello+"list", "", nil, nil)
		return status == http.StatusOK && string(body) == "v1.0.0\nv1.1.0"
	})

	// A deleted version is gone from the second node, .info and .mod
	// included, which it served from memory.
	deleteURL := "/api/v1/modules/example.com/hello/@v/v1.0.0?reason=" + url.QueryEscape("two nodes")
	if status, body := a.do(t, http.MethodDelete, deleteURL, token, nil, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE %s through the first node: status %d: %s", deleteURL, status, body)
	}
	for _, file := range []string{"v1.0.0.info", "v1.0.0.mod", "v1.0.0.zip"} {
		eventually(t, "the second node answers 410 for "+file, func() bool {
			status, _ := b.do(t, http.MethodGet, hello+file, "", nil, nil)
			return status == http.StatusGone
		})
	}
	g := newGoTool(t, b.URL)
	checkOutput(t, g, t.TempDir(), "example.com/hello v1.1.0\n", "list", "-m", "-versions", "example.com/hello")
}

// eventually fails the test if cond does not hold within a few seconds.
// The nodes hear of each other's changes in milliseconds; the margin is
// for a busy machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
