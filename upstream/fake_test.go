package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"agora/internal/testutil"
)

// The module every fake upstream serves, in files by escaped path.
const (
	modPath = "example.com/Upper"
	modInfo = `{"Version":"v1.0.0","Time":"2026-01-02T03:04:05Z","Origin":{"VCS":"git","Hash":"0123"}}`
	modMod  = "module example.com/Upper\n"
	modZip  = "PK\x03\x04 not really a zip"
)

var modFiles = map[string]string{
	"example.com/!upper/@v/list":        "v1.1.0-pre\nv1.0.0 2026-01-02T03:04:05Z\nnot-a-version\nv1.0.0\nv1.0\nv0.0.0-20260102030405-0123456789ab\n\n",
	"example.com/!upper/@v/v1.0.0.info": modInfo,
	"example.com/!upper/@v/master.info": modInfo,
	"example.com/!upper/@latest":        modInfo,
	"example.com/!upper/@v/v1.0.0.mod":  modMod,
	"example.com/!upper/@v/v1.0.0.zip":  modZip,
}

// fakeProxy is an httptest GOPROXY that records its requests and counts
// its connections.
type fakeProxy struct {
	*httptest.Server
	conns    atomic.Int64
	mu       sync.Mutex
	requests []*http.Request
}

// newFakeProxy starts a fake GOPROXY answering with h, stopped at the end
// of the test.
func newFakeProxy(t *testing.T, h http.HandlerFunc) *fakeProxy {
	f := newUnstartedFakeProxy(h)
	f.Start()
	t.Cleanup(f.Close)
	return f
}

// newFakeTLSProxy is newFakeProxy over HTTPS. Its Client's transport
// trusts it, and every other fake over HTTPS.
func newFakeTLSProxy(t *testing.T, h http.HandlerFunc) *fakeProxy {
	f := newUnstartedFakeProxy(h)
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

// newUnstartedFakeProxy returns a fake GOPROXY answering with h, not yet
// started.
func newUnstartedFakeProxy(h http.HandlerFunc) *fakeProxy {
	f := &fakeProxy{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r)
		f.mu.Unlock()
		h(w, r)
	}))
	f.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			f.conns.Add(1)
		}
	}
	return f
}

// connections returns how many connections the fake accepted.
func (f *fakeProxy) connections() int64 { return f.conns.Load() }

// count returns how many requests the fake answered.
func (f *fakeProxy) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// uris returns the request URIs the fake received, as sent on the wire.
func (f *fakeProxy) uris() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var uris []string
	for _, r := range f.requests {
		uris = append(uris, r.RequestURI)
	}
	return uris
}

// userAgent returns the User-Agent of the fake's first request.
func (f *fakeProxy) userAgent() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[0].Header.Get("User-Agent")
}

// serveFiles answers GOPROXY requests from files, by escaped path, and
// everything else with 404 and a plain-text reason, as proxy.golang.org
// does.
func serveFiles(files map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.Error(w, "not found: "+r.URL.Path+": unknown revision", http.StatusNotFound)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".info") || strings.HasSuffix(r.URL.Path, "@latest") {
			w.Header().Set("Content-Type", "application/json")
		}
		io.WriteString(w, data)
	}
}

// serveStatus answers everything with status and a plain-text reason.
func serveStatus(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fake: "+http.StatusText(status), status)
	}
}

// hang never answers: it returns when the client gives up, or when the
// test ends.
func hang(t *testing.T) http.HandlerFunc {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // before the server's Close, which waits
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}
}

// stallError answers with status and the start of a plain-text reason,
// then fires the error body's timeout of ft and hangs.
func stallError(t *testing.T, status int, ft *firedTimeouts) http.HandlerFunc {
	h := hangAfterTimeout(t, ft)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, "fake: the reason is")
		w.(http.Flusher).Flush()
		h(w, r)
	}
}

// refusedURL returns the URL of a port that refuses connections.
func refusedURL(t *testing.T) string { return testutil.RefusedURL(t) }

// testOptions are options for tests: quick retries and timeouts.
func testOptions() Options {
	return Options{
		Backoff:        time.Millisecond,
		ConnectTimeout: time.Second,
		HeaderTimeout:  time.Second,
		BodyTimeout:    2 * time.Second,
	}
}

// newTestClient returns a client of the proxy list, with testOptions
// changed by edit.
func newTestClient(t *testing.T, list string, edit func(*Options)) *Client {
	t.Helper()
	proxies, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	if edit != nil {
		edit(&opts)
	}
	c := New(proxies, opts)
	if tr, ok := c.opts.Transport.(*http.Transport); ok {
		t.Cleanup(tr.CloseIdleConnections)
	}
	return c
}

// observation is one call of an Observer.
type observation struct {
	proxy, kind string
	status      int
	bytes       int64
	err         error
}

// recorder is an Observer that records its calls.
type recorder struct {
	mu     sync.Mutex
	obs    []observation
	health []string // see ProxyDown
}

func (r *recorder) Fetch(proxy, kind string, status int, bytes int64, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{proxy, kind, status, bytes, err})
}

// ProxyDown records a change of a proxy's health, as "down proxy" or
// "up proxy".
func (r *recorder) ProxyDown(proxy string, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := "up "
	if down {
		state = "down "
	}
	r.health = append(r.health, state+proxy)
}

func (r *recorder) healthChanges() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.health)
}

func (r *recorder) all() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observation(nil), r.obs...)
}

// fetchAll runs every method of c for the fake module and returns the
// first error.
func fetchAll(ctx context.Context, c *Client) error {
	if _, _, err := c.Info(ctx, modPath, "v1.0.0"); err != nil {
		return err
	}
	if _, _, err := c.Latest(ctx, modPath); err != nil {
		return err
	}
	if _, _, err := c.List(ctx, modPath); err != nil {
		return err
	}
	if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil {
		return err
	}
	zip, _, err := c.Zip(ctx, modPath, "v1.0.0")
	if err != nil {
		return err
	}
	defer zip.Close()
	_, err = io.ReadAll(zip)
	return err
}

// firedTimeouts makes a Client's header timeouts of one kind (whatNoHeaders
// or whatNoErrorBody) fire when a fake proxy says so, not after a
// duration, so that a test under load neither waits for them nor races
// them; the Client's other timeouts are a minute long.
type firedTimeouts struct {
	what string
	fire chan struct{}
}

func newFiredTimeouts(what string) *firedTimeouts {
	return &firedTimeouts{what: what, fire: make(chan struct{})}
}

// set is an edit of Options for newTestClient.
func (ft *firedTimeouts) set(o *Options) {
	o.HeaderTimeout = time.Minute
	o.startHeaderTimer = func(what string, f func()) stopper {
		if what != ft.what {
			return time.AfterFunc(time.Minute, f)
		}
		t := &firedTimer{stop: make(chan struct{})}
		go func() {
			select {
			case <-ft.fire:
				if t.end(timerFired) {
					f()
				}
			case <-t.stop:
			}
		}()
		return t
	}
}

// expire fires one timeout that is running, for the request r of a fake
// proxy: it returns once it did, or once r is given up.
func (ft *firedTimeouts) expire(r *http.Request) {
	select {
	case ft.fire <- struct{}{}:
	case <-r.Context().Done():
	}
}

// firedTimer is a timer of firedTimeouts.
type firedTimer struct {
	mu    sync.Mutex
	state int // timerRunning, timerFired or timerStopped
	stop  chan struct{}
}

const (
	timerRunning = iota
	timerFired
	timerStopped
)

// end moves a running timer to state and reports whether it was running.
func (t *firedTimer) end(state int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != timerRunning {
		return false
	}
	t.state = state
	return true
}

// Stop stops the timer, as time.Timer's: false if it had fired or stopped.
func (t *firedTimer) Stop() bool {
	if !t.end(timerStopped) {
		return false
	}
	close(t.stop)
	return true
}

// hangAfterTimeout is hang, after firing a header timeout of ft.
func hangAfterTimeout(t *testing.T, ft *firedTimeouts) http.HandlerFunc {
	h := hang(t)
	return func(w http.ResponseWriter, r *http.Request) {
		ft.expire(r)
		h(w, r)
	}
}
