package actions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/actions"
	"agora/auth"
	"agora/config"
	"agora/metrics"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// TestAPIErrorsAreJSON checks that requests under /api/v1 that match no
// route are answered as every other API error is, {"error","code"} with a
// string code, whatever the client accepts, and not with the site's HTML
// error page or Buffalo's own JSON.
func TestAPIErrorsAreJSON(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, tc := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/api/v1/nope", http.StatusNotFound},
			{http.MethodPost, "/api/v1/modules/example.com/x", http.StatusMethodNotAllowed},
		} {
			for _, accept := range []string{"", "application/json"} {
				t.Run(tc.method+" "+tc.path+" accepting "+accept, func(t *testing.T) {
					opts := []requestOption{bearer(s.root)}
					if accept != "" {
						opts = append(opts, withHeader("Accept", accept))
					}
					r := s.do(t, tc.method, tc.path, nil, opts...)
					if r.status != tc.status {
						t.Errorf("status %d, want %d", r.status, tc.status)
					}
					if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
						t.Fatalf("Content-Type %q, want application/json; body %.60q", ct, r.body)
					}
					var e struct {
						Error any `json:"error"`
						Code  any `json:"code"`
					}
					if err := json.Unmarshal(r.body, &e); err != nil {
						t.Fatalf("body is not JSON: %v", err)
					}
					if msg, _ := e.Error.(string); msg == "" {
						t.Errorf("error = %#v, want a message", e.Error)
					}
					if code, _ := e.Code.(string); code == "" {
						t.Errorf("code = %#v, want a string code such as \"not_found\"", e.Code)
					}
				})
			}
		}
	})
}

// TestSiteErrorsArePlain checks that outside the API, a path with no route
// or a method a route does not take is answered in plain text, in
// development too (Agora's default GO_ENV), where Buffalo's own pages list
// every route of the server.
func TestSiteErrorsArePlain(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn, func(s *serverSetup) { s.cfg.Env = "development" })
		for _, tc := range []struct {
			method, path string
			status       int
			body         string
		}{
			{http.MethodGet, "/nope", http.StatusNotFound, "not found: GET /nope\n"},
			{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, "method not allowed: POST /healthz\n"},
		} {
			r := s.do(t, tc.method, tc.path, nil)
			if r.status != tc.status || string(r.body) != tc.body {
				t.Errorf("%s %s: %d %.200q; want %d %q", tc.method, tc.path, r.status, r.body, tc.status, tc.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("%s %s: Content-Type %q; want text/plain", tc.method, tc.path, ct)
			}
			if tc.status == http.StatusMethodNotAllowed && !strings.Contains(r.header.Get("Allow"), http.MethodGet) {
				t.Errorf("%s %s: Allow %q; want GET in it", tc.method, tc.path, r.header.Get("Allow"))
			}
		}
	})
}

// TestNoMethodOverride checks that a POST is never taken for another
// method (Buffalo's MethodOverride reads one from a _method field): a form
// on any web site could then make a browser that holds an API user's
// basic-auth credentials delete versions (a cross-site request forgery).
func TestNoMethodOverride(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		bob := s.token(t, "bob", auth.RolePublisher)
		m := newModule(t, "example.com/victim", "v1.0.0", "x")
		s.mustPublish(t, bob, m)
		target := "/api/v1/modules/example.com/victim/@v/v1.0.0"
		form := url.Values{"_method": {"DELETE"}, "reason": {"csrf"}}.Encode()

		for _, r := range []*response{
			s.do(t, http.MethodPost, target, strings.NewReader(form), basicAuth("bob", bob), withHeader("Content-Type", "application/x-www-form-urlencoded")),
			s.do(t, http.MethodPost, target+"?"+form, nil, basicAuth("bob", bob)),
		} {
			wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		}
		wantStatus(t, s.get(t, protoPath(m.Path, m.Version)+".zip"), http.StatusOK)
	})
}

// TestAPIMethodNotAllowedSaysAllow checks that a 405 from the API names
// the methods its path does take in an Allow header (RFC 9110 section
// 15.5.6), the uploads that Handler serves in front of Buffalo included.
func TestAPIMethodNotAllowedSaysAllow(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, tt := range []struct{ method, path, allow string }{
			{http.MethodPost, "/api/v1/whoami", "GET"},
			{http.MethodDelete, "/api/v1/audit", "GET"},
			{http.MethodPost, "/api/v1/modules/example.com/x/@v/v1.0.0.zip", "GET, PUT, DELETE"},
		} {
			r := s.do(t, tt.method, tt.path, nil, bearer(s.root))
			wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("%s %s: Allow %q; want %q", tt.method, tt.path, got, tt.allow)
			}
		}
	})
}

// TestRequestLog checks the line logged for each request: method, path,
// status, size and duration, and nothing of the query string or headers,
// where tokens travel.
func TestRequestLog(t *testing.T) {
	var buf bytes.Buffer
	h, m := handlerServing(t, slog.New(slog.NewTextHandler(&buf, nil)))
	for _, tc := range []struct {
		path   string
		status int
		bytes  int
	}{
		{"/" + m.Path + "/@v/" + m.Version + ".mod", http.StatusOK, len(m.GoMod)},
		{"/" + m.Path + "/@v/v9.9.9.mod", http.StatusNotFound, -1},
	} {
		buf.Reset()
		r := httptest.NewRequest(http.MethodGet, tc.path+"?token=secret-in-query", nil)
		r.Header.Set("Authorization", "Bearer secret-in-header")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Fatalf("GET %s: status %d, want %d", tc.path, w.Code, tc.status)
		}
		line := buf.String()
		size := `[1-9][0-9]*`
		if tc.bytes >= 0 {
			size = regexp.QuoteMeta(strconv.Itoa(tc.bytes))
		}
		want := `^time=\S+ level=INFO msg=request method=GET path=` + regexp.QuoteMeta(tc.path) +
			` status=` + strconv.Itoa(tc.status) + ` bytes=` + size + ` duration=[0-9.]+[µm]?s\n$`
		if !regexp.MustCompile(want).MatchString(line) {
			t.Errorf("GET %s logged\n%q\nwant it to match %q", tc.path, line, want)
		}
		if strings.Contains(line, "secret") {
			t.Errorf("GET %s logged a secret: %q", tc.path, line)
		}
	}
}

// TestStalledBody checks that a request to any route whose body stops
// coming is answered once bodyStall passes without a byte, and its
// connection closed, instead of being held for as long as the client keeps
// the connection open: net/http reads a small body that a handler left
// unread before it answers, and Buffalo parses a form body before any
// handler runs, neither with a deadline of its own. No token is needed.
func TestStalledBody(t *testing.T) {
	actions.SetBodyStall(t, 200*time.Millisecond)
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, tc := range []struct {
			name, request string
		}{
			{"unread", "GET /healthz HTTP/1.1\r\nHost: agora.test\r\nContent-Length: 10\r\n\r\nab"},
			{"form", "POST / HTTP/1.1\r\nHost: agora.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\na=b"},
			{"chunked", "DELETE /api/v1/modules/example.com/x HTTP/1.1\r\nHost: agora.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"},
			{"download", "GET /example.com/x/@v/list HTTP/1.1\r\nHost: agora.test\r\nContent-Length: 10\r\n\r\n"},
		} {
			t.Run(tc.name, func(t *testing.T) { s.stalled(t, tc.request) })
		}
	})
}

// TestLargeFormBody checks that a form body sent to the site or the API,
// none of whose routes reads a body, is not read in full: Buffalo parses
// a body that claims to be a form, up to 10 MiB in memory, before any
// route runs, and a client without a token could make the server hold
// 10 MiB per connection. The request must be answered, and its
// connection closed, once the first 64 KiB are in, without waiting for
// the rest of the body (bodyStall is left at its minute).
func TestLargeFormBody(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, path := range []string{"/", "/api/v1/whoami"} {
			t.Run(path, func(t *testing.T) {
				r := s.stalled(t, "POST "+path+" HTTP/1.1\r\nHost: agora.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
					"Content-Length: 10000000\r\n\r\na="+strings.Repeat("b", 128<<10))
				if r.status < 400 || r.status >= 500 {
					t.Errorf("status %d, want a 4xx", r.status)
				}
			})
		}
	})
}

// TestNoSessionCookieUntilUsed checks that the Buffalo app sets no session
// cookie on a response whose request stored nothing in the session.
// Buffalo saves the session after every request, and a cookie store
// writes a Set-Cookie each time, even for an empty new session: every
// health check, home page and API error then carried a cookie, which
// makes shared caches refuse the response and leaves a session cookie in
// the jar of every API client that follows cookies.
func TestNoSessionCookieUntilUsed(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, tc := range []struct {
			path string
			opts []requestOption
		}{
			{"/", nil},
			{"/healthz", nil},
			{"/readyz", nil},
			{"/nope", nil},
			{"/api/v1/whoami", []requestOption{bearer(s.root)}},
			{"/api/v1/whoami", nil},
		} {
			r := s.do(t, http.MethodGet, tc.path, nil, tc.opts...)
			if c := r.header.Values("Set-Cookie"); len(c) > 0 {
				t.Errorf("GET %s (%d): Set-Cookie %q, want none", tc.path, r.status, c)
			}
		}
	})
}

// panickingMetadata is a registry's database that panics when a version
// is looked up, as a bug would.
type panickingMetadata struct{ modproxy.Metadata }

func (panickingMetadata) Version(context.Context, string, string) (*modproxy.Version, error) {
	panic("a bug in the registry")
}

// panicking is Agora's handler on a registry whose database panics.
type panicking struct {
	handler http.Handler
	conn    *pop.Connection
	log     lockedBuffer // the handler's log, as text
	metrics *metrics.Metrics
}

func newPanicking(t *testing.T) *panicking {
	t.Helper()
	p := &panicking{conn: modelstest.Open(t, "sqlite3"), metrics: metrics.New()}
	log := slog.New(slog.NewTextHandler(&p.log, nil))
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := modproxy.New(modproxy.Config{Metadata: panickingMetadata{}, Blobs: disk, TempDir: t.TempDir(), Logger: log})
	cfg := &config.Config{Env: "test", ReadAuth: config.ReadPublic, Data: config.Data{DataDir: t.TempDir(), StorageDir: disk.Root()}}
	p.handler, err = actions.Handler(&actions.Deps{Config: cfg, DB: p.conn, Registry: reg, Logger: log, Metrics: p.metrics})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRequestLogPanic checks that a request whose handler panics outside
// Buffalo (a download here), which net/http cuts off, is logged and
// counted as the server's failure, 500, and not left out of both, which
// would hide it from every alert on errors.
func TestRequestLogPanic(t *testing.T) {
	p := newPanicking(t)
	h, buf, m := p.handler, &p.log, p.metrics
	const path = "/example.com/m/@v/v1.0.0.info"
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach net/http, which logs it with its stack")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}()
	if want := "msg=request method=GET path=" + path + " status=500 "; !strings.Contains(buf.String(), want) {
		t.Errorf("log %q; want a line with %q", buf.String(), want)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	wantMetrics(t, rec.Body.String(),
		`agora_http_requests_total{code="500",method="GET",route="info"} 1`,
		`agora_http_request_duration_seconds_count{route="info"} 1`,
		`agora_http_requests_in_flight 0`)
}

// TestPanicLoggedWithStack checks that a handler of Buffalo's routes that
// panics, which Buffalo answers with a 500, leaves the panic's stack in the
// log: without it, the line says only what the panic's value was, not
// where it came from.
func TestPanicLoggedWithStack(t *testing.T) {
	p := newPanicking(t)
	h, buf, conn := p.handler, &p.log, p.conn
	if _, err := models.CreateUser(context.Background(), conn, "test", "alice", auth.RoleViewer, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	token, _, err := models.CreateToken(context.Background(), conn, "test", "alice", "", auth.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/modules/example.com/m", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d; want 500", rec.Code)
	}
	if body := rec.Body.String(); strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
		t.Errorf("the answer %q shows the stack", body)
	}
	for _, want := range []string{"panic", "goroutine ", "actions.(*Deps).showModule"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q; want %q in it", buf.String(), want)
		}
	}
}
