package actions_test

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"agora/auth"
	"agora/models/modelstest"
)

// TestDownloadZipUncorksConnection checks that a zip, whose response is
// written with the connection corked (TCP_CORK, so that the headers leave
// with the file's first bytes), arrives whole, and leaves the connection
// uncorked for the responses after it.
func TestDownloadZipUncorksConnection(t *testing.T) {
	conn := modelstest.Open(t, "sqlite3")
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	s := newServer(t, conn, func(s *serverSetup) {
		s.connState = func(c net.Conn, state http.ConnState) {
			if state == http.StateNew {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}
	})
	alice := s.token(t, "alice", auth.RolePublisher)
	m := newModule(t, "example.com/cork", "v1.0.0", strings.Repeat("a large file ", 1<<16))
	s.mustPublish(t, alice, m)

	for range 2 {
		r := s.get(t, "/example.com/cork/@v/v1.0.0.zip")
		wantStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.body, m.Zip) {
			t.Fatalf("zip of %d bytes differs from the %d published", len(r.body), len(m.Zip))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) == 0 {
		t.Fatal("no connection seen")
	}
	for _, c := range conns {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			t.Fatalf("server connection is a %T, not a *net.TCPConn", c)
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var corked int
		var serr error
		if err := rc.Control(func(fd uintptr) {
			corked, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
		}); err != nil || serr != nil {
			t.Fatalf("reading TCP_CORK: %v, %v", err, serr)
		}
		if corked != 0 {
			t.Errorf("connection %s still corked after its responses", c.RemoteAddr())
		}
	}
}
