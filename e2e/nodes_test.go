package e2e

import (
	"bytes"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Two agora processes on one PostgreSQL database and one storage volume,
// the scale-out of ARCHITECTURE.md: what is published or deleted through
// one is served so by the other at once, although the other held the
// version, and the module's list, in memory.
func TestTwoNodes(t *testing.T) {
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

// Two nodes on one database and one volume fetch a public zip from the
// upstream once between them, however many clients ask both at once: the
// fetch holds an advisory lock, and the node that waited for it finds the
// zip recorded.
func TestTwoNodesFetchOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	m := newPublicModule(t, "example.org/greet", "v1.0.0", map[string]string{
		"go.mod":   "module example.org/greet\n\ngo 1.21\n",
		"greet.go": "package greet\n",
	})
	up := newFakeUpstream(t, m)
	up.zipDelay.Store(int64(300 * time.Millisecond)) // both nodes wait on it at once
	bin := agoraBinary(t)
	env := []string{"AGORA_UPSTREAM=" + up.URL, "AGORA_SUMDB=" + up.vkey}
	a := startAgora(t, bin, "postgres", env...)
	b := startAgora(t, bin, "postgres", append(env, "DATABASE_URL="+a.DatabaseURL, "AGORA_STORAGE_DIR="+a.StorageDir)...)

	const clients = 20
	var wg sync.WaitGroup
	for i := range clients {
		node := []*server{a, b}[i%2]
		wg.Go(func() {
			status, body := node.do(t, http.MethodGet, "/example.org/greet/@v/v1.0.0.zip", "", nil, nil)
			if status != http.StatusOK || !bytes.Equal(body, bytes.TrimSpace(m.Zip)) {
				t.Errorf("GET the zip from %s: status %d, %d bytes; want 200 and the upstream's zip", node.URL, status, len(body))
			}
		})
	}
	wg.Wait()
	if n := up.total("zip"); n != 1 {
		t.Errorf("the upstream was asked for the zip %d times by two nodes; want once", n)
	}
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

// A node that serves on after SIGTERM (AGORA_SHUTDOWN_DELAY) still hears
// of the others' changes: it used to stop listening at the signal, and
// went on serving a version deleted through another node from memory.
func TestTwoNodesShuttingDownHearChanges(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	bin := agoraBinary(t)
	a := startAgora(t, bin, "postgres")
	b := startAgora(t, bin, "postgres", "DATABASE_URL="+a.DatabaseURL, "AGORA_STORAGE_DIR="+a.StorageDir,
		"AGORA_SHUTDOWN_DELAY=15s")
	token := a.createPublisher(t, "alice")
	info := "/example.com/hello/@v/v1.0.0.info"
	if status, _, body := a.publish(t, token, fixtures[0]); status != http.StatusCreated {
		t.Fatalf("publishing %v through the first node: status %d: %s", fixtures[0], status, body)
	}
	if status, body := b.do(t, http.MethodGet, info, "", nil, nil); status != http.StatusOK {
		t.Fatalf("GET %s from the second node: status %d: %s", info, status, body)
	}

	b.terminate(t)
	eventually(t, "the second node's /readyz answers 503", func() bool {
		status, _ := b.do(t, http.MethodGet, "/readyz", "", nil, nil)
		return status == http.StatusServiceUnavailable
	})
	deleteURL := "/api/v1/modules/example.com/hello/@v/v1.0.0?reason=" + url.QueryEscape("two nodes")
	if status, body := a.do(t, http.MethodDelete, deleteURL, token, nil, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE %s through the first node: status %d: %s", deleteURL, status, body)
	}
	eventually(t, "the second node, shutting down, answers 410 for "+info, func() bool {
		status, _ := b.do(t, http.MethodGet, info, "", nil, nil)
		return status == http.StatusGone
	})
	if err := b.exited(t); err != nil {
		t.Errorf("the second node exited with %v, want status 0", err)
	}
}
