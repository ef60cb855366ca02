// Package cork holds back a response's partial TCP segments while it is
// written (TCP_CORK, Linux's, which is what nginx's tcp_nopush sets), so
// that the headers net/http writes before it hands a file to sendfile leave
// in the same segment as the file's first bytes, instead of in a packet of
// their own.
//
// A server that uses it sets ConnContext as its http.Server's ConnContext,
// which gives handlers the connection; a handler calls Response before it
// writes, and the function Response returns when it is done.
package cork

import (
	"context"
	"net"
)

// connKey is the request-context key of the request's connection.
type connKey struct{}

// ConnContext is an http.Server's ConnContext: it puts each connection in
// its requests' context, for Response.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}
