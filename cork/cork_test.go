package cork

import (
	"bufio"
	"bytes"
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
	checkDeadlines(t, w, start)
}

// TestSendToAClientThatStopsReading checks that Send returns when the
// client stops reading, instead of holding its handler and connection
// forever: there was no write deadline at all.
func TestSendToAClientThatStopsReading(t *testing.T) {
	err := toAClientThatStopsReading(t, nil, func(w http.ResponseWriter, r *http.Request, f *os.File, size int) error {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		return Send(w, r, f, int64(size))
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Send to a client that stopped reading = %v; want a deadline exceeded", err)
	}
}

// TestGuardToAClientThatStopsReading checks that http.ServeContent through
// Guard returns when the client of a range stops reading: it had no write
// deadline, so a client could hold a handler and a file forever with a
// Range or an If-None-Match header.
func TestGuardToAClientThatStopsReading(t *testing.T) {
	for _, header := range []string{"Range: bytes=1-", "Range: bytes=0-10,20-"} {
		t.Run(header, func(t *testing.T) {
			toAClientThatStopsReading(t, []string{header}, func(w http.ResponseWriter, r *http.Request, f *os.File, size int) error {
				gw, done := Guard(w)
				defer done()
				http.ServeContent(gw, r, "", time.Time{}, f)
				return nil
			})
		})
	}
}

// toAClientThatStopsReading serves a file far larger than the sockets'
// buffers with send to a client that reads the response's header and then
// stops reading, and returns what send returned. It fails the test unless
// send returns, and its response is a 200 or 206.
func toAClientThatStopsReading(t *testing.T, header []string, send func(http.ResponseWriter, *http.Request, *os.File, int) error) error {
	t.Helper()
	defer func(d time.Duration) { writeStall = d }(writeStall)
	writeStall = 100 * time.Millisecond
	const size = 64 << 20
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
		sent <- send(w, r, f, size)
	}))
	ts.Config.ConnContext = ConnContext
	ts.Start()
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET / HTTP/1.1\r\nHost: test\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil) // the header, then no more reading
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case err := <-sent:
		return err
	case <-time.After(time.Minute): // a bound for the failure, not a wait for success
		t.Fatal("still sending a minute after the client stopped reading")
		return nil
	}
}

// TestGuard checks that what goes through Guard arrives whole: a file
// through ReadFrom as one range, several ranges (written from a pipe),
// and plain writes larger than a chunk; and that each chunk had its own
// deadline, cleared at the end.
func TestGuard(t *testing.T) {
	const size = 3*sendChunk + 100
	content := make([]byte, size)
	for i := range content {
		content[i] = byte(i % 251)
	}
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rng  string
		want []byte
	}{
		{"", content},
		{"bytes=7-", content[7:]},
		{"bytes=10-" + strconv.Itoa(2*sendChunk), content[10 : 2*sendChunk+1]},
	} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		w := &deadlineWriter{ResponseRecorder: *httptest.NewRecorder()}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.rng != "" {
			r.Header.Set("Range", tc.rng)
		}
		start := time.Now()
		gw, done := Guard(w)
		http.ServeContent(gw, r, "", time.Time{}, f)
		done()
		f.Close()
		if !bytes.Equal(w.Body.Bytes(), tc.want) {
			t.Errorf("Range %q: %d bytes back; want %d", tc.rng, w.Body.Len(), len(tc.want))
		}
		checkDeadlines(t, w, start)
	}

	w := &deadlineWriter{ResponseRecorder: *httptest.NewRecorder()}
	gw, done := Guard(w)
	start := time.Now()
	if n, err := gw.Write(content); n != size || err != nil {
		t.Errorf("Write = %d, %v; want %d, nil", n, err, size)
	}
	done()
	if !bytes.Equal(w.Body.Bytes(), content) {
		t.Errorf("Write: %d bytes back; want %d", w.Body.Len(), size)
	}
	checkDeadlines(t, w, start)

	w = &deadlineWriter{ResponseRecorder: *httptest.NewRecorder()}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Range", "bytes=0-9,100-")
	gw, done = Guard(w)
	http.ServeContent(gw, r, "", time.Time{}, bytes.NewReader(content))
	done()
	if w.Code != http.StatusPartialContent || !bytes.Contains(w.Body.Bytes(), content[100:]) || !bytes.Contains(w.Body.Bytes(), content[:10]) {
		t.Errorf("two ranges: status %d, %d bytes back, not both ranges", w.Code, w.Body.Len())
	}
}

// checkDeadlines fails the test unless each piece written to w had a
// deadline writeStall after start and was at most sendChunk bytes, and the
// last deadline was cleared with nothing written after it.
func checkDeadlines(t *testing.T, w *deadlineWriter, start time.Time) {
	t.Helper()
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
