package actions

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// deadlineRecorder records the read deadlines set on a response and how
// many bytes of the request's body were read under each.
type deadlineRecorder struct {
	http.ResponseWriter
	deadlines []time.Time
	read      []int
}

func (w *deadlineRecorder) SetReadDeadline(d time.Time) error {
	w.deadlines = append(w.deadlines, d)
	w.read = append(w.read, 0)
	return nil
}

// recordedBody is a request body that counts what is read of it in w.
type recordedBody struct {
	r io.Reader
	w *deadlineRecorder
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if len(b.w.read) > 0 {
		b.w.read[len(b.w.read)-1] += n
	}
	return n, err
}

func (b *recordedBody) Close() error { return nil }

// TestGuardBodyDeadlines checks that a body is read in pieces of at most
// bodyChunk bytes, each under a read deadline bodyStall after it started,
// so that a large upload from a client that keeps sending is never cut
// off, and that a request without a body gets no deadline.
func TestGuardBodyDeadlines(t *testing.T) {
	const size = 3*bodyChunk + 10
	w := &deadlineRecorder{ResponseWriter: httptest.NewRecorder()}
	r := httptest.NewRequest(http.MethodPut, "/", nil)
	r.Body, r.ContentLength = &recordedBody{strings.NewReader(strings.Repeat("x", size)), w}, size
	start := time.Now()
	r = guardBody(w, r)
	buf := make([]byte, 1<<20)
	n := 0
	for {
		m, err := r.Body.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	if len(w.deadlines) != 4 {
		t.Errorf("%d deadlines for %d bytes, want 4", len(w.deadlines), size)
	}
	for i, d := range w.deadlines {
		if d.Before(start.Add(bodyStall)) || w.read[i] > bodyChunk {
			t.Errorf("deadline %d: %v, then %d bytes; want bodyStall away, for at most %d bytes", i, d.Sub(start), w.read[i], bodyChunk)
		}
	}

	w = &deadlineRecorder{ResponseWriter: httptest.NewRecorder()}
	guardBody(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if len(w.deadlines) != 0 {
		t.Errorf("a request without a body got read deadlines %v", w.deadlines)
	}
}

// TestGuardBodyTimeout checks that a body whose read deadline passes fails
// with an error that is answered 408.
func TestGuardBodyTimeout(t *testing.T) {
	w := &deadlineRecorder{ResponseWriter: httptest.NewRecorder()}
	r := httptest.NewRequest(http.MethodPut, "/", nil)
	r.Body, r.ContentLength = io.NopCloser(expiredConn{}), 10
	r = guardBody(w, r)
	_, err := r.Body.Read(make([]byte, 10))
	if !errors.Is(err, errBodyTimeout) {
		t.Fatalf("reading a body past its deadline: %v, want errBodyTimeout", err)
	}
	if status, _ := statusOf(err); status != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", status)
	}
}

// expiredConn reads as a connection whose read deadline has passed.
type expiredConn struct{}

func (expiredConn) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }
