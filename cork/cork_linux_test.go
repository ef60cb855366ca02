package cork

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

// TestResponse checks that Response corks the request's connection and
// that the function it returns uncorks it.
func TestResponse(t *testing.T) {
	var during, after int
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uncork := Response(r)
		during = corked(t, r)
		io.WriteString(w, "hello")
		uncork()
		after = corked(t, r)
	}))
	ts.Config.ConnContext = ConnContext
	ts.Start()
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Errorf("body %q, %v", body, err)
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
