package testutil

import (
	"net"
	"net/http"
	"testing"
)

// SwitchProtocols answers the request of w with 101 Switching Protocols,
// as a server that upgrades the connection does, and sends the
// connection, kept open, on conns: net/http hands a client such a
// connection as the response's body.
func SwitchProtocols(t testing.TB, w http.ResponseWriter, conns chan<- net.Conn) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: fake\r\n\r\n")
	rw.Flush()
	conns <- conn
}
