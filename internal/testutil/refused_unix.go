//go:build unix

package testutil

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedURL returns the URL of a loopback port that refuses connections
// for as long as the test runs. Closing a listener does not do: the port
// is free then, and a test server of another package run in parallel may
// be given it, and answer. This one is held by a socket that is bound and
// never listens, so that connections to it are refused (RST) and nothing
// else can bind it.
func RefusedURL(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
