package checksum

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"agora/upstream"
)

// fakeName is the name of the fake checksum database.
const fakeName = "sum.example.com"

// fakeProxy is an upstream proxy that serves a checksum database built with
// golang.org/x/mod/sumdb's test server at /sumdb/<name>/, and counts the
// requests it gets.
type fakeProxy struct {
	t      *testing.T
	srv    *httptest.Server
	signer string // note signer key
	vkey   string // note verifier key
	ts     *sumdb.TestServer

	mu       sync.Mutex
	sums     map[string]string // "path@version" -> go.sum lines
	requests map[string]int    // URL path -> count

	failing   atomic.Bool   // every request fails with 500
	failNext  atomic.Int32  // so many next requests fail with 503
	failTiles atomic.Bool   // tile requests fail with 500
	gate      chan struct{} // when not nil, lookups wait until it is closed
	arrived   chan struct{} // when not nil, told of each gated lookup
	// rewrite, when set, tampers with the answers of the database.
	rewrite atomic.Pointer[func(path string, body []byte) []byte]
}

// newFakeProxy starts a fake proxy serving a database that knows the
// modules of sums ("path@version" -> h1: zip hash, h1: go.mod hash).
func newFakeProxy(t *testing.T) *fakeProxy {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, fakeName)
	if err != nil {
		t.Fatal(err)
	}
	return startFakeProxy(t, skey, vkey)
}

// fork starts a fake proxy serving a database that signs with f's key but
// keeps a log of its own: a fork of f's, which the database's operator (or
// a thief of its key) could serve to some clients.
func (f *fakeProxy) fork() *fakeProxy {
	f.t.Helper()
	return startFakeProxy(f.t, f.signer, f.vkey)
}

// startFakeProxy starts a fake proxy whose database signs with the note
// signer key skey, and is verified with vkey.
func startFakeProxy(t *testing.T, skey, vkey string) *fakeProxy {
	t.Helper()
	f := &fakeProxy{t: t, signer: skey, vkey: vkey, sums: map[string]string{}, requests: map[string]int{}}
	f.ts = sumdb.NewTestServer(skey, func(path, vers string) ([]byte, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		lines, ok := f.sums[path+"@"+vers]
		if !ok {
			return nil, os.ErrNotExist // 404
		}
		return []byte(lines), nil
	})
	server := sumdb.NewServer(f.ts)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests[r.URL.Path]++
		f.mu.Unlock()
		if f.failNext.Add(-1) >= 0 {
			http.Error(w, "upstream busy", http.StatusServiceUnavailable)
			return
		}
		f.failNext.Store(0)
		if f.failing.Load() || f.failTiles.Load() && strings.Contains(r.URL.Path, "/tile/") {
			http.Error(w, "upstream on fire", http.StatusInternalServerError)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/sumdb/"+fakeName)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if rest == "/supported" {
			return
		}
		if strings.HasPrefix(rest, "/lookup/") && f.gate != nil {
			if f.arrived != nil {
				f.arrived <- struct{}{}
			}
			<-f.gate
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		rw := f.rewrite.Load()
		if rw == nil {
			server.ServeHTTP(w, r2)
			return
		}
		rec := httptest.NewRecorder()
		server.ServeHTTP(rec, r2)
		w.WriteHeader(rec.Code)
		w.Write((*rw)(rest, rec.Body.Bytes()))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// add makes the database know path@version with the given hashes.
func (f *fakeProxy) add(path, version, zipHash, modHash string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sums[path+"@"+version] = fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, version, zipHash, path, version, modHash)
}

// count returns how many requests for URL paths with the given prefix
// (after /sumdb/<name>) the proxy got.
func (f *fakeProxy) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, c := range f.requests {
		if strings.HasPrefix(p, "/sumdb/"+fakeName+"/"+prefix) {
			n += c
		}
	}
	return n
}

// total returns how many requests the proxy got.
func (f *fakeProxy) total() int { return f.count("") }

// signTree returns a tree head of size n signed by the database's key.
func (f *fakeProxy) signTree(n int64) []byte {
	f.t.Helper()
	s, err := note.NewSigner(f.signer)
	if err != nil {
		f.t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: n}))}, s)
	if err != nil {
		f.t.Fatal(err)
	}
	return msg
}

// options returns Options for a DB using the fake proxy, caching in dir.
func (f *fakeProxy) options(dir string) Options {
	return Options{
		Name:     fakeName,
		Key:      f.vkey,
		Proxies:  []upstream.Proxy{{URL: f.srv.URL}},
		CacheDir: dir,
		Backoff:  time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(f.t.Output(), nil)),
	}
}

// newDB returns a DB with opts, failing the test on error.
func newDB(t *testing.T, opts Options) *DB {
	t.Helper()
	db, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// hostRewriter sends requests for host to the server at target, under
// prefix: it stands for the database's own host.
type hostRewriter struct {
	host   string
	target *url.URL
	prefix string
}

func (h hostRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == h.host {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.URL.Path = h.target.Scheme, h.target.Host, h.prefix+r.URL.Path
		r.Host = ""
	}
	return http.DefaultTransport.RoundTrip(r)
}

// handlerTransport serves requests with a handler, in memory, without the
// network: in a synctest bubble, synctest.Wait then waits for the requests
// too.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}
