package actions

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// bodyStall is how long a client gets to send bodyChunk bytes of a
// request's body: the read deadline set before every chunk is read, and
// when the request comes, for the body that net/http reads itself when a
// handler answers without reading it. A client slower than bodyChunk per
// bodyStall (4 KiB/s) is let go: an upload is answered 408, and the
// connection is closed. The server has no ReadTimeout, which would cut
// off large uploads on slow links; without any deadline, a client that
// declares a body and stops sending it holds its handler and connection
// (and an upload's temporary file) for as long as it keeps the
// connection open.
var bodyStall = 60 * time.Second

// bodyChunk is how much of a body is read under one read deadline.
const bodyChunk = 256 << 10

// errBodyTimeout is wrapped by the error of reading a request body that
// stalled: bodyChunk bytes did not come within bodyStall.
var errBodyTimeout = errors.New("request body timeout")

// guardBody returns r with its body, if it has one, under a read deadline
// bodyStall away, moved on by every bodyChunk bytes read. net/http clears
// the deadline once the body has been read to its end.
//
// The body is replaced in a copy of r, not in r: net/http looks at r's
// own body, after the handler, to tell how much of it is left unread.
func guardBody(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.ContentLength == 0 {
		// No body; net/http is reading ahead to notice the client going
		// away, which a deadline would mistake for a timeout.
		return r
	}
	g := &guardedBody{ReadCloser: r.Body, rc: http.NewResponseController(w)}
	g.extend()
	r = r.WithContext(r.Context())
	r.Body = g
	return r
}

// guardedBody is the request body guardBody makes.
type guardedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	left int // bytes that may still be read under the current deadline
}

func (g *guardedBody) extend() {
	g.rc.SetReadDeadline(time.Now().Add(bodyStall))
	g.left = bodyChunk
}

func (g *guardedBody) Read(p []byte) (int, error) {
	if g.left <= 0 {
		g.extend()
	}
	n, err := g.ReadCloser.Read(p[:min(len(p), g.left)])
	g.left -= n
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: fewer than %d bytes came in %v", errBodyTimeout, bodyChunk, bodyStall)
	}
	return n, err
}

// maxSiteBody bounds the body of a request to the Buffalo app (the site
// and the API but uploads), in bytes. None of its routes reads a body,
// but Buffalo parses one that claims to be a form before any route runs,
// holding up to 10 MiB of it in memory for each request.
const maxSiteBody = 64 << 10

// limitBody returns r with its body, if it has one, cut off after max
// bytes (http.MaxBytesReader), in a copy of r, as guardBody does.
func limitBody(w http.ResponseWriter, r *http.Request, max int64) *http.Request {
	if r.ContentLength == 0 {
		return r
	}
	body := http.MaxBytesReader(w, r.Body, max)
	r = r.WithContext(r.Context())
	r.Body = body
	return r
}
