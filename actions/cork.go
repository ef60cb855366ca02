package actions

import (
	"context"
	"net"
)

// connKey is the request-context key of the request's connection.
type connKey struct{}

// ConnContext is the http.Server's ConnContext: it puts each connection in
// its requests' context, so that a zip's response can cork it (see cork).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}
