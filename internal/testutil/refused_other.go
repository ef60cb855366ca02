//go:build !unix

package testutil

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// RefusedURL returns the URL of a loopback port that refuses connections:
// a test server's, closed. (On Unix, the port is held for the test.)
func RefusedURL(t testing.TB) string {
	s := httptest.NewServer(http.NotFoundHandler())
	s.Close()
	return s.URL
}
