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
	"math"
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
// The body goes through Guard: in chunks of sendChunk bytes, each with a
// write deadline writeStall away, so that a client that stops reading
// releases its handler and connection instead of holding them forever.
// Send returns the first error writing, such as the client's going away
// or stalling.
func Send(w http.ResponseWriter, r *http.Request, f io.Reader, size int64) error {
	g := guard(w)
	defer g.done()
	uncork := Response(r)
	g.extend()
	w.WriteHeader(http.StatusOK)
	err := g.rc.Flush()
	head := min(size, Head)
	if err == nil {
		_, err = io.Copy(w, io.LimitReader(f, head))
	}
	uncork()
	if err == nil && size > head {
		_, err = g.ReadFrom(io.LimitReader(f, size-head))
	}
	return err
}

// Guard returns w wrapped so that whatever is written through it, in
// pieces of at most sendChunk bytes, has a write deadline writeStall away,
// and done, which clears the deadline for the connection's next response.
// It is for a response of any size whose body another function writes,
// such as http.ServeContent's: a server-wide WriteTimeout would cut off
// large downloads on slow links, and without any deadline a client that
// stops reading holds its handler and connection forever. The wrapper
// passes a file on to w's ReadFrom a chunk at a time, so it still goes out
// with sendfile.
func Guard(w http.ResponseWriter) (gw http.ResponseWriter, done func()) {
	g := guard(w)
	return g, g.done
}

// guarded is the ResponseWriter Guard returns.
type guarded struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func guard(w http.ResponseWriter) *guarded {
	return &guarded{ResponseWriter: w, rc: http.NewResponseController(w)}
}

func (g *guarded) extend() { g.rc.SetWriteDeadline(time.Now().Add(writeStall)) }

func (g *guarded) done() { g.rc.SetWriteDeadline(time.Time{}) }

// WriteHeader sets the deadline first: with no body, or one written
// later, the header may be the response's only write.
func (g *guarded) WriteHeader(status int) {
	g.extend()
	g.ResponseWriter.WriteHeader(status)
}

func (g *guarded) Write(p []byte) (n int, err error) {
	for len(p) > 0 && err == nil {
		g.extend()
		var m int
		m, err = g.ResponseWriter.Write(p[:min(len(p), sendChunk)])
		n += m
		p = p[m:]
	}
	return n, err
}

// ReadFrom implements io.ReaderFrom. It copies src to w in chunks, each
// a LimitedReader directly on src's reader (unwrapping one LimitedReader,
// as io.CopyN and http.ServeContent make), since the network's sendfile
// looks through one LimitedReader only.
func (g *guarded) ReadFrom(src io.Reader) (n int64, err error) {
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: src, N: math.MaxInt64}
	}
	for lr.N > 0 {
		g.extend()
		want := min(lr.N, sendChunk)
		var m int64
		m, err = io.Copy(g.ResponseWriter, &io.LimitedReader{R: lr.R, N: want})
		n += m
		lr.N -= m
		if err != nil || m < want { // an error, or the end of src
			break
		}
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (g *guarded) Unwrap() http.ResponseWriter { return g.ResponseWriter }
