package cork

import (
	"net"
	"net/http"
	"syscall"
)

// Response corks r's connection until the returned function is called.
// Without a TCP connection in r's context (see ConnContext) it does nothing.
func Response(r *http.Request) (uncork func()) {
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
