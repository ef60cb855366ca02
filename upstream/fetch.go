package upstream

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// HTTPError is an upstream's answer with a status other than 200. It wraps
// ErrNotFound for 403, 404 and 410.
type HTTPError struct {
	URL        string // the URL requested, password redacted
	StatusCode int
	Status     string // such as "404 Not Found"
	// Detail is the start of a plain-text body, as the go command shows
	// it: at most 8 lines, up to the first blank line, only if printable.
	Detail string
}

// Error returns the message the go command would print for the answer.
func (e *HTTPError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("reading %s: %s", e.URL, e.Status)
	}
	sep := " "
	if strings.ContainsRune(e.Detail, '\n') {
		sep = "\n\t"
	}
	return fmt.Sprintf("reading %s: %s\n\tserver response:%s%s", e.URL, e.Status, sep, e.Detail)
}

// Unwrap returns ErrNotFound for 403, 404 and 410, else nil.
func (e *HTTPError) Unwrap() error {
	if isNotFoundStatus(e.StatusCode) {
		return ErrNotFound
	}
	return nil
}

// isNotFoundStatus reports whether an upstream answering status does not
// have the module: 404 and 410 as for the go command, and 403, which some
// mirrors answer for modules they do not serve.
func isNotFoundStatus(status int) bool {
	return status == http.StatusNotFound || status == http.StatusGone || status == http.StatusForbidden
}

// Limits of an error body kept for HTTPError.Detail, as the go command's.
const (
	maxErrorDetailLines = 8
	maxErrorDetailBytes = maxErrorDetailLines * 81
)

// maxErrorDrain is how much of a failed response's body is read beyond
// what HTTPError.Detail keeps, and discarded, so that its connection is
// kept: net/http closes one whose response body is closed unread, and
// most answers of an upstream are 404s, often of JSON, XML or HTML. A
// longer body costs its connection.
const maxErrorDrain = 4 << 10

// newHTTPError reads the start of a failed response's body, drains up to
// maxErrorDrain bytes more, and closes it; the body of a 101 Switching
// Protocols is closed unread. It returns the error, the body
// bytes read and the error of reading them, if any; then the HTTPError
// has no Detail.
func newHTTPError(name string, resp *http.Response) (*HTTPError, int64, error) {
	defer resp.Body.Close()
	e := &HTTPError{URL: name, StatusCode: resp.StatusCode, Status: resp.Status}
	if e.Status == "" {
		e.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the connection itself, now in another protocol:
		// nothing to read, and a read that neither the request's
		// context nor its timeouts would end. Closing it closes the
		// connection.
		return e, 0, nil
	}
	var detail []byte
	if isPlainText(resp.Header.Get("Content-Type")) {
		var err error
		detail, err = io.ReadAll(io.LimitReader(resp.Body, maxErrorDetailBytes+maxErrorDetailLines+1))
		if err != nil {
			return e, int64(len(detail)), err
		}
	}
	drained, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorDrain))
	n := int64(len(detail)) + drained
	if err != nil {
		return e, n, err
	}
	e.Detail = formatErrorDetail(string(detail))
	return e, n, nil
}

// isPlainText reports whether a Content-Type is text/plain in UTF-8 or
// ASCII, which the go command shows of an error answer.
func isPlainText(contentType string) bool {
	mediaType, params, _ := mime.ParseMediaType(contentType)
	if mediaType != "text/plain" {
		return false
	}
	switch strings.ToLower(params["charset"]) {
	case "", "utf-8", "us-ascii":
		return true
	}
	return false
}

// formatErrorDetail returns the start of a plain-text error body as the go
// command shows it (cmd/go/internal/web): lines up to the first blank
// one, at most 8 of them and 648 bytes, joined by "\n\t"; nothing if the
// text is not valid UTF-8 or not printable.
func formatErrorDetail(s string) string {
	if !utf8.ValidString(s) {
		// The limit may have cut a character in two.
		s = strings.TrimRightFunc(s, func(r rune) bool { return r == utf8.RuneError })
		if !utf8.ValidString(s) {
			return ""
		}
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) && !unicode.IsSpace(r) {
			return ""
		}
	}
	var detail strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		if i > 0 {
			detail.WriteString("\n\t")
		}
		if i >= maxErrorDetailLines {
			detail.WriteString("[Truncated: too many lines.]")
			break
		}
		if detail.Len()+len(line) > maxErrorDetailBytes {
			detail.WriteString("[Truncated: too long.]")
			break
		}
		detail.WriteString(line)
	}
	return detail.String()
}

// timeoutError is the cause of a request cancelled by one of its
// timeouts.
type timeoutError struct {
	what string
	d    time.Duration
}

func (e *timeoutError) Error() string { return fmt.Sprintf("%s within %v", e.what, e.d) }

// Timeout reports true, as net.Error does for timeouts.
func (e *timeoutError) Timeout() bool { return true }

// Is makes errors.Is(err, os.ErrDeadlineExceeded) true for timeouts.
func (e *timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// retryError is a failure that is worth another attempt: a 5xx, a 429, a
// connection error, a body cut short.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// getBytes fetches escPath's file rel from p in full, retrying failures
// worth it, and returns its body, of at most the kind's limit.
func (c *Client) getBytes(ctx context.Context, p *proxy, kind, escPath, rel string) ([]byte, error) {
	var data []byte
	err := c.retry(ctx, func() error {
		b, err := c.attempt(ctx, p, kind, escPath, rel)
		if err != nil {
			return err
		}
		defer b.Close()
		var buf bytes.Buffer
		if n := b.contentLength; n > 0 && n <= b.limit {
			buf.Grow(int(n))
		}
		if _, err := buf.ReadFrom(b); err != nil {
			switch {
			case errors.Is(err, ErrTooLarge) || IsCorruptEncoding(err) || ctx.Err() != nil:
				return err
			case isTimeout(err):
				return &unansweredError{err}
			}
			return &retryError{err}
		}
		data = buf.Bytes()
		return nil
	})
	return data, err
}

// open requests escPath's file rel from p, retrying failures worth it,
// and returns the body of the first 200 answer.
func (c *Client) open(ctx context.Context, p *proxy, kind, escPath, rel string) (*body, error) {
	var b *body
	err := c.retry(ctx, func() error {
		var err error
		b, err = c.attempt(ctx, p, kind, escPath, rel)
		return err
	})
	return b, err
}

// retry calls f until it succeeds, fails with an error that is not a
// *retryError, or has been retried Options.Retries times, waiting with
// exponential backoff and jitter in between. It returns f's last error,
// unwrapped, as an *unansweredError when every attempt failed so.
func (c *Client) retry(ctx context.Context, f func() error) error {
	for n := 0; ; n++ {
		err := f()
		var re *retryError
		if !errors.As(err, &re) {
			return err
		}
		if ctx.Err() != nil {
			return re.err
		}
		if n >= c.opts.Retries {
			if n > 0 {
				return &unansweredError{fmt.Errorf("%w (gave up after %d attempts)", re.err, n+1)}
			}
			return &unansweredError{re.err}
		}
		t := time.NewTimer(c.backoff(n))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return re.err
		}
	}
}

// maxBackoff caps the wait before a retry.
const maxBackoff = time.Minute

// backoff returns the wait before retry n+1: Backoff·2ⁿ, ±50% at random.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.Backoff << min(n, 20)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	return d/2 + rand.N(d)
}

// IsCorruptEncoding reports whether err, from reading a response body, is
// the failure to decode a body that is not the gzip its Content-Encoding
// says, which net/http decodes (it asks for gzip): the server's answer,
// whole, which no retry mends, unlike a body cut short. The go command
// does not retry it either.
func IsCorruptEncoding(err error) bool {
	var ce flate.CorruptInputError
	return errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &ce)
}

// isTimeout reports whether err is the expiry of one of a request's
// timeouts.
func isTimeout(err error) bool {
	var te *timeoutError
	return errors.As(err, &te)
}

// attempt sends one GET of escPath's file rel to p. It returns the body of
// a 200 answer; the Observer is told of the attempt when the body is
// closed. Other answers and failures are returned as errors, wrapped in a
// *retryError when worth another attempt, and observed here.
func (c *Client) attempt(ctx context.Context, p *proxy, kind, escPath, rel string) (*body, error) {
	u := *p.base
	u.Path += "/" + escPath + "/" + rel
	u.RawPath = p.base.EscapedPath() + "/" + pathEscape(escPath+"/"+rel)
	name := RedactURL(&u)
	limit := c.limits[kind]

	start := time.Now()
	actx, cancel := context.WithCancelCause(ctx)
	headerTimer := c.headerTimer(whatNoHeaders, cancel)
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		headerTimer.Stop()
		cancel(nil)
		return nil, err
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	resp, err := c.hc.Do(req)
	if !headerTimer.Stop() && err == nil {
		// The timeout struck as the headers came: the body is cut off.
		// Its function may have started without cancelling actx yet.
		resp.Body.Close()
		<-actx.Done()
		err = context.Cause(actx)
	}
	var re *redirectError
	if errors.As(err, &re) {
		// The proxy answered with a redirect, not followed: net/http
		// returns that answer, its body closed, with the error.
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		cancel(nil)
		c.observe(p, kind, status, 0, start, err)
		return nil, err
	}
	if err != nil {
		retry := ctx.Err() == nil && !isTimeout(context.Cause(actx)) && !isCertError(err)
		if actx.Err() != nil {
			err = fmt.Errorf("reading %s: %w", name, context.Cause(actx))
		}
		cancel(nil)
		c.observe(p, kind, 0, 0, start, err)
		switch {
		case retry:
			return nil, &retryError{err}
		case ctx.Err() == nil: // a timeout, a certificate that did not verify
			return nil, &unansweredError{err}
		}
		return nil, err
	}

	if resp.StatusCode != http.StatusOK {
		// The body of an error answer is small: it gets the time its
		// headers may take.
		timer := c.headerTimer(whatNoErrorBody, cancel)
		herr, n, readErr := newHTTPError(name, resp)
		timer.Stop()
		var err error = herr
		stalled := readErr != nil && actx.Err() != nil
		if stalled {
			err = fmt.Errorf("%w (%w)", herr, context.Cause(actx))
		}
		cancel(nil)
		c.observe(p, kind, resp.StatusCode, n, start, err)
		switch {
		case stalled && ctx.Err() == nil:
			// An answer that does not come in full is no answer,
			// and timeouts are not retried, but its status still
			// tells whether the proxy has the module.
			return nil, &unansweredError{err}
		case stalled: // given up by the caller
			return nil, err
		case resp.StatusCode == http.StatusLoopDetected:
			// The request came back to an Agora that sent it (see
			// WithVia): no retry mends that.
			return nil, &unansweredError{herr}
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			return nil, &retryError{herr}
		}
		return nil, herr
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		cancel(nil)
		err := fmt.Errorf("reading %s: %d bytes, more than the limit of %d: %w", name, resp.ContentLength, limit, ErrTooLarge)
		c.observe(p, kind, resp.StatusCode, 0, start, err)
		return nil, err
	}
	b := &body{
		c: c, p: p, kind: kind, name: name, status: resp.StatusCode, start: start,
		rc: resp.Body, contentLength: resp.ContentLength, limit: limit,
		ctx: actx, cancel: cancel,
	}
	timeout := c.opts.SmallBodyTimeout
	if kind == kindZip {
		timeout = c.opts.BodyTimeout
	}
	b.timer = time.AfterFunc(timeout, func() {
		cancel(&timeoutError{"body not received in full", timeout})
	})
	return b, nil
}

// The timeouts that HeaderTimeout bounds, as their errors name them.
const (
	whatNoHeaders   = "no response headers"
	whatNoErrorBody = "error response body not received in full"
)

// headerTimer cancels an attempt with the timeout what unless stopped
// within HeaderTimeout.
func (c *Client) headerTimer(what string, cancel context.CancelCauseFunc) stopper {
	return c.opts.startHeaderTimer(what, func() {
		cancel(&timeoutError{what, c.opts.HeaderTimeout})
	})
}

// isCertError reports whether err is a TLS certificate that did not
// verify, which no retry mends.
func isCertError(err error) bool {
	var ce *tls.CertificateVerificationError
	return errors.As(err, &ce)
}

// pathEscape escapes a URL path, keeping its slashes, and the '!' of
// escaped module paths as it is.
func pathEscape(s string) string {
	return pathUnescaper.Replace(url.PathEscape(s))
}

var pathUnescaper = strings.NewReplacer("%2F", "/", "%21", "!")

// observe tells the Observer, if any, of an attempt.
func (c *Client) observe(p *proxy, kind string, status int, n int64, start time.Time, err error) {
	if c.opts.Observer != nil {
		c.opts.Observer.Fetch(p.name, kind, status, n, time.Since(start), err)
	}
}

// body is the body of a 200 answer being read: bounded by the kind's
// size limit and the body timeout, observed when closed.
type body struct {
	c             *Client
	p             *proxy
	kind, name    string
	status        int
	start         time.Time
	rc            io.ReadCloser
	contentLength int64
	limit         int64
	ctx           context.Context // the attempt's, for the cause of a cancellation
	cancel        context.CancelCauseFunc
	timer         *time.Timer // the body timeout

	mu  sync.Mutex
	n   int64 // bytes read
	err error // the first error other than io.EOF

	closeOnce sync.Once
}

// Read reads from the body, failing with an error wrapping ErrTooLarge
// beyond the limit.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	n0, err0 := b.n, b.err
	b.mu.Unlock()
	if err0 != nil {
		return 0, err0
	}
	if room := b.limit - n0 + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	switch {
	case n0+int64(n) > b.limit:
		n = int(b.limit - n0)
		err = fmt.Errorf("reading %s: more than the limit of %d bytes: %w", b.name, b.limit, ErrTooLarge)
	case err != nil && err != io.EOF:
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		err = fmt.Errorf("reading %s: %w", b.name, err)
	}
	b.mu.Lock()
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	return n, err
}

// Close closes the body, ends the request and tells the Observer of it.
func (b *body) Close() error {
	b.closeOnce.Do(func() {
		b.timer.Stop()
		b.rc.Close()
		b.cancel(nil)
		b.mu.Lock()
		n, err := b.n, b.err
		b.mu.Unlock()
		b.c.observe(b.p, b.kind, b.status, n, b.start, err)
	})
	return nil
}

// fileTransport answers file:// requests from the file system, as the go
// command does for file:// proxies, and passes the others on to next.
type fileTransport struct{ next http.RoundTripper }

// RoundTrip answers req: for a file URL, 200 with the file, 404 if there
// is no such file (or it is a directory), 403 if it may not be read.
func (t fileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "file" {
		return t.next.RoundTrip(req)
	}
	resp := func(status int, body io.ReadCloser, size int64) *http.Response {
		return &http.Response{
			Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
			Proto: "HTTP/1.0", ProtoMajor: 1, Header: make(http.Header),
			Body: body, ContentLength: size, Request: req,
		}
	}
	f, err := os.Open(filepath.FromSlash(req.URL.Path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return resp(http.StatusNotFound, http.NoBody, 0), nil
	case errors.Is(err, fs.ErrPermission):
		return resp(http.StatusForbidden, http.NoBody, 0), nil
	case err != nil:
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return resp(http.StatusNotFound, http.NoBody, 0), nil
	}
	return resp(http.StatusOK, &fileBody{ctx: req.Context(), f: f}, st.Size()), nil
}

// fileBody is a file read as a response body, stopped by its request's
// context.
type fileBody struct {
	ctx context.Context
	f   *os.File
}

func (b *fileBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.f.Read(p)
}

func (b *fileBody) Close() error { return b.f.Close() }
