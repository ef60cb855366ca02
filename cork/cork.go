// Package cork holds back a response's partial TCP segments while it is
// written (TCP_CORK, Linux's, which is what nginx's tcp_nopush sets), so
// that the headers net/http writes before it hands a file to sendfile leave
// in the same segment as the file's first bytes, instead of in a packet of
// their own.
//
// A server that uses it sets ConnContext as its http.Server's ConnContext,
// which gives handlers the connection. A handler sends a file with Send, or
// calls Response before it writes and the function Response returns when
// it is done.
package cork

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// connKey is the request-context key of the request's connection.
type connKey struct{}

// ConnContext is an http.Server's ConnContext: it puts each connection in
// its requests' context, for Response.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Head is how much of a file Send writes while the connection is corked.
const Head = 16 << 10

// writeStall is how long Send waits for a client to take sendChunk bytes
// before it gives up on it: the write deadline it sets before every chunk.
// A client slower than sendChunk per writeStall (4 KiB/s) is let go.
var writeStall = 60 * time.Second

// sendChunk is how much of the body Send writes under one write deadline.
// Each chunk still goes to sendfile whole.
const sendChunk = 256 << 10

// Send answers r with 200, the header the caller has set (Content-Length
// included), and size bytes of f, the whole body. The header and the first
// Head bytes of f are written while the connection is corked, so that they
// leave in one segment; the rest follows uncorked. Corking the whole of a
// large file costs the machine more CPU than it saves: on the warm replay
// of bench/replay.sh, which is mostly bytes of large zips, it served about
// 4% fewer requests per second than corking the head only.
//
// The header is flushed before the body, so that net/http hands f, an
// *os.File, to the connection's ReadFrom: sendfile from its first byte and
// of a known size, with no last call to find its end, and none of the 512
// bytes net/http otherwise reads first to sniff a Content-Type.
//
// The body goes in chunks of sendChunk bytes, each with a write deadline
// writeStall away, so that a client that stops reading releases its
// handler and connection instead of holding them forever; a server-wide
// WriteTimeout would cut off large downloads on slow links. The deadline
// is cleared at the end, for the connection's next response.
// Send returns the first error writing, such as the client's going away
// or stalling.
func Send(w http.ResponseWriter, r *http.Request, f io.Reader, size int64) error {
	rc := http.NewResponseController(w)
	extend := func() { rc.SetWriteDeadline(time.Now().Add(writeStall)) }
	defer rc.SetWriteDeadline(time.Time{})
	uncork := Response(r)
	extend()
	w.WriteHeader(http.StatusOK)
	err := rc.Flush()
	head := min(size, Head)
	if err == nil {
		_, err = io.Copy(w, io.LimitReader(f, head))
	}
	uncork()
	for rest := size - head; err == nil && rest > 0; rest -= sendChunk {
		extend()
		_, err = io.Copy(w, io.LimitReader(f, min(rest, sendChunk)))
	}
	return err
}
