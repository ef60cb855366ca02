package cork

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestResponse checks that Response corks the request's connection and
// that the function it returns uncorks it.
func TestResponse(t *testing.T) {
	var during, after int
	_, body := get(t, func(w http.ResponseWriter, r *http.Request) {
		uncork := Response(r)
		during = corked(t, r)
		io.WriteString(w, "hello")
		uncork()
		after = corked(t, r)
	})
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	if during != 1 || after != 0 {
		t.Errorf("TCP_CORK %d while corked and %d after, want 1 and 0", during, after)
	}
}

// TestResponseWithoutConn checks that Response does nothing, and does not
// fail, without ConnContext.
func TestResponseWithoutConn(t *testing.T) {
	Response(httptest.NewRequest(http.MethodGet, "/", nil))()
}

// get serves one GET with handler on a server that sets ConnContext, and
// returns the status and body once the handler has returned.
func get(t *testing.T, handler http.HandlerFunc) (int, []byte) {
	t.Helper()
	ts := httptest.NewUnstartedServer(handler)
	ts.Config.ConnContext = ConnContext
	ts.Start()
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	ts.Close() // waits for the handler
	return resp.StatusCode, body
}

// corked returns TCP_CORK of r's connection.
func corked(t *testing.T, r *http.Request) int {
	c, ok := r.Context().Value(connKey{}).(*net.TCPConn)
	if !ok {
		t.Error("no TCP connection in the request's context")
		return -1
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
	}); err != nil || serr != nil {
		t.Errorf("reading TCP_CORK: %v, %v", err, serr)
	}
	return v
}

// TestSend checks that Send delivers bodies shorter and longer than Head
// whole, from a file, and leaves the connection uncorked.
func TestSend(t *testing.T) {
	for _, size := range []int{0, 100, Head, Head + 1, 3 << 20} {
		name := filepath.Join(t.TempDir(), "f")
		want := make([]byte, size)
		rand.Read(want)
		if err := os.WriteFile(name, want, 0o644); err != nil {
			t.Fatal(err)
		}
		after := -1
		status, got := get(t, func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(name)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Length", strconv.Itoa(size))
			if err := Send(w, r, f, int64(size)); err != nil {
				t.Errorf("Send: %v", err)
			}
			after = corked(t, r)
		})
		if status != http.StatusOK || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: status %d, %d bytes back", size, status, len(got))
		}
		if after != 0 {
			t.Errorf("%d bytes: TCP_CORK %d after Send, want 0", size, after)
		}
	}
}
