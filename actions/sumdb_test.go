package actions

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"

	"agora/checksum"
	"agora/metrics"
	"agora/upstream"
)

// newFakeSumDB starts an upstream proxy serving a checksum database named
// name at /sumdb/name/, which knows example.com/a@v1.0.0, and returns its
// URL and the database's verifier key.
func newFakeSumDB(t *testing.T, name string) (url, vkey string) {
	t.Helper()
	url, vkey, _ = newCountingSumDB(t, name)
	return url, vkey
}

// NewCountingSumDB is newCountingSumDB, for the tests of package
// actions_test.
var NewCountingSumDB = newCountingSumDB

// newCountingSumDB is newFakeSumDB that also returns the paths of the
// requests its proxy received.
func newCountingSumDB(t *testing.T, name string) (url, vkey string, requests func() []string) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []string
	)
	requests = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	srv := sumdb.NewServer(sumdb.NewTestServer(skey, func(path, vers string) ([]byte, error) {
		if path+"@"+vers != "example.com/a@v1.0.0" {
			return nil, os.ErrNotExist
		}
		return []byte(fmt.Sprintf("%[1]s %[2]s h1:zip=\n%[1]s %[2]s/go.mod h1:mod=\n", path, vers)), nil
	}))
	prefix := "/sumdb/" + name
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		if r.URL.Path == prefix+"/supported" {
			return
		}
		http.StripPrefix(prefix, srv).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return proxy.URL, vkey, requests
}

func TestSumDBHandler(t *testing.T) {
	const name = "sum.example.com"
	fakeProxy, vkey := newFakeSumDB(t, name)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(proxy string) *checksum.DB {
		db, err := checksum.New(checksum.Options{Name: name, Key: vkey, Proxies: []upstream.Proxy{{URL: proxy}}, CacheDir: t.TempDir(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer broken.Close()

	h := newSumDBHandler(open(fakeProxy), nil, nil, nil, log)
	off := newSumDBHandler(nil, nil, nil, nil, log)
	down := newSumDBHandler(open(broken.URL), nil, nil, nil, log)
	p := "/sumdb/" + name + "/"
	tests := []struct {
		handler      http.Handler
		method, path string
		status       int
		contentType  string
		cacheControl string
		emptyBody    bool
	}{
		{handler: h, method: "GET", path: p + "supported", status: 200, emptyBody: true},
		{handler: h, method: "GET", path: "/sumdb/sum.golang.org/supported", status: 404},
		{handler: h, method: "GET", path: p + "lookup/example.com/a@v1.0.0", status: 200, contentType: "text/plain; charset=utf-8", cacheControl: "public, max-age=86400"},
		{handler: h, method: "GET", path: p + "latest", status: 200, contentType: "text/plain; charset=utf-8", cacheControl: "no-cache"},
		{handler: h, method: "HEAD", path: p + "latest", status: 200, emptyBody: true},
		{handler: h, method: "GET", path: p + "tile/8/0/000.p/1", status: 200, contentType: "application/octet-stream", cacheControl: "public, max-age=31536000, immutable"},
		{handler: h, method: "GET", path: p + "tile/8/data/000.p/1", status: 200, contentType: "text/plain; charset=utf-8", cacheControl: "public, max-age=31536000, immutable"},
		{handler: h, method: "GET", path: p + "lookup/example.com/private@v1.0.0", status: 404},
		{handler: h, method: "GET", path: p + "lookup/example.com/a@master", status: 400},
		{handler: h, method: "GET", path: p + "tile/8/0/../../latest", status: 400},
		{handler: h, method: "GET", path: p + "nonsense", status: 404},
		{handler: h, method: "POST", path: p + "latest", status: 405},
		{handler: off, method: "GET", path: p + "supported", status: 404},
		{handler: off, method: "GET", path: p + "latest", status: 404},
		{handler: down, method: "GET", path: p + "latest", status: 502},
		{handler: down, method: "GET", path: p + "lookup/example.com/a@v1.0.0", status: 502},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		tt.handler.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tt.status {
			t.Errorf("%s %s: status %d (%s); want %d", tt.method, tt.path, res.StatusCode, body, tt.status)
			continue
		}
		if ct := res.Header.Get("Content-Type"); tt.contentType != "" && ct != tt.contentType {
			t.Errorf("%s %s: Content-Type %q; want %q", tt.method, tt.path, ct, tt.contentType)
		}
		if cc := res.Header.Get("Cache-Control"); tt.cacheControl != "" && cc != tt.cacheControl {
			t.Errorf("%s %s: Cache-Control %q; want %q", tt.method, tt.path, cc, tt.cacheControl)
		}
		if tt.emptyBody != (len(body) == 0) {
			t.Errorf("%s %s: body %q; want empty %v", tt.method, tt.path, body, tt.emptyBody)
		}
		if tt.status >= 400 && !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s %s: error Content-Type %q; want text/plain", tt.method, tt.path, res.Header.Get("Content-Type"))
		}
		// The go command prints the reason after "server response:".
		if line, ok := strings.CutSuffix(string(body), "\n"); tt.status >= 400 && (!ok || strings.Contains(line, "\n") || !printableLine(line)) {
			t.Errorf("%s %s: error body %q; want a line of printable text", tt.method, tt.path, body)
		}
	}

	// A failed precondition is an answer about the request, not the tile
	// or record: no cache may keep it as theirs.
	for _, path := range []string{p + "tile/8/0/000.p/1", p + "lookup/example.com/a@v1.0.0"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-Match", `"something"`)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusPreconditionFailed {
			t.Errorf("GET %s with If-Match: status %d; want 412", path, rec.Code)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s with If-Match: %d with Cache-Control %q; want no-cache", path, rec.Code, cc)
		}
	}
}

// TestSumDBStatus checks the statuses of the checksum database's errors:
// one that is too busy to fetch another answer is a 503, to be retried,
// not a 502, an upstream that failed.
func TestSumDBStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: x", checksum.ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("%w: x", checksum.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("%w: x", checksum.ErrUnavailable), http.StatusBadGateway},
		{fmt.Errorf("%w: %w: x", checksum.ErrUnavailable, checksum.ErrBusy), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", checksum.ErrUnavailable, context.DeadlineExceeded), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", checksum.ErrUnavailable, context.Canceled), statusClientClosedRequest},
		{errors.New("x"), http.StatusInternalServerError},
	} {
		if got := sumdbStatus(tt.err); got != tt.want {
			t.Errorf("sumdbStatus(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
}

// TestSumDBHandlerMetrics checks that the checksum-database proxy counts
// a request answered from its cache as a hit and one it fetched as a miss.
func TestSumDBHandlerMetrics(t *testing.T) {
	const name = "sum.example.com"
	fakeProxy, vkey, upstreamRequests := newCountingSumDB(t, name)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := checksum.New(checksum.Options{Name: name, Key: vkey, Proxies: []upstream.Proxy{{URL: fakeProxy}}, CacheDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	h := newSumDBHandler(db, nil, nil, m, log)

	// The fake database has a tile once a lookup has made its record.
	p := "/sumdb/" + name + "/"
	tile := p + "tile/8/data/000.p/1" // a lookup fetches hash tiles, not this
	get := func(path string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d (%s); want 200", path, rec.Code, rec.Body)
		}
	}
	// wantTileCounts checks the tile's hits and misses after the request
	// named by after: counted after each request, as one hit and one miss
	// in total would also be the count of hits and misses swapped.
	wantTileCounts := func(after string, miss, hit int) {
		t.Helper()
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, want := range []string{
			fmt.Sprintf(`agora_sumdb_requests_total{kind="tile",result="miss"} %d`, miss),
			fmt.Sprintf(`agora_sumdb_requests_total{kind="tile",result="hit"} %d`, hit),
		} {
			if !strings.Contains(rec.Body.String(), want+"\n") {
				t.Errorf("/metrics after %s lacks %s", after, want)
			}
		}
	}
	get(p + "lookup/example.com/a@v1.0.0")
	get(tile)
	wantTileCounts("the first request for a tile (fetched)", 1, 0)
	get(tile)
	wantTileCounts("the second request for it (cached)", 1, 1)
	if n := strings.Count(strings.Join(upstreamRequests(), "\n"), "/tile/8/data/000.p/1"); n != 1 {
		t.Errorf("upstream requests for the tile = %d; want 1", n)
	}
}

// TestSumDBPrivateCheckFailing checks the answers to a lookup whose
// module cannot be told private or not, because the database failed: one
// whose client went away is a 499, and no internal error (the soak test
// found one logged at ERROR, the lookup of a client that gave up while
// PostgreSQL answered slowly), a database out of reach a 503 that does not
// name its address, and anything else an internal error, logged.
func TestSumDBPrivateCheckFailing(t *testing.T) {
	const name = "sum.example.com"
	fakeProxy, vkey := newFakeSumDB(t, name)
	lost := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	for _, tt := range []struct {
		err    error
		status int
		body   string // what the answer holds
		logged string // what the log holds; "" for nothing at ERROR
	}{
		{fmt.Errorf("models: versions of example.com/a: %w: %w", context.Canceled, lost), statusClientClosedRequest, "client closed request", ""},
		{fmt.Errorf("models: versions of example.com/a: %w", lost), http.StatusServiceUnavailable, "the database is unavailable", "the database is unavailable"},
		{errors.New("models: versions of example.com/a: no such table"), http.StatusInternalServerError, "internal error", "internal error"},
	} {
		var logBuf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelError}))
		db, err := checksum.New(checksum.Options{Name: name, Key: vkey, Proxies: []upstream.Proxy{{URL: fakeProxy}}, CacheDir: t.TempDir(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		private := func(context.Context, string) (string, error) { return "", tt.err }
		h := newSumDBHandler(db, private, nil, nil, log)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/sumdb/"+name+"/lookup/example.com/a@v1.0.0", nil))
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("private check failing with %v: %d %q; want %d holding %q", tt.err, rec.Code, rec.Body, tt.status, tt.body)
		}
		// (A 499 reaches nobody: its client is gone.)
		if tt.status != statusClientClosedRequest && strings.Contains(rec.Body.String(), "connection reset") {
			t.Errorf("private check failing with %v: the answer %q names the database's error", tt.err, rec.Body)
		}
		if got := logBuf.String(); tt.logged == "" && got != "" || !strings.Contains(got, tt.logged) {
			t.Errorf("private check failing with %v: logged %q; want %q", tt.err, got, tt.logged)
		}
	}
}
