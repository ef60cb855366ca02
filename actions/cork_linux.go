package actions

import (
	"net"
	"net/http"
	"syscall"
)

// cork holds back partial TCP segments on r's connection (TCP_CORK) until
// the returned function is called, so that a zip's response headers, which
// net/http writes before handing the file to sendfile, leave in the same
// segment as the file's first bytes, as nginx's tcp_nopush does, instead of
// a packet of their own. Without a TCP connection it does nothing.
func cork(r *http.Request) (uncork func()) {
	c, ok := r.Context().Value(connKey{}).(*net.TCPConn)
	if !ok {
		return func() {}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return func() {}
	}
	set := func(on int) {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, on)
		})
	}
	set(1)
	return func() { set(0) }
}
