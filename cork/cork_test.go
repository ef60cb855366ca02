package cork

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deadlineWriter is a ResponseWriter that records the write deadlines set
// through http.ResponseController, and the bytes written after each.
type deadlineWriter struct {
	httptest.ResponseRecorder
	deadlines []time.Time
	written   []int // bytes written between one deadline and the next
}

func (w *deadlineWriter) SetWriteDeadline(t time.Time) error {
	w.deadlines = append(w.deadlines, t)
	w.written = append(w.written, 0)
	return nil
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if len(w.written) > 0 {
		w.written[len(w.written)-1] += len(p)
	}
	return w.ResponseRecorder.Write(p)
}

// TestSendExtendsTheWriteDeadline checks that Send gives every piece of the
// body of at most sendChunk bytes its own write deadline, writeStall away,
// and clears it at the end, so that a response the client stops reading
// ends, and the connection's next response has no deadline left over.
func TestSendExtendsTheWriteDeadline(t *testing.T) {
	const size = 3*sendChunk + 100
	w := &deadlineWriter{ResponseRecorder: *httptest.NewRecorder()}
	start := time.Now()
	if err := Send(w, httptest.NewRequest(http.MethodGet, "/", nil), strings.NewReader(strings.Repeat("x", size)), size); err != nil {
		t.Fatal(err)
	}
	if w.Body.Len() != size {
		t.Fatalf("sent %d bytes; want %d", w.Body.Len(), size)
	}
	n := len(w.deadlines)
	if n < 2 || !w.deadlines[n-1].IsZero() || w.written[n-1] != 0 {
		t.Fatalf("deadlines %v; want the last cleared after the body", w.deadlines)
	}
	for i, d := range w.deadlines[:n-1] {
		if d.Before(start.Add(writeStall)) || w.written[i] > sendChunk {
			t.Errorf("deadline %d: %v, then %d bytes; want writeStall away, for at most %d bytes", i, d, w.written[i], sendChunk)
		}
	}
}

// TestSendToAClientThatStopsReading checks that Send returns when the
// client stops reading, instead of holding its handler and connection
// forever: there was no write deadline at all.
func TestSendToAClientThatStopsReading(t *testing.T) {
	defer func(d time.Duration) { writeStall = d }(writeStall)
	writeStall = 100 * time.Millisecond
	const size = 64 << 20 // far more than the sockets' buffers hold
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(name)
		if err != nil {
			sent <- err
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(size))
		sent <- Send(w, r, f, size)
	}))
	ts.Config.ConnContext = ConnContext
	ts.Start()
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil) // the header, then no more reading
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case err := <-sent:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Send to a client that stopped reading = %v; want a deadline exceeded", err)
		}
	case <-time.After(time.Minute): // a bound for the failure, not a wait for success
		t.Fatal("Send still blocked a minute after its client stopped reading")
	}
}
