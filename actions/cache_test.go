package actions_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/metrics"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/upstream"
)

// fakeGOPROXY is an httptest upstream proxy serving modules from memory,
// counting requests by URL path. A handler set in fail answers instead.
type fakeGOPROXY struct {
	*httptest.Server
	mu       sync.Mutex
	modules  map[string]*testModule // escaped path@v/escaped version
	lists    map[string][]string    // escaped path → versions
	requests map[string]int
	total    atomic.Int32
	fail     http.HandlerFunc
	gate     chan struct{} // when set, zip bodies wait for it to close
}

func newFakeGOPROXY(t *testing.T, mods ...*testModule) *fakeGOPROXY {
	t.Helper()
	f := &fakeGOPROXY{modules: map[string]*testModule{}, lists: map[string][]string{}, requests: map[string]int{}}
	for _, m := range mods {
		f.add(m)
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// newGatedGOPROXY returns a fake upstream whose zip bodies wait until
// release is called; it is called when the test ends too, so that a test
// that fails early does not leave the upstream waiting.
func newGatedGOPROXY(t *testing.T, mods ...*testModule) (*fakeGOPROXY, func()) {
	f := newFakeGOPROXY(t, mods...)
	f.gate = make(chan struct{})
	release := sync.OnceFunc(func() { close(f.gate) })
	t.Cleanup(release)
	return f, release
}

func (f *fakeGOPROXY) add(m *testModule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := escapePath(m.Path)
	f.modules[p+"/@v/"+escapeVersion(m.Version)] = m
	f.lists[p] = append(f.lists[p], m.Version)
}

// alias makes query (a branch, a commit) name m's version, as the .info
// of query; it may be called again to move the query to another version.
func (f *fakeGOPROXY) alias(query string, m *testModule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modules[escapePath(m.Path)+"/@v/"+escapeVersion(query)] = m
}

func (f *fakeGOPROXY) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[path]
}

func (f *fakeGOPROXY) serve(w http.ResponseWriter, r *http.Request) {
	f.total.Add(1)
	f.mu.Lock()
	f.requests[r.URL.Path]++
	fail, gate := f.fail, f.gate
	f.mu.Unlock()
	if fail != nil {
		fail(w, r)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	if mod, ok := strings.CutSuffix(p, "/@v/list"); ok {
		f.mu.Lock()
		list, ok := f.lists[mod]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "not found: unknown module", http.StatusNotFound)
			return
		}
		io.WriteString(w, strings.Join(list, "\n")+"\n")
		return
	}
	for _, ext := range []string{".info", ".mod", ".zip"} {
		key, ok := strings.CutSuffix(p, ext)
		if !ok {
			continue
		}
		f.mu.Lock()
		m := f.modules[key]
		f.mu.Unlock()
		if m == nil {
			http.Error(w, "not found: unknown revision", http.StatusNotFound)
			return
		}
		switch ext {
		case ".info":
			if m.Info != "" {
				io.WriteString(w, m.Info)
				break
			}
			fmt.Fprintf(w, `{"Version":%q,"Time":"2026-01-02T03:04:05Z"}`, m.Version)
		case ".mod":
			io.WriteString(w, m.GoMod)
		case ".zip":
			if gate != nil {
				// The headers go out at once and only the body waits,
				// for as long as the test holds it: the upstream
				// client's header timeout (withUpstream's second) is
				// no bound on how long a loaded machine takes to get
				// the test's requests under way.
				w.Header().Set("Content-Length", strconv.Itoa(len(m.Zip)))
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-gate
			}
			w.Write(m.Zip)
		}
		return
	}
	http.Error(w, "not found", http.StatusNotFound)
}

// withUpstream makes the server a pull-through cache of the proxy list
// (GOPROXY syntax), with rules, and counts in m.
func withUpstream(list string, rules string, m *metrics.Metrics) serverOption {
	return func(s *serverSetup) {
		proxies, err := upstream.ParseList(list)
		if err != nil {
			panic(err)
		}
		rs, err := upstream.ParseRules(strings.NewReader(rules), "rules")
		if err != nil {
			panic(err)
		}
		router := upstream.NewRouter(proxies, rs, upstream.Options{
			Backoff: time.Millisecond, HeaderTimeout: time.Second, Observer: m,
		})
		s.registry.Upstream = func(path string) modproxy.Upstream {
			if c := router.For(path); c != nil {
				return c
			}
			return nil
		}
		s.registry.Observer = m
		s.deps.Metrics = m
		s.cfg.Rules = rs
	}
}

func TestCacheFetchesOnceAndServesWithUpstreamGone(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/Dep", "v1.2.0", "dep")
		up := newFakeGOPROXY(t, dep)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))

		// go list -m all traffic: .info and .mod, no zip.
		for _, ext := range []string{".info", ".mod"} {
			wantStatus(t, s.get(t, protoPath(dep.Path, dep.Version)+ext), http.StatusOK)
		}
		if got := s.storageTree(t); slices.ContainsFunc(got, func(f string) bool { return strings.HasSuffix(f, ".zip") }) {
			t.Errorf("storage after .info and .mod requests = %q; want no zip", got)
		}
		zip := s.get(t, protoPath(dep.Path, dep.Version)+".zip")
		wantStatus(t, zip, http.StatusOK)
		if !bytes.Equal(zip.body, dep.Zip) {
			t.Fatal("the zip served differs from the upstream's")
		}
		wantStatus(t, s.get(t, "/"+escapePath(dep.Path)+"/@v/list"), http.StatusOK)
		before := up.total.Load()

		up.Close() // the upstream is gone: everything is served from storage
		for _, ext := range []string{".info", ".mod", ".zip"} {
			r := s.get(t, protoPath(dep.Path, dep.Version)+ext)
			wantStatus(t, r, http.StatusOK)
			if ext == ".mod" && string(r.body) != dep.GoMod {
				t.Errorf(".mod = %q; want %q", r.body, dep.GoMod)
			}
			if ext == ".zip" && r.header.Get("ETag") != `W/"`+dep.ZipHash+`"` {
				t.Errorf("zip ETag = %s; want the zip's hash", r.header.Get("ETag"))
			}
		}
		if r := s.get(t, "/"+escapePath(dep.Path)+"/@v/list"); r.status != http.StatusOK || string(r.body) != "v1.2.0\n" {
			t.Errorf("list with the upstream gone = %s; want the stored version", r)
		}
		if r := s.get(t, "/"+escapePath(dep.Path)+"/@latest"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"v1.2.0"`) {
			t.Errorf("@latest with the upstream gone = %s; want the stored version", r)
		}
		if n := up.total.Load(); n != before {
			t.Errorf("%d upstream requests after everything was stored; want none", n-before)
		}
		zipPath := protoPath(dep.Path, dep.Version) + ".zip"
		if n := up.count(zipPath); n != 1 {
			t.Errorf("upstream zip requests = %d; want 1", n)
		}
	})
}

// TestCacheUpstreamStatuses checks the answer to a .mod that the upstream
// fails to give: its not found is one here, and its failures a bad gateway
// for a version recorded here (whose .info was served), but not found for
// one without a record, as a lookup of it is while the upstream fails. The
// go command goes down its GOPROXY list for each file anew: it may have
// taken the version from its next proxy after a 404 here for the .info.
func TestCacheUpstreamStatuses(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		tests := []struct {
			name   string
			fail   http.HandlerFunc
			status int // for a version recorded here
		}{
			{"403 is not found", statusHandler(http.StatusForbidden), http.StatusNotFound},
			{"404 is not found", statusHandler(http.StatusNotFound), http.StatusNotFound},
			{"410 is not found", statusHandler(http.StatusGone), http.StatusNotFound},
			{"500 is a bad gateway", statusHandler(http.StatusInternalServerError), http.StatusBadGateway},
			{"a timeout is a bad gateway", func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(5 * time.Second):
				case <-r.Context().Done():
				}
			}, http.StatusBadGateway},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// One module per case: the servers share the database.
				m := newModule(t, fmt.Sprintf("example.com/m%d", i), "v1.0.0", "m")
				up := newFakeGOPROXY(t, m)
				s := newServer(t, conn, withUpstream(up.URL, "", nil))
				if r := s.get(t, protoPath(m.Path, m.Version)+".info"); r.status != http.StatusOK {
					t.Fatalf(".info = %s; want it recorded", r)
				}
				up.mu.Lock()
				up.fail = tt.fail
				up.mu.Unlock()
				for _, v := range []struct {
					version string
					status  int
				}{
					{m.Version, tt.status},
					{"v1.1.0", http.StatusNotFound}, // no record
				} {
					r := s.get(t, protoPath(m.Path, v.version)+".mod")
					wantProtocolError(t, r, v.status)
					want := m.Path + "@" + v.version
					if n := strings.Count(string(r.body), want); n != 1 {
						t.Errorf("the answer names %s %d times; want once:\n%s", want, n, r.body)
					}
				}
				if got := s.storageTree(t); len(got) != 1 {
					t.Errorf("stored %q after failed fetches; want the .info alone", got)
				}
			})
		}
	})
}

// protoPath is the download-protocol path of path@version, without the
// file extension.
func protoPath(path, version string) string {
	return "/" + escapePath(path) + "/@v/" + escapeVersion(version)
}

// TestCacheZipCutOff checks the answer to a zip that the upstream starts
// to send and then fails to finish (its connection lost, or too slow for
// the body timeout), as to a zip it fails to send at all (see
// TestCacheUpstreamStatuses): a bad gateway for a version recorded here,
// not found for one without a record, which the go command may have taken
// from its next proxy. A failure to read the zip was a bad gateway
// whatever the version, so that 'GOPROXY=agora,direct' stopped at it.
func TestCacheZipCutOff(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		for i, recorded := range []bool{false, true} {
			m := newModule(t, fmt.Sprintf("example.com/cut%d", i), "v1.0.0", "m")
			up := newFakeGOPROXY(t, m)
			// The zip's headers, and half its body.
			cutOff := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, ".zip") {
					up.Config.Handler.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(m.Zip)))
				w.WriteHeader(http.StatusOK)
				w.Write(m.Zip[:len(m.Zip)/2])
				w.(http.Flusher).Flush()
				if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
					c.Close()
				}
			}))
			t.Cleanup(cutOff.Close)
			s := newServer(t, conn, withUpstream(cutOff.URL, "", nil))
			status := http.StatusNotFound
			if recorded {
				wantStatus(t, s.get(t, protoPath(m.Path, m.Version)+".info"), http.StatusOK)
				status = http.StatusBadGateway
			}
			r := s.get(t, protoPath(m.Path, m.Version)+".zip")
			wantProtocolError(t, r, status)
			if !strings.Contains(string(r.body), "unexpected EOF") {
				t.Errorf("recorded %v: the answer does not say what failed:\n%s", recorded, r.body)
			}
		}
	})
}

func statusHandler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "fake upstream says no", status) }
}

func TestCacheFallThrough(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		good := newFakeGOPROXY(t)
		broken := newFakeGOPROXY(t)
		broken.fail = statusHandler(http.StatusInternalServerError)
		missing := newFakeGOPROXY(t)

		for i, tt := range []struct {
			list string
			ok   bool // good was asked, and answered
		}{
			{missing.URL + "," + good.URL, true},
			{broken.URL + "," + good.URL, false},
			{broken.URL + "|" + good.URL, true},
		} {
			// One module per case: the servers share the database.
			m := newModule(t, fmt.Sprintf("example.com/m%d", i), "v1.0.0", "m")
			good.add(m)
			s := newServer(t, conn, withUpstream(tt.list, "", nil))
			file := protoPath(m.Path, m.Version) + ".mod"
			r := s.get(t, file)
			if ok := r.status == http.StatusOK; ok != tt.ok {
				t.Errorf("AGORA_UPSTREAM=%s: .mod = %s; want it served: %v", tt.list, r, tt.ok)
			}
			if asked := good.count(file) > 0; asked != tt.ok {
				t.Errorf("AGORA_UPSTREAM=%s: the second proxy was asked: %v; want %v", tt.list, asked, tt.ok)
			}
		}
	})
}

func TestCacheConcurrentMissesOneFetch(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		m := newModule(t, "example.com/big", "v1.0.0", "big")
		up, release := newGatedGOPROXY(t, m)
		reg := metrics.New()
		s := newServer(t, conn, withUpstream(up.URL, "", reg))
		zipPath := protoPath(m.Path, m.Version) + ".zip"

		const n = 50
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r, err := s.send(http.MethodGet, zipPath, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if r.status != http.StatusOK || !bytes.Equal(r.body, m.Zip) {
					t.Errorf("concurrent zip request: %d, %d bytes", r.status, len(r.body))
				}
			})
		}
		// The upstream holds the zip until every request is being served
		// (agora_http_requests_in_flight), not for a while that a loaded
		// machine may not make enough.
		deadline := time.Now().Add(10 * time.Second)
		for up.count(zipPath) == 0 || requestsInFlight(t, reg) < n {
			if time.Now().After(deadline) {
				t.Fatalf("after 10s, %d upstream zip requests and %d requests in flight; want 1 and %d", up.count(zipPath), requestsInFlight(t, reg), n)
			}
			time.Sleep(time.Millisecond)
		}
		release()
		wg.Wait()
		if got := up.count(zipPath); got != 1 {
			t.Errorf("%d concurrent misses made %d upstream zip requests; want 1", n, got)
		}
	})
}

// requestsInFlight returns the requests that m counts as being served:
// agora_http_requests_in_flight, read from m's handler, not through the
// server, where reading it would be one more.
func requestsInFlight(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(line, "agora_http_requests_in_flight "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("agora_http_requests_in_flight %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("/metrics lacks agora_http_requests_in_flight")
	return 0
}

// TestCacheClientGone checks that a client that goes away during a fetch is
// logged and counted as nginx does (499), not as a failure of the server,
// and that the fetch goes on for the next client.
func TestCacheClientGone(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		m := newModule(t, "example.com/big", "v1.0.0", "big")
		up, release := newGatedGOPROXY(t, m)
		var log lockedBuffer
		s := newServer(t, conn, withUpstream(up.URL, "", nil), logTo(&log))
		zipPath := protoPath(m.Path, m.Version) + ".zip"

		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+zipPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			resp, err := s.client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		for up.count(zipPath) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("the cancelled request: %v; want context.Canceled", err)
		}
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), "status=499"); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no request line with status 499 in the log:\n%s", log.String())
			}
		}
		if strings.Contains(log.String(), "level=ERROR") {
			t.Errorf("a client that went away was logged as an error:\n%s", log.String())
		}

		release()
		if r := s.get(t, zipPath); r.status != http.StatusOK || !bytes.Equal(r.body, m.Zip) {
			t.Errorf("zip after the first client went away: %d, %d bytes", r.status, len(r.body))
		}
		if n := up.count(zipPath); n != 1 {
			t.Errorf("%d upstream zip requests; want 1", n)
		}
	})
}

func TestCacheRoutingRules(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		pub := newModule(t, "example.com/pub", "v1.0.0", "pub")
		acme := newModule(t, "github.com/acme/tool", "v1.0.0", "acme")
		def := newFakeGOPROXY(t, pub, acme)
		other := newFakeGOPROXY(t, acme)
		rules := "corp.example.com  none\ngithub.com/acme  " + other.URL + "\n"
		s := newServer(t, conn, withUpstream(def.URL, rules, nil))

		// A private path is never fetched: 404 unless stored.
		wantProtocolError(t, s.get(t, "/corp.example.com/secret/@v/v1.0.0.mod"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/corp.example.com/secret/@v/list"), http.StatusNotFound)
		if n := def.count("/corp.example.com/secret/@v/v1.0.0.mod") + other.count("/corp.example.com/secret/@v/v1.0.0.mod"); n != 0 {
			t.Errorf("a private path reached an upstream %d times", n)
		}
		// Uploaded, it is served.
		priv := newModule(t, "corp.example.com/secret", "v1.0.0", "secret")
		s.mustPublish(t, s.root, priv)
		wantStatus(t, s.get(t, protoPath(priv.Path, priv.Version)+".mod"), http.StatusOK)
		if r := s.get(t, "/corp.example.com/secret/@v/list"); string(r.body) != "v1.0.0\n" {
			t.Errorf("private list = %s", r)
		}

		// github.com/acme/... comes from the other upstream.
		wantStatus(t, s.get(t, protoPath(acme.Path, acme.Version)+".mod"), http.StatusOK)
		if d, o := def.count(protoPath(acme.Path, acme.Version)+".mod"), other.count(protoPath(acme.Path, acme.Version)+".mod"); d != 0 || o != 1 {
			t.Errorf("acme .mod requests: default %d, other %d; want 0 and 1", d, o)
		}
		wantStatus(t, s.get(t, protoPath(pub.Path, pub.Version)+".mod"), http.StatusOK)
	})
}

// TestCachePublishUnderPublicModuleRefused checks that once a module's
// versions are fetched from the upstream, nobody can publish under its
// path: the upload would become the public module's @latest.
func TestCachePublishUnderPublicModuleRefused(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		text := newModule(t, "golang.org/x/text", "v0.3.0", "text")
		up := newFakeGOPROXY(t, text)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		wantStatus(t, s.get(t, protoPath(text.Path, text.Version)+".mod"), http.StatusOK)

		bogus := newModule(t, text.Path, "v0.99.0", "not golang.org/x/text")
		for _, token := range []string{s.token(t, "bob", auth.RolePublisher), s.root} {
			e := wantError(t, s.publish(t, token, bogus), http.StatusConflict, "conflict")
			if !strings.Contains(e.Error, "public module") || !strings.Contains(e.Error, "path of its own") {
				t.Errorf("error %q; want it to say that the path is a public module's, and that a private module needs a path of its own", e.Error)
			}
		}
		if r := s.get(t, "/"+escapePath(text.Path)+"/@latest"); !strings.Contains(string(r.body), `"v0.3.0"`) {
			t.Errorf("@latest after a refused publish = %s; want v0.3.0", r)
		}
	})
}

// TestCacheTimelessInfo checks the answers for the .info of a version
// stored without one while the upstream cannot give it (here it no longer
// knows the version; modproxy's TestTimelessInfo has it down too): an .info
// without a time that no client may keep as the version's own, nor match
// later with an ETag; once the upstream answers, its .info is served for
// good.
func TestCacheTimelessInfo(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.2.0", "dep")
		up := newFakeGOPROXY(t, dep)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		info := protoPath(dep.Path, dep.Version) + ".info"
		wantStatus(t, s.get(t, protoPath(dep.Path, dep.Version)+".mod"), http.StatusOK)

		up.mu.Lock()
		up.fail = statusHandler(http.StatusNotFound)
		up.mu.Unlock()
		for _, r := range []*response{s.get(t, info), s.get(t, info, withHeader("If-None-Match", `"info-`+dep.ZipHash+`"`))} {
			wantStatus(t, r, http.StatusOK)
			if got, want := string(r.body), `{"Version":"v1.2.0"}`; got != want {
				t.Errorf(".info with the upstream not knowing it = %s; want %s", got, want)
			}
			if r.header.Get("Cache-Control") != "no-cache" || r.header.Get("ETag") != "" || r.header.Get("Last-Modified") != "" {
				t.Errorf(".info with the upstream not knowing it has headers %v; want no-cache, no ETag, no Last-Modified", r.header)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf(".info Content-Type = %q", ct)
			}
		}
		if r := s.get(t, "/example.com/dep/@latest"); r.status != http.StatusOK || string(r.body) != `{"Version":"v1.2.0"}`+"\n" {
			t.Errorf("@latest with the upstream not knowing it = %s; want the version without a time", r)
		}

		up.mu.Lock()
		up.fail = nil
		up.mu.Unlock()
		r := s.get(t, info)
		wantStatus(t, r, http.StatusOK)
		if got := decodeInfo(t, r); got.Version != dep.Version || got.Time.IsZero() {
			t.Errorf(".info with the upstream back = %+v; want the upstream's time", got)
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf(".info with the upstream back: Cache-Control = %q; want immutable", cc)
		}
	})
}

// lose removes the file that a download path names from storage, as a disk
// fault or an older backup would, and has the registry forget what it holds
// in memory, as a restart would.
func (s *server) lose(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(filepath.Join(s.disk.Root(), filepath.FromSlash(path))); err != nil {
		t.Fatal(err)
	}
	s.registry.InvalidateAll()
}

// TestCacheRestoredInfoValidators checks the validators of a fetched .info
// that storage lost: the upstream served it with an Origin field, which
// the version's record does not keep. Its ETag is a strong validator (RFC
// 9110 section 8.8.1), which a client or a shared cache sends again to
// revalidate what it keeps. Put back from the upstream, the .info has the
// same bytes and ETag, and what they keep is current; put back from the
// record, with the upstream down, it has other bytes, and must have
// another ETag, or they would keep the old .info, told it is current.
func TestCacheRestoredInfoValidators(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.2.0", "dep")
		dep.Info = `{"Version":"v1.2.0","Time":"2026-01-02T03:04:05Z","Origin":{"VCS":"git","URL":"https://example.com/dep","Hash":"0123456789abcdef0123456789abcdef01234567","Ref":"refs/tags/v1.2.0"}}`
		up := newFakeGOPROXY(t, dep)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		info := protoPath(dep.Path, dep.Version) + ".info"
		first := s.get(t, info)
		wantStatus(t, first, http.StatusOK)
		if string(first.body) != dep.Info {
			t.Fatalf(".info = %s; want the upstream's, Origin and all", first.body)
		}
		etag := first.header.Get("ETag")
		s.lose(t, info)
		wantStatus(t, s.get(t, info, withHeader("If-None-Match", etag)), http.StatusNotModified)
		if r := s.get(t, info); !bytes.Equal(r.body, first.body) || r.header.Get("ETag") != etag {
			t.Errorf(".info put back from the upstream = %s with the ETag %q; want %s with %q", r.body, r.header.Get("ETag"), first.body, etag)
		}

		up.Close()
		s.lose(t, info)
		// The first request puts the .info back; the others find it.
		restored := s.get(t, info, withHeader("If-None-Match", etag))
		wantStatus(t, restored, http.StatusOK)
		if got := decodeInfo(t, restored); got.Version != dep.Version || got.Time.IsZero() {
			t.Fatalf("restored .info = %s; want the version with its time", restored.body)
		}
		if bytes.Equal(restored.body, first.body) {
			t.Fatalf("restored .info = %s, as first served; want it made from the record, without the Origin", restored.body)
		}
		newTag := restored.header.Get("ETag")
		if newTag == "" || newTag == etag {
			t.Errorf("restored .info with other bytes has the ETag %q; first served with %q", newTag, etag)
		}
		for _, r := range []*response{
			s.get(t, info),
			s.get(t, info, withHeader("If-None-Match", etag)),
			s.do(t, http.MethodHead, info, nil),
		} {
			wantStatus(t, r, http.StatusOK)
			if r.header.Get("ETag") != newTag {
				t.Errorf("restored .info served with the ETag %q, then %q", newTag, r.header.Get("ETag"))
			}
		}
		again := s.get(t, info, withHeader("If-None-Match", newTag))
		wantStatus(t, again, http.StatusNotModified)
	})
}

// TestCacheRestoredZipValidators checks the validators of a fetched zip
// that storage lost, put back from an upstream that now serves the same
// files zipped otherwise: the go.sum hash, which the record pins and the
// ETag quotes, is the same, the bytes are not. The ETag is weak, so a
// cache that revalidates its copy with If-None-Match is told it is
// current (the same files), but a client that has the start of the first
// archive and asks for the rest of it If-Range gets the whole of the
// second, not the end of one after the start of the other.
func TestCacheRestoredZipValidators(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.2.0", "dep")
		up := newFakeGOPROXY(t, dep)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		zipPath := protoPath(dep.Path, dep.Version) + ".zip"
		first := s.get(t, zipPath)
		wantStatus(t, first, http.StatusOK)
		etag := first.header.Get("ETag")

		rezipped := *dep
		rezipped.Zip = storedZip(t, dep.Zip)
		if bytes.Equal(rezipped.Zip, dep.Zip) || hashZip(t, rezipped.Zip) != dep.ZipHash {
			t.Fatal("the zip stored uncompressed has the same bytes, or other files")
		}
		up.alias(dep.Version, &rezipped) // the version's files now come so
		s.lose(t, zipPath)

		// The first request puts the zip back; the others find it.
		wantStatus(t, s.get(t, zipPath, withHeader("If-None-Match", etag)), http.StatusNotModified)
		resumed := s.get(t, zipPath, withHeader("Range", fmt.Sprintf("bytes=%d-", len(first.body)/2)), withHeader("If-Range", etag))
		wantStatus(t, resumed, http.StatusOK)
		if !bytes.Equal(resumed.body, rezipped.Zip) {
			t.Errorf("rest of the zip if %s: %d bytes; want the whole of the zip now stored, %d", etag, len(resumed.body), len(rezipped.Zip))
		}
		if got := resumed.header.Get("ETag"); got != etag {
			t.Errorf("restored zip served with the ETag %q; first with %q", got, etag)
		}
	})
}

// storedZip returns a zip of the same files as b, in the same order, stored
// uncompressed.
func storedZip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCacheLargeInfoValidators checks an .info too large to be held in
// memory, whose bytes no digest was taken of: served without an ETag,
// alike whether the request has conditions or not, rather than with one
// that its bytes do not back.
func TestCacheLargeInfoValidators(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.2.0", "dep")
		dep.Info = `{"Version":"v1.2.0","Time":"2026-01-02T03:04:05Z","Origin":{"VCS":"git","URL":"https://example.com/` + strings.Repeat("x", 20<<10) + `"}}`
		up := newFakeGOPROXY(t, dep)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		info := protoPath(dep.Path, dep.Version) + ".info"
		wantStatus(t, s.get(t, info), http.StatusOK) // fetched
		plain, head := s.get(t, info), s.do(t, http.MethodHead, info, nil)
		viaServeContent := s.get(t, info, withHeader("If-None-Match", `"other"`))
		for _, r := range []*response{plain, head, viaServeContent} {
			wantStatus(t, r, http.StatusOK)
			r.header.Del("Date")
			if r.header.Get("ETag") != "" || r.header.Get("Last-Modified") == "" {
				t.Errorf("large .info with headers %v; want no ETag, a Last-Modified", r.header)
			}
		}
		if string(plain.body) != dep.Info || !bytes.Equal(viaServeContent.body, plain.body) {
			t.Errorf("large .info served as %d and %d bytes; want the upstream's %d", len(plain.body), len(viaServeContent.body), len(dep.Info))
		}
		if !reflect.DeepEqual(plain.header, viaServeContent.header) || !reflect.DeepEqual(plain.header, head.header) {
			t.Errorf("large .info headers: plain GET %v\nHEAD %v\nconditional %v; want the same", plain.header, head.header, viaServeContent.header)
		}
	})
}

// TestCacheQueryInfo checks the .info of a query (a branch name), which the
// upstream resolves to a version: the go command asks for it by the query's
// name, and the query moves, so no cache may keep the answer as it would a
// canonical version's, nor match it later by a validator, even while the
// versions it named were fetched without their zips.
func TestCacheQueryInfo(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		v1 := newModule(t, "example.com/dep", "v1.0.0", "one")
		v2 := newModule(t, "example.com/dep", "v1.1.0", "two")
		up := newFakeGOPROXY(t, v1, v2)
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		const query = "/example.com/dep/@v/master.info"

		up.alias("master", v1)
		first := s.get(t, query)
		wantStatus(t, first, http.StatusOK)
		if got := decodeInfo(t, first); got.Version != v1.Version {
			t.Fatalf("master.info = %+v; want %s", got, v1.Version)
		}
		if cc := first.header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("master.info: Cache-Control = %q; want no-cache", cc)
		}

		up.alias("master", v2)
		for _, validator := range []requestOption{
			withHeader("If-None-Match", first.header.Get("ETag")),
			withHeader("If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)),
		} {
			r := s.get(t, query, validator)
			wantStatus(t, r, http.StatusOK)
			if got := decodeInfo(t, r); got.Version != v2.Version {
				t.Errorf("master.info, moved = %+v; want %s", got, v2.Version)
			}
		}
		// The canonical version's own .info is immutable.
		r := s.get(t, protoPath(v2.Path, v2.Version)+".info")
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || r.header.Get("ETag") == "" {
			t.Errorf("%s.info: Cache-Control = %q, ETag %q; want immutable, with an ETag", v2.Version, cc, r.header.Get("ETag"))
		}
	})
}

// TestCacheShowPartialVersions checks what the API shows of versions
// fetched file by file: only the files stored, no time, size or zip hash
// that nothing stored gives, and only go.sum lines that have a hash.
func TestCacheShowPartialVersions(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		const path = "example.com/dep"
		mods := map[string]*testModule{}
		for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
			mods[v] = newModule(t, path, v, v)
		}
		up := newFakeGOPROXY(t, mods["v1.0.0"], mods["v1.1.0"], mods["v1.2.0"])
		s := newServer(t, conn, withUpstream(up.URL, "", nil))
		viewer := s.token(t, "vera", auth.RoleViewer)
		wantStatus(t, s.get(t, protoPath(path, "v1.0.0")+".mod"), http.StatusOK)
		wantStatus(t, s.get(t, protoPath(path, "v1.1.0")+".info"), http.StatusOK)
		for _, ext := range []string{".info", ".mod", ".zip"} {
			wantStatus(t, s.get(t, protoPath(path, "v1.2.0")+ext), http.StatusOK)
		}

		r := s.get(t, "/api/v1/modules/"+path, bearer(viewer))
		wantStatus(t, r, http.StatusOK)
		var raw struct{ Versions []map[string]any }
		decodeJSON(t, r, &raw)
		var mod moduleJSON
		decodeJSON(t, r, &mod)
		if len(mod.Versions) != 3 {
			t.Fatalf("versions %+v; want 3", mod.Versions)
		}
		for i, want := range []struct {
			version string
			files   []string
			absent  []string // keys of what no stored file gives
			gosum   []string
		}{
			{"v1.0.0", []string{"mod"}, []string{"time", "size", "zip_hash"},
				[]string{path + " v1.0.0/go.mod " + mods["v1.0.0"].ModHash}},
			{"v1.1.0", []string{"info"}, []string{"size", "zip_hash", "gomod_hash"}, []string{}},
			{"v1.2.0", []string{"info", "mod", "zip"}, nil,
				[]string{path + " v1.2.0 " + mods["v1.2.0"].ZipHash, path + " v1.2.0/go.mod " + mods["v1.2.0"].ModHash}},
		} {
			v := mod.Versions[i]
			if v.Version != want.version || !slices.Equal(v.Files, want.files) {
				t.Errorf("version %d: %s with files %q; want %s with %q", i, v.Version, v.Files, want.version, want.files)
			}
			if v.GoSum == nil || !slices.Equal(v.GoSum, want.gosum) {
				t.Errorf("%s: gosum %#v; want %q", v.Version, v.GoSum, want.gosum)
			}
			for _, key := range want.absent {
				if val, ok := raw.Versions[i][key]; ok {
					t.Errorf("%s: %q is %v; want it left out, as no stored file gives it", v.Version, key, val)
				}
			}
			if v.Source != up.URL || v.Status != "live" {
				t.Errorf("%s: source %q, status %q", v.Version, v.Source, v.Status)
			}
		}
	})
}

func TestCacheOffline(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		// AGORA_UPSTREAM=off: no upstream at all; only what is stored.
		s := newServer(t, conn)
		m := newModule(t, "example.com/m", "v1.0.0", "m")
		s.mustPublish(t, s.root, m)
		wantStatus(t, s.get(t, protoPath(m.Path, m.Version)+".zip"), http.StatusOK)
		if r := s.get(t, "/example.com/m/@latest"); r.status != http.StatusOK || !strings.Contains(string(r.body), "v1.0.0") {
			t.Errorf("@latest offline = %s", r)
		}
		wantProtocolError(t, s.get(t, "/example.com/other/@v/v1.0.0.info"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/other/@v/list"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/m/@v/master.info"), http.StatusNotFound)
	})
}

func TestCacheMetrics(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.0.0", "dep")
		up := newFakeGOPROXY(t, dep)
		m := metrics.New()
		s := newServer(t, conn, withUpstream(up.URL, "", m))
		for range 2 {
			wantStatus(t, s.get(t, protoPath(dep.Path, dep.Version)+".mod"), http.StatusOK)
		}
		// A zip that storage loses is fetched again, and counted: a
		// miss, as the first.
		zipPath := protoPath(dep.Path, dep.Version) + ".zip"
		wantStatus(t, s.get(t, zipPath), http.StatusOK)
		if err := os.Remove(filepath.Join(s.disk.Root(), filepath.FromSlash(zipPath))); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, s.get(t, zipPath), http.StatusOK)
		r := s.get(t, "/metrics")
		wantStatus(t, r, http.StatusOK)
		for _, want := range []string{
			`agora_cache_requests_total{kind="mod",result="hit"} 1`,
			`agora_cache_requests_total{kind="mod",result="miss"} 1`,
			`agora_cache_requests_total{kind="zip",result="hit"} 0`,
			`agora_cache_requests_total{kind="zip",result="miss"} 2`,
			`agora_storage_restores_total{kind="zip",result="ok"} 1`,
			// The zip was fetched twice: first, and to restore it.
			fmt.Sprintf(`agora_upstream_fetches_total{kind="zip",result="ok",upstream=%q} 2`, up.URL),
			fmt.Sprintf(`agora_upstream_fetch_bytes_total{kind="zip"} %d`, 2*len(dep.Zip)),
			`agora_http_requests_total{`,
		} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}

// TestCacheMetricsLatest checks that @latest is counted as kind latest, once
// per request, and not as a list: a miss while the upstream is asked, a hit
// once the answer is kept with the module's list.
func TestCacheMetricsLatest(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.0.0", "dep")
		up := newFakeGOPROXY(t, dep)
		m := metrics.New()
		s := newServer(t, conn, withUpstream(up.URL, "", m))
		// The first asks the upstream, and so may the next, whose list
		// was dropped when the first stored the version; the last is
		// answered from memory.
		hits, misses := 0, 0
		for range 3 {
			before := up.total.Load()
			wantStatus(t, s.get(t, "/example.com/dep/@latest"), http.StatusOK)
			if up.total.Load() == before {
				hits++
			} else {
				misses++
			}
		}
		if hits == 0 {
			t.Fatal("every @latest asked the upstream")
		}
		wantMetrics(t, string(s.get(t, "/metrics").body),
			fmt.Sprintf(`agora_cache_requests_total{kind="latest",result="hit"} %d`, hits),
			fmt.Sprintf(`agora_cache_requests_total{kind="latest",result="miss"} %d`, misses),
			`agora_cache_requests_total{kind="list",result="hit"} 0`,
			`agora_cache_requests_total{kind="list",result="miss"} 0`,
			`agora_cache_requests_total{kind="info",result="hit"} 0`,
			`agora_cache_requests_total{kind="info",result="miss"} 0`)
	})
}

// TestCacheMetricsQuery checks that the .info of a query (a branch, a
// commit) counts as kind query, not as an .info: its answer is the
// upstream's, a miss every time, and would make the .info's hit ratio
// look worse than the storage's; nor is the version it names counted as
// an .info. Its request to the upstream is of kind query too.
func TestCacheMetricsQuery(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		dep := newModule(t, "example.com/dep", "v1.0.0", "dep")
		up := newFakeGOPROXY(t, dep)
		up.alias("master", dep)
		m := metrics.New()
		s := newServer(t, conn, withUpstream(up.URL, "", m))
		for range 2 {
			wantStatus(t, s.get(t, "/example.com/dep/@v/master.info"), http.StatusOK)
		}
		wantProtocolError(t, s.get(t, "/example.com/dep/@v/nosuchbranch.info"), http.StatusNotFound)
		wantStatus(t, s.get(t, protoPath(dep.Path, dep.Version)+".info"), http.StatusOK)
		wantMetrics(t, string(s.get(t, "/metrics").body),
			`agora_cache_requests_total{kind="query",result="hit"} 0`,
			`agora_cache_requests_total{kind="query",result="miss"} 3`,
			// Stored by the first query.
			`agora_cache_requests_total{kind="info",result="hit"} 1`,
			`agora_cache_requests_total{kind="info",result="miss"} 0`,
			fmt.Sprintf(`agora_upstream_fetches_total{kind="query",result="ok",upstream=%q} 2`, up.URL),
			fmt.Sprintf(`agora_upstream_fetches_total{kind="query",result="not_found",upstream=%q} 1`, up.URL),
			fmt.Sprintf(`agora_upstream_fetches_total{kind="info",result="ok",upstream=%q} 0`, up.URL))
	})
}

// wantMetrics checks that the /metrics body has each line of want, and
// shows the lines of the same metrics when it does not.
func wantMetrics(t *testing.T, body string, want ...string) {
	t.Helper()
	lines := make(map[string]bool)
	for line := range strings.Lines(body) {
		lines[strings.TrimSuffix(line, "\n")] = true
	}
	for _, w := range want {
		if lines[w] {
			continue
		}
		name, _, _ := strings.Cut(w, "{")
		var same strings.Builder
		for line := range strings.Lines(body) {
			if strings.HasPrefix(line, name) {
				same.WriteString(line)
			}
		}
		t.Errorf("/metrics lacks %s; it has:\n%s", w, same.String())
	}
}

// TestCacheMetricsNotStored checks that a file that is not stored, and
// that no upstream is asked for (there is none, AGORA_RULES routes its path
// to none, or the path is invalid), counts as a miss: the go command asks
// for the .info of every prefix of a package's path, and these 404s made
// an offline Agora's hit ratio look perfect.
func TestCacheMetricsNotStored(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		m := metrics.New()
		s := newServer(t, conn, func(s *serverSetup) { s.registry.Observer, s.deps.Metrics = m, m })
		pub := newModule(t, "example.com/m", "v1.0.0", "m")
		s.mustPublish(t, s.root, pub)
		wantStatus(t, s.get(t, protoPath(pub.Path, pub.Version)+".info"), http.StatusOK)
		wantStatus(t, s.get(t, protoPath(pub.Path, pub.Version)+".mod"), http.StatusOK)
		wantProtocolError(t, s.get(t, "/example.com/other/@v/v1.0.0.info"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/m/@v/v1.1.0.mod"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/m/@v/master.info"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/m/@v/v2.0.0.zip"), http.StatusNotFound)
		wantStatus(t, s.delete(t, s.root, "/api/v1/modules/example.com/m/@v/v1.0.0?reason=test"), http.StatusNoContent)
		wantProtocolError(t, s.get(t, protoPath(pub.Path, pub.Version)+".zip"), http.StatusGone)

		wantMetrics(t, string(s.get(t, "/metrics").body),
			`agora_cache_requests_total{kind="info",result="hit"} 1`,
			`agora_cache_requests_total{kind="info",result="miss"} 1`,
			`agora_cache_requests_total{kind="query",result="miss"} 1`,
			`agora_cache_requests_total{kind="mod",result="hit"} 1`,
			`agora_cache_requests_total{kind="mod",result="miss"} 1`,
			// A deleted version's tombstone is stored: it answers.
			`agora_cache_requests_total{kind="zip",result="hit"} 1`,
			`agora_cache_requests_total{kind="zip",result="miss"} 1`)
	})
}
