package main

import (
	"net"
	"net/http"
	"syscall"
)

// cork sets TCP_CORK on r's connection until the returned function is
// called, as Agora does around a zip's response.
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
