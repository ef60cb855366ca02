package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/internal/testutil"
)

func TestClientProtocol(t *testing.T) {
	files := maps.Clone(modFiles)
	files["example.com/!upper/@v/!feature-!x.info"] = modInfo
	p := newFakeProxy(t, serveFiles(files))
	rec := &recorder{}
	c := newTestClient(t, p.URL, func(o *Options) { o.Observer = rec })
	ctx := context.Background()

	list, src, err := c.List(ctx, modPath)
	if want := []string{"v1.0.0", "v1.1.0-pre"}; err != nil || src != p.URL || !slices.Equal(list, want) {
		t.Errorf("List = %q, %q, %v; want %q from %s: canonical, not pseudo, once each, sorted", list, src, err, want, p.URL)
	}
	info, src, err := c.Info(ctx, modPath, "v1.0.0")
	if err != nil || src != p.URL || info.Version != "v1.0.0" || !info.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || string(info.Raw) != modInfo {
		t.Errorf("Info = %+v, %q, %v; want v1.0.0 with its time and the raw .info", info, src, err)
	}
	for _, query := range []string{"master", "Feature-X"} {
		if info, _, err := c.Info(ctx, modPath, query); err != nil || info.Version != "v1.0.0" {
			t.Errorf("Info(%q) = %+v, %v; want the canonical version", query, info, err)
		}
	}
	if info, _, err := c.Latest(ctx, modPath); err != nil || info.Version != "v1.0.0" || string(info.Raw) != modInfo {
		t.Errorf("Latest = %+v, %v", info, err)
	}
	if mod, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil || string(mod) != modMod {
		t.Errorf("Mod = %q, %v; want %q", mod, err, modMod)
	}
	zip, _, err := c.Zip(ctx, modPath, "v1.0.0")
	if err != nil {
		t.Fatalf("Zip: %v", err)
	}
	data, err := io.ReadAll(zip)
	zip.Close()
	if err != nil || string(data) != modZip {
		t.Errorf("Zip read %q, %v; want %q", data, err, modZip)
	}

	wantURIs := []string{
		"/example.com/!upper/@v/list",
		"/example.com/!upper/@v/v1.0.0.info",
		"/example.com/!upper/@v/master.info",
		"/example.com/!upper/@v/!feature-!x.info",
		"/example.com/!upper/@latest",
		"/example.com/!upper/@v/v1.0.0.mod",
		"/example.com/!upper/@v/v1.0.0.zip",
	}
	if got := p.uris(); !slices.Equal(got, wantURIs) {
		t.Errorf("requests on the wire:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantURIs, "\n"))
	}
	if ua := p.userAgent(); ua != DefaultUserAgent {
		t.Errorf("User-Agent %q; want %q", ua, DefaultUserAgent)
	}

	// A query's .info is of its own kind.
	kinds := []string{"list", "info", "query", "query", "latest", "mod", "zip"}
	obs := rec.all()
	if len(obs) != len(kinds) {
		t.Fatalf("observed %d requests; want %d: %+v", len(obs), len(kinds), obs)
	}
	for i, o := range obs {
		uri := strings.TrimPrefix(wantURIs[i], "/")
		if o.proxy != p.URL || o.kind != kinds[i] || o.status != 200 || o.bytes != int64(len(files[uri])) || o.err != nil {
			t.Errorf("observation %d = %+v; want %s, %s, 200, %d bytes, no error", i, o, p.URL, kinds[i], len(files[uri]))
		}
	}
}

// TestProxyPath checks that a proxy URL with a path, and credentials, is
// requested below that path, with basic authentication, and that the
// secret is in no answer: a password, or a user name that comes alone,
// which is how a token is given in a URL. Answers reach clients in error
// bodies, metric labels and versions' sources.
func TestProxyPath(t *testing.T) {
	for _, user := range []*url.Userinfo{url.UserPassword("u", "secret"), url.User("secret")} {
		t.Run(user.String(), func(t *testing.T) {
			serve := serveFiles(modFiles)
			wantUser, wantPass := user.Username(), ""
			if pass, ok := user.Password(); ok {
				wantPass = pass
			}
			p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
				if user, pass, _ := r.BasicAuth(); user != wantUser || pass != wantPass {
					http.Error(w, "who are you?", http.StatusUnauthorized)
					return
				}
				http.StripPrefix("/go/proxy", serve).ServeHTTP(w, r)
			})
			u, _ := url.Parse(p.URL)
			u.User = user
			rec := &recorder{}
			c := newTestClient(t, u.String()+"/go/proxy/", func(o *Options) { o.Observer = rec })
			_, src, err := c.Mod(context.Background(), modPath, "v1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := p.uris(), []string{"/go/proxy/example.com/!upper/@v/v1.0.0.mod"}; !slices.Equal(got, want) {
				t.Errorf("requests %q; want %q", got, want)
			}
			_, _, err = c.Mod(context.Background(), modPath, "v9.0.0")
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Mod of an unknown version: %v; want ErrNotFound", err)
			}
			for _, s := range []string{src, err.Error(), fmt.Sprint(rec.all())} {
				if strings.Contains(s, "secret") {
					t.Errorf("%q shows the secret", s)
				}
			}
		})
	}
}

func TestFallThrough(t *testing.T) {
	// The first proxy's header timeout is fired when it has the request;
	// the second, healthy one has a minute to answer.
	timeouts := newFiredTimeouts(whatNoHeaders)
	failures := []struct {
		name     string
		notFound bool // falls through after ','
		start    func(t *testing.T) string
	}{
		{"404", true, func(t *testing.T) string { return newFakeProxy(t, serveStatus(404)).URL }},
		{"410", true, func(t *testing.T) string { return newFakeProxy(t, serveStatus(410)).URL }},
		{"403", true, func(t *testing.T) string { return newFakeProxy(t, serveStatus(403)).URL }},
		{"500", false, func(t *testing.T) string { return newFakeProxy(t, serveStatus(500)).URL }},
		{"400", false, func(t *testing.T) string { return newFakeProxy(t, serveStatus(400)).URL }},
		{"timeout", false, func(t *testing.T) string { return newFakeProxy(t, hangAfterTimeout(t, timeouts)).URL }},
		{"refused", false, refusedURL},
		{"invalid info", false, func(t *testing.T) string {
			files := maps.Clone(modFiles)
			files["example.com/!upper/@v/v1.0.0.info"] = `{"Version": "v1.0.0"`
			return newFakeProxy(t, serveFiles(files)).URL
		}},
	}
	for _, f := range failures {
		for _, sep := range []string{",", "|"} {
			t.Run(f.name+sep, func(t *testing.T) {
				good := newFakeProxy(t, serveFiles(modFiles))
				c := newTestClient(t, f.start(t)+sep+good.URL, timeouts.set)
				info, src, err := c.Info(context.Background(), modPath, "v1.0.0")
				if f.notFound || sep == "|" {
					if err != nil || src != good.URL || info.Version != "v1.0.0" {
						t.Errorf("Info = %+v, %q, %v; want v1.0.0 from the second proxy", info, src, err)
					}
					return
				}
				if err == nil || errors.Is(err, ErrNotFound) {
					t.Errorf("Info = %+v, %q, %v; want the first proxy's error, not ErrNotFound", info, src, err)
				}
				if n := good.count(); n != 0 {
					t.Errorf("the second proxy got %d requests after ','; want none", n)
				}
			})
		}
	}
}

func TestBestError(t *testing.T) {
	notFound := func(reason string) string {
		return newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, reason, http.StatusNotFound)
		}).URL
	}
	gone := newFakeProxy(t, serveStatus(410)).URL
	failing := newFakeProxy(t, serveStatus(502)).URL
	refused := refusedURL(t)
	good := newFakeProxy(t, serveFiles(modFiles))

	tests := []struct {
		name     string
		list     string
		notFound bool
		contains []string
	}{
		{"all not found", notFound("not found: first reason\nsecond line") + "," + gone, true,
			[]string{"example.com/Upper@v1.0.0: reading ", "404 Not Found\n\tserver response:\n\tnot found: first reason\n\tsecond line"}},
		{"not found then failure", notFound("nope") + "," + failing + "," + good.URL, false, []string{"502 Bad Gateway", "server response: fake: Bad Gateway", "after 3 attempts"}},
		{"failure then not found", failing + "|" + gone, false, []string{"502 Bad Gateway"}},
		{"refused then not found", refused + "|" + gone, false, []string{"connection refused"}},
		{"two failures", failing + "|" + refused, false, []string{"502 Bad Gateway"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, tt.list, nil)
			_, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
			if err == nil || errors.Is(err, ErrNotFound) != tt.notFound {
				t.Fatalf("Mod: %v; want an error, ErrNotFound %v", err, tt.notFound)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			var me *module.ModuleError
			if !errors.As(err, &me) || me.Path != modPath || me.Version != "v1.0.0" {
				t.Errorf("error %v is not a module.ModuleError for %s@v1.0.0", err, modPath)
			}
		})
	}
	if n := good.count(); n != 0 {
		t.Errorf("a proxy after a failing one and a ',' got %d requests", n)
	}

	var nilClient *Client
	for _, c := range []*Client{nilClient, New(nil, Options{})} {
		if _, _, err := c.List(context.Background(), modPath); !errors.Is(err, ErrNotFound) {
			t.Errorf("List with no proxies: %v; want ErrNotFound", err)
		}
	}
}

// sequence answers its n-th request with steps[n] (the last step repeats):
// a status, or 200 with the module's files, or truncated: 200 with a body
// cut short.
func sequence(steps ...int) http.HandlerFunc {
	serve := serveFiles(modFiles)
	var mu sync.Mutex
	n := 0
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		step := steps[min(n, len(steps)-1)]
		n++
		mu.Unlock()
		switch step {
		case 200:
			serve(w, r)
		case truncated:
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "module")
		default:
			serveStatus(step)(w, r)
		}
	}
}

// truncated is a step of sequence: a body cut short.
const truncated = -1

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		steps    []int
		retries  int
		wantErr  string // "" for success
		requests int
	}{
		{"500 then success", []int{500, 500, 200}, 0, "", 3},
		{"503 always", []int{503}, 0, "503 Service Unavailable", 3},
		{"429 then success", []int{429, 200}, 0, "", 2},
		{"body cut short then success", []int{truncated, 200}, 0, "", 2},
		{"404 not retried", []int{404, 200}, 0, "404 Not Found", 1},
		{"400 not retried", []int{400, 200}, 0, "400 Bad Request", 1},
		{"retries off", []int{500, 200}, -1, "500 Internal Server Error", 1},
		{"5 retries", []int{500, 500, 500, 500, 500, 200}, 5, "", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProxy(t, sequence(tt.steps...))
			rec := &recorder{}
			c := newTestClient(t, p.URL, func(o *Options) { o.Retries = tt.retries; o.Observer = rec })
			mod, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
			switch {
			case tt.wantErr == "" && (err != nil || string(mod) != modMod):
				t.Errorf("Mod = %q, %v; want the go.mod", mod, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Mod = %q, %v; want an error with %q", mod, err, tt.wantErr)
			}
			if got := p.count(); got != tt.requests {
				t.Errorf("%d requests; want %d", got, tt.requests)
			}
			if got := len(rec.all()); got != tt.requests {
				t.Errorf("%d observations; want one per request, %d", got, tt.requests)
			}
		})
	}

	t.Run("zip", func(t *testing.T) {
		p := newFakeProxy(t, sequence(500, 200))
		c := newTestClient(t, p.URL, nil)
		zip, _, err := c.Zip(context.Background(), modPath, "v1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		defer zip.Close()
		if data, err := io.ReadAll(zip); err != nil || string(data) != modZip {
			t.Errorf("read %q, %v", data, err)
		}
		if n := p.count(); n != 2 {
			t.Errorf("%d requests; want 2", n)
		}
	})
}

// stall sends the headers and the start of a body, then hangs.
func stall(t *testing.T) http.HandlerFunc {
	h := hang(t)
	return func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "module example.com/Upper\n")
		w.(http.Flusher).Flush()
		h(w, r)
	}
}

func TestTimeouts(t *testing.T) {
	const d = 50 * time.Millisecond
	short := func(o *Options) { o.HeaderTimeout, o.BodyTimeout = d, d }
	// The body tests wait for headers for as long as a slow machine may
	// take to send them: only the body, which stalls, is to time out.
	shortBody := func(o *Options) { o.HeaderTimeout, o.BodyTimeout = time.Minute, d }
	ctx := context.Background()

	t.Run("header", func(t *testing.T) {
		p := newFakeProxy(t, hang(t))
		_, _, err := newTestClient(t, p.URL, short).Mod(ctx, modPath, "v1.0.0")
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no response headers within 50ms") {
			t.Errorf("Mod: %v; want a header timeout", err)
		}
		if n := p.count(); n != 1 {
			t.Errorf("%d requests; want 1: timeouts are not retried", n)
		}
	})
	t.Run("body", func(t *testing.T) {
		p := newFakeProxy(t, stall(t))
		_, _, err := newTestClient(t, p.URL, shortBody).Mod(ctx, modPath, "v1.0.0")
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "body not received in full within 50ms") {
			t.Errorf("Mod: %v; want a body timeout", err)
		}
		if n := p.count(); n != 1 {
			t.Errorf("%d requests; want 1: timeouts are not retried", n)
		}
	})
	t.Run("zip body", func(t *testing.T) {
		p := newFakeProxy(t, stall(t))
		rec := &recorder{}
		c := newTestClient(t, p.URL, func(o *Options) { shortBody(o); o.Observer = rec })
		zip, _, err := c.Zip(ctx, modPath, "v1.0.0")
		if err != nil {
			t.Fatalf("Zip: %v; want the body, which times out", err)
		}
		data, err := io.ReadAll(zip)
		zip.Close()
		if !errors.Is(err, os.ErrDeadlineExceeded) || string(data) != "module example.com/Upper\n" {
			t.Errorf("read %q, %v; want the start and a body timeout", data, err)
		}
		if obs := rec.all(); len(obs) != 1 || obs[0].bytes != int64(len(data)) || !errors.Is(obs[0].err, os.ErrDeadlineExceeded) {
			t.Errorf("observed %+v; want one request with its bytes and the timeout", obs)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		h := hang(t)
		p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) { cancel(); h(w, r) })
		next := newFakeProxy(t, serveFiles(modFiles))
		_, _, err := newTestClient(t, p.URL+"|"+next.URL, nil).Mod(ctx, modPath, "v1.0.0")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Mod: %v; want context.Canceled", err)
		}
		if p.count() != 1 || next.count() != 0 {
			t.Errorf("%d and %d requests; want 1 and none: a cancelled fetch is neither retried nor passed on", p.count(), next.count())
		}
	})
}

// TestStalledSmallBodies checks that lists, .info and .mod files whose
// bodies stall time out well before their callers give up, even when a
// zip may take longer than that, so that their proxy is found down.
func TestStalledSmallBodies(t *testing.T) {
	p := newFakeProxy(t, stall(t))
	c := newTestClient(t, p.URL, func(o *Options) { o.BodyTimeout, o.SmallBodyTimeout = time.Hour, 50*time.Millisecond })
	fetches := map[string]func(context.Context) error{
		"List": func(ctx context.Context) error { _, _, err := c.List(ctx, modPath); return err },
		"Info": func(ctx context.Context) error { _, _, err := c.Info(ctx, modPath, "v1.0.0"); return err },
		"Mod":  func(ctx context.Context) error { _, _, err := c.Mod(ctx, modPath, "v1.0.0"); return err },
	}
	for name, fetch := range fetches {
		// The caller's deadline, shorter than the zips' body timeout,
		// as modproxy's minute or two is shorter than its ten minutes.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := fetch(ctx)
		if ctx.Err() != nil || !strings.Contains(err.Error(), "body not received in full within 50ms") {
			t.Errorf("%s: %v; want the small files' body timeout, not the caller's deadline", name, err)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Latest(ctx, modPath); !errors.Is(err, ErrDown) {
		t.Errorf("Latest after %d stalled bodies: %v; want ErrDown", len(fetches), err)
	}
}

var smallBodyTimeoutTests = []struct{ body, small, want time.Duration }{
	{0, 0, 30 * time.Second},
	{time.Hour, 0, 30 * time.Second},
	{10 * time.Second, 0, 10 * time.Second},
	{0, time.Minute, time.Minute},
}

func TestSmallBodyTimeoutDefault(t *testing.T) {
	for _, tt := range smallBodyTimeoutTests {
		o := Options{BodyTimeout: tt.body, SmallBodyTimeout: tt.small}.withDefaults()
		if o.SmallBodyTimeout != tt.want {
			t.Errorf("BodyTimeout %v, SmallBodyTimeout %v: the small files get %v; want %v", tt.body, tt.small, o.SmallBodyTimeout, tt.want)
		}
	}
}

// TestStalledErrorBody checks that an error answer whose body stalls ends
// within the header timeout, not at the caller's deadline: its status
// still decides whether ',' falls through, and it counts as no answer.
func TestStalledErrorBody(t *testing.T) {
	for _, tt := range []struct {
		status   int
		notFound bool // falls through after ','
	}{{http.StatusNotFound, true}, {http.StatusServiceUnavailable, false}} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			// The caller's deadline, far beyond the header timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The stalled body's timeout is fired once it stalls; the
			// next proxy has a minute to answer.
			timeouts := newFiredTimeouts(whatNoErrorBody)
			p := newFakeProxy(t, stallError(t, tt.status, timeouts))
			good := newFakeProxy(t, serveFiles(modFiles))
			c := newTestClient(t, p.URL+","+good.URL, timeouts.set)
			for range downAfter {
				mod, _, err := c.Mod(ctx, modPath, "v1.0.0")
				if ctx.Err() != nil {
					t.Fatalf("Mod: %v; only the caller's deadline ended it", err)
				}
				if tt.notFound {
					if err != nil || string(mod) != modMod {
						t.Errorf("Mod = %q, %v; want the next proxy's go.mod", mod, err)
					}
					continue
				}
				if !isTimeout(err) || !strings.Contains(err.Error(), http.StatusText(tt.status)) || good.count() != 0 {
					t.Errorf("Mod = %q, %v; want the status and a timeout, and the next proxy not asked", mod, err)
				}
			}
			if n := p.count(); n != downAfter {
				t.Errorf("%d requests; want %d: timeouts are not retried", n, downAfter)
			}
			if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) {
				t.Errorf("Mod after %d stalled answers: %v; want ErrDown", downAfter, err)
			}
		})
	}
}

func TestSizeLimits(t *testing.T) {
	// serveSize answers with n bytes, announced or chunked.
	serveSize := func(n int, announce bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if announce {
				w.Header().Set("Content-Length", strconv.Itoa(n))
			} else {
				w.(http.Flusher).Flush() // no Content-Length
			}
			io.WriteString(w, strings.Repeat("x", n))
		}
	}
	const limit = 100
	for _, announce := range []bool{true, false} {
		for _, n := range []int{limit, limit + 1, 10 * limit} {
			t.Run(fmt.Sprintf("%d bytes, announced %v", n, announce), func(t *testing.T) {
				p := newFakeProxy(t, serveSize(n, announce))
				c := newTestClient(t, p.URL, nil)
				for kind := range c.limits {
					c.limits[kind] = limit
				}
				ctx := context.Background()
				mod, _, modErr := c.Mod(ctx, modPath, "v1.0.0")
				_, _, listErr := c.List(ctx, modPath)
				var zipData []byte
				zip, _, zipErr := c.Zip(ctx, modPath, "v1.0.0")
				if zipErr == nil {
					zipData, zipErr = io.ReadAll(zip)
					zip.Close()
				}
				if n <= limit {
					if modErr != nil || len(mod) != n || listErr != nil || zipErr != nil || len(zipData) != n {
						t.Errorf("mod %d bytes, %v; list %v; zip %d bytes, %v; want all %d bytes", len(mod), modErr, listErr, len(zipData), zipErr, n)
					}
					return
				}
				for kind, err := range map[string]error{"mod": modErr, "list": listErr, "zip": zipErr} {
					if !errors.Is(err, ErrTooLarge) {
						t.Errorf("%s: %v; want ErrTooLarge", kind, err)
					}
				}
				if len(zipData) > limit {
					t.Errorf("zip: read %d bytes; want at most the limit", len(zipData))
				}
				if got := p.count(); got != 3 {
					t.Errorf("%d requests; want 3: too large is not retried", got)
				}
			})
		}
	}
}

func TestInfoValidation(t *testing.T) {
	tests := []struct {
		query, info string
		wantErr     string // "" for success
	}{
		{"v1.0.0", `{"Version":"v1.0.0"}`, ""},
		{"master", `{"Version":"v1.0.0"}`, ""},
		{"master", `{"Version":"v0.0.0-20260102030405-0123456789ab","Time":"2026-01-02T03:04:05Z"}`, ""},
		{"v1.0", `{"Version":"v1.0.0"}`, ""},
		{"v1.0.0", `{"Version":"v1.0.0"`, "invalid .info"},
		{"v1.0.0", `null`, "no Version"},
		{"v1.0.0", `<html>oops</html>`, "invalid .info"},
		{"v1.0.0", `{"Version":"v1.0.0","Time":"yesterday"}`, "invalid .info"},
		{"master", `{"Version":"v1.0"}`, "not a canonical semantic version"},
		{"master", `{"Version":"master"}`, "not a canonical semantic version"},
		{"v1.0.0", `{"Version":"v1.1.0"}`, "names version v1.1.0 instead of the requested one"},
		{"master", `{"Version":"v2.0.0"}`, "should be v0 or v1"},
	}
	for _, tt := range tests {
		p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tt.info) })
		c := newTestClient(t, p.URL, nil)
		info, _, err := c.Info(context.Background(), modPath, tt.query)
		switch {
		case tt.wantErr == "" && (err != nil || string(info.Raw) != tt.info):
			t.Errorf("Info(%q) of %s: %+v, %v; want it", tt.query, tt.info, info, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrNotFound)):
			t.Errorf("Info(%q) of %s: %+v, %v; want an error with %q", tt.query, tt.info, info, err, tt.wantErr)
		}
		_, _, err = c.Latest(context.Background(), modPath)
		if (err == nil) != (tt.wantErr == "" || strings.Contains(tt.wantErr, "instead of")) {
			t.Errorf("Latest of %s: %v", tt.info, err)
		}
	}
}

func TestFileProxy(t *testing.T) {
	dir := t.TempDir()
	for name, data := range modFiles {
		file := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(file), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "example.com/!upper/@v/v9.9.9.mod"), 0o777); err != nil {
		t.Fatal(err)
	}
	fileURL := "file://" + filepath.ToSlash(dir)
	ctx := context.Background()
	c := newTestClient(t, fileURL, nil)
	if err := fetchAll(ctx, c); err != nil {
		t.Errorf("fetching from %s: %v", fileURL, err)
	}
	if info, src, err := c.Info(ctx, modPath, "master"); err != nil || src != fileURL || info.Version != "v1.0.0" {
		t.Errorf("Info = %+v, %q, %v; want v1.0.0 from %s", info, src, err, fileURL)
	}
	for _, v := range []string{"v1.2.3", "v9.9.9"} {
		if _, _, err := c.Mod(ctx, modPath, v); !errors.Is(err, ErrNotFound) {
			t.Errorf("Mod of %s: %v; want ErrNotFound", v, err)
		}
	}

	// A file tree first, an HTTP proxy for what it lacks.
	p := newFakeProxy(t, serveFiles(map[string]string{"example.com/!upper/@v/v1.2.3.mod": "module example.com/Upper\n// v1.2.3\n"}))
	c = newTestClient(t, fileURL+","+p.URL, nil)
	if mod, src, err := c.Mod(ctx, modPath, "v1.2.3"); err != nil || src != p.URL || !strings.Contains(string(mod), "v1.2.3") {
		t.Errorf("Mod = %q, %q, %v; want the HTTP proxy's", mod, src, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	p := newFakeProxy(t, serveFiles(modFiles))
	c := newTestClient(t, p.URL, nil)
	ctx := context.Background()
	calls := map[string]func() error{
		"Mod non-canonical":  func() error { _, _, err := c.Mod(ctx, modPath, "v1.0"); return err },
		"Zip query":          func() error { _, _, err := c.Zip(ctx, modPath, "master"); return err },
		"Info bad path":      func() error { _, _, err := c.Info(ctx, "example.com/a b", "v1.0.0"); return err },
		"Info bad query":     func() error { _, _, err := c.Info(ctx, modPath, "a/../b"); return err },
		"List bad path":      func() error { _, _, err := c.List(ctx, "../etc"); return err },
		"Latest empty path":  func() error { _, _, err := c.Latest(ctx, ""); return err },
		"Mod dot-dot path":   func() error { _, _, err := c.Mod(ctx, "example.com/../x", "v1.0.0"); return err },
		"Zip empty version":  func() error { _, _, err := c.Zip(ctx, modPath, ""); return err },
		"Info empty version": func() error { _, _, err := c.Info(ctx, modPath, ""); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
	if n := p.count(); n != 0 {
		t.Errorf("%d requests for invalid arguments; want none", n)
	}
}

func TestRedirects(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("module secret\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	real := newFakeProxy(t, serveFiles(modFiles))
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".mod") {
			http.Redirect(w, r, "file://"+filepath.ToSlash(secret), http.StatusFound)
			return
		}
		http.Redirect(w, r, real.URL+r.URL.Path, http.StatusMovedPermanently)
	})
	c := newTestClient(t, p.URL, nil)
	if info, _, err := c.Info(context.Background(), modPath, "v1.0.0"); err != nil || info.Version != "v1.0.0" {
		t.Errorf("Info through a redirect: %+v, %v", info, err)
	}
	mod, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
	if err == nil || !strings.Contains(err.Error(), "redirect to file://") {
		t.Errorf("Mod redirected to a local file = %q, %v; want the redirect refused", mod, err)
	}
}

// TestNoRedirectToPlainHTTP checks that an https proxy may redirect to
// https only, as for the go command.
func TestNoRedirectToPlainHTTP(t *testing.T) {
	plain := newFakeProxy(t, serveFiles(modFiles))
	secure := newFakeTLSProxy(t, serveFiles(modFiles))
	p := newFakeTLSProxy(t, func(w http.ResponseWriter, r *http.Request) {
		to := secure.URL
		if strings.HasSuffix(r.URL.Path, ".mod") {
			to = plain.URL
		}
		http.Redirect(w, r, to+r.URL.Path, http.StatusFound)
	})
	c := newTestClient(t, p.URL, func(o *Options) { o.Transport = p.Client().Transport })
	if info, _, err := c.Info(context.Background(), modPath, "v1.0.0"); err != nil || info.Version != "v1.0.0" {
		t.Errorf("Info through a redirect to https: %+v, %v", info, err)
	}
	mod, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
	if err == nil || !strings.Contains(err.Error(), "redirected from secure URL "+p.URL) {
		t.Errorf("Mod redirected to http = %q, %v; want the redirect refused", mod, err)
	}
	if n := plain.count(); n != 0 {
		t.Errorf("the http proxy got %d requests; want none", n)
	}
}

// TestRefusedRedirectIsAnAnswer checks that a refused redirect (to a
// file, or one too many) is not retried and does not count as no answer:
// the proxy answered, and modules it redirects wrongly must not take it
// down for all the others.
func TestRefusedRedirectIsAnAnswer(t *testing.T) {
	serve := serveFiles(modFiles)
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/file.example/"):
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/loop.example/"):
			http.Redirect(w, r, r.URL.Path, http.StatusFound)
		default:
			serve(w, r)
		}
	})
	rec := &recorder{}
	c := newTestClient(t, p.URL, func(o *Options) { o.Observer = rec })
	ctx := context.Background()
	for _, tt := range []struct {
		path, want string
		requests   int
	}{
		{"file.example/m", "redirect to file:///etc/passwd refused", 1},
		{"loop.example/m", "stopped after 10 redirects", maxRedirects},
	} {
		for range downAfter {
			before := p.count()
			_, _, err := c.Mod(ctx, tt.path, "v1.0.0")
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrDown) {
				t.Errorf("Mod of %s: %v; want %q", tt.path, err, tt.want)
			}
			if n := p.count() - before; n != tt.requests {
				t.Errorf("Mod of %s: %d requests; want %d: a refused redirect is not retried", tt.path, n, tt.requests)
			}
		}
	}
	if mod, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil || string(mod) != modMod {
		t.Errorf("Mod after refused redirects: %q, %v; want the go.mod: the proxy is up", mod, err)
	}
	if got := rec.healthChanges(); len(got) != 0 {
		t.Errorf("health changes %q; want none", got)
	}
}

// TestCorruptEncodingIsAnAnswer checks that a body that is not the gzip
// its Content-Encoding says (net/http asks for gzip, and decodes it) is an
// answer of the proxy, as a refused redirect is: not retried, as the go
// command does not retry it, and not counted as no answer, so that the
// modules a proxy stores with a wrong Content-Encoding (an object store's
// metadata, say) do not take it down for all the others.
func TestCorruptEncodingIsAnAnswer(t *testing.T) {
	gzipped := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, s)
		zw.Close()
		return b.Bytes()
	}
	badCRC := gzipped(modMod)
	badCRC[len(badCRC)-8] ^= 0xff // the trailer's CRC-32
	bodies := map[string][]byte{
		"plain.example":   []byte(modMod),                                   // gzip: invalid header
		"corrupt.example": append(gzipped("")[:10], 0xff, 0xff, 0xff, 0xff), // flate: corrupt input
		"crc.example":     badCRC,                                           // gzip: invalid checksum
	}
	serve := serveFiles(modFiles)
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if body, ok := bodies[host]; ok {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(body)
			return
		}
		serve(w, r)
	})
	rec := &recorder{}
	c := newTestClient(t, p.URL, func(o *Options) { o.Observer = rec })
	ctx := context.Background()
	for host := range bodies {
		for range downAfter {
			before := p.count()
			_, _, err := c.Mod(ctx, host+"/m", "v1.0.0")
			if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrDown) {
				t.Errorf("Mod of %s/m: %v; want the decoding error", host, err)
			}
			if n := p.count() - before; n != 1 {
				t.Errorf("Mod of %s/m: %d requests; want 1: a corrupt body is not retried", host, n)
			}
		}
	}
	if mod, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil || string(mod) != modMod {
		t.Errorf("Mod after corrupt bodies: %q, %v; want the go.mod: the proxy is up", mod, err)
	}
	if got := rec.healthChanges(); len(got) != 0 {
		t.Errorf("health changes %q; want none", got)
	}
}

func TestConnectionErrorsRetried(t *testing.T) {
	rec := &recorder{}
	c := newTestClient(t, refusedURL(t), func(o *Options) { o.Observer = rec })
	_, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("Mod: %v; want an error after 3 attempts", err)
	}
	obs := rec.all()
	if len(obs) != 3 {
		t.Fatalf("observed %d attempts; want 3", len(obs))
	}
	for _, o := range obs {
		if o.status != 0 || o.kind != "mod" || o.err == nil {
			t.Errorf("observed %+v; want kind mod, status 0 and the error", o)
		}
	}
}

func TestInvalidProxy(t *testing.T) {
	good := newFakeProxy(t, serveFiles(modFiles))
	for _, tt := range []struct {
		fallThrough bool
		wantErr     string
	}{{false, "unsupported scheme"}, {true, ""}} {
		c := New([]Proxy{{URL: "ftp://a.example", FallThrough: tt.fallThrough}, {URL: good.URL}}, testOptions())
		_, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
		if (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr))) {
			t.Errorf("an invalid proxy, fall-through %v: %v; want %q", tt.fallThrough, err, tt.wantErr)
		}
	}
}

func TestConcurrentFetches(t *testing.T) {
	p := newFakeProxy(t, serveFiles(modFiles))
	c := newTestClient(t, p.URL, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() { errs <- fetchAll(context.Background(), c) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

var formatErrorDetailTests = []struct{ in, want string }{
	{"", ""},
	{"not found: unknown revision v1.2.3\n", "not found: unknown revision v1.2.3"},
	{"one\ntwo\n\nafter a blank line", "one\n\ttwo"},
	{"1\n2\n3\n4\n5\n6\n7\n8\n9\n10", "1\n\t2\n\t3\n\t4\n\t5\n\t6\n\t7\n\t8\n\t[Truncated: too many lines.]"},
	{strings.Repeat("x", 700), "[Truncated: too long.]"},
	{"bell \a in it", ""},
	{"not utf-8 \xff here", ""},
}

func TestFormatErrorDetail(t *testing.T) {
	for _, tt := range formatErrorDetailTests {
		if got := formatErrorDetail(tt.in); got != tt.want {
			t.Errorf("formatErrorDetail(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestErrorDetailOnlyFromPlainText(t *testing.T) {
	html := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<h1>not here</h1>")
	})
	_, _, err := newTestClient(t, html.URL, nil).Mod(context.Background(), modPath, "v1.0.0")
	if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "not here") {
		t.Errorf("Mod: %v; want ErrNotFound without the HTML", err)
	}
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("Mod: %v; want an *HTTPError with status 404", err)
	}
}

// TestProtocolSwitchIsNotRead checks that a 101 Switching Protocols is an
// error answer at once, as for the go command, its connection closed
// unread: net/http hands the connection over as its body, which neither
// the request's context nor any timeout ends, so reading it waits for as
// long as the proxy keeps the connection open.
func TestProtocolSwitchIsNotRead(t *testing.T) {
	conns := make(chan net.Conn, 1)
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		testutil.SwitchProtocols(t, w, conns) // kept open
	})
	c := newTestClient(t, p.URL, nil) // a header timeout of 1s
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Mod(context.Background(), modPath, "v1.0.0")
		done <- err
	}()
	conn := <-conns
	defer conn.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "101 Switching Protocols") || errors.Is(err, ErrNotFound) {
			t.Errorf("Mod: %v; want the 101 answer as an error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Mod still reads the connection of a 101 answer after 20s")
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("reading the proxy's end of the connection: %v; want EOF: the client closed it", err)
	}
	if n := p.count(); n != 1 {
		t.Errorf("%d requests; want 1: a 101 is an answer, not retried", n)
	}
}

// TestErrorAnswersKeepTheConnection checks that error answers of any
// kind are read to their end, so that the next request reuses the
// connection: most upstream requests are 404s for path prefixes.
func TestErrorAnswersKeepTheConnection(t *testing.T) {
	answer := func(status int, contentType, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	for _, tt := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"short text", serveStatus(http.StatusNotFound)},
		{"long text", answer(http.StatusNotFound, "text/plain", strings.Repeat("not found ", 100))},
		{"JSON", answer(http.StatusNotFound, "application/json", `{"error":"not found"}`)},
		{"S3 XML", answer(http.StatusForbidden, "application/xml", `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>`)},
		{"HTML page", answer(http.StatusGone, "text/html", "<html>"+strings.Repeat("<p>gone</p>", 300)+"</html>")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProxy(t, tt.h)
			c := newTestClient(t, p.URL, nil)
			for range 10 {
				if _, _, err := c.Mod(context.Background(), modPath, "v1.0.0"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Mod: %v; want ErrNotFound", err)
				}
			}
			if n := p.connections(); n != 1 {
				t.Errorf("%d connections for 10 requests one after the other; want 1", n)
			}
		})
	}
}

// A proxy without @latest (it is optional, and a module cache has none) is
// asked for its list, as the go command asks it: the newest
// pseudo-version there is the answer, with its .info from that proxy.
func TestLatestFromList(t *testing.T) {
	const (
		old    = "v0.0.0-20190102030405-0123456789ab"
		newest = "v0.0.0-20240102030405-abcdef012345"
		dated  = "v0.0.0-20200102030405-aaaaaaaaaaaa" // its line's time is the newest
		info   = `{"Version":"%s","Time":"2024-01-02T03:04:05Z"}`
	)
	files := func(list string, versions ...string) map[string]string {
		m := map[string]string{"example.com/!upper/@v/list": list}
		for _, v := range versions {
			m["example.com/!upper/@v/"+v+".info"] = fmt.Sprintf(info, v)
		}
		return m
	}
	tests := []struct {
		name, list string
		versions   []string
		want       string // "" for not found
	}{
		{"newest pseudo-version", "v1.0.0\n" + old + "\n" + newest + "\nnot-a-version 2031-01-01T00:00:00Z\n", []string{old, newest}, newest},
		{"time on the line", newest + "\n" + dated + " 2030-01-01T00:00:00Z\n", []string{newest, dated}, dated},
		{"tags only", "v1.0.0\nv1.1.0\n", []string{"v1.0.0"}, ""},
		{"empty list", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProxy(t, serveFiles(files(tt.list, tt.versions...)))
			c := newTestClient(t, p.URL, nil)
			got, src, err := c.Latest(context.Background(), modPath)
			if tt.want == "" {
				if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no pseudo-version") {
					t.Fatalf("Latest = %+v, %v; want not found: no pseudo-version", got, err)
				}
				return
			}
			if err != nil || got.Version != tt.want || src != p.URL || string(got.Raw) != fmt.Sprintf(info, tt.want) {
				t.Fatalf("Latest = %+v, %q, %v; want %s and its .info from %s", got, src, err, tt.want, p.URL)
			}
		})
	}

	t.Run("falls through to the next proxy", func(t *testing.T) {
		tags := newFakeProxy(t, serveFiles(files("v1.0.0\n", "v1.0.0")))
		next := newFakeProxy(t, serveFiles(files(newest+"\n", newest)))
		c := newTestClient(t, tags.URL+","+next.URL, nil)
		if got, src, err := c.Latest(context.Background(), modPath); err != nil || got.Version != newest || src != next.URL {
			t.Fatalf("Latest = %+v, %q, %v; want %s from the second proxy", got, src, err, newest)
		}
	})
	t.Run("info naming another version", func(t *testing.T) {
		m := files(newest + "\n")
		m["example.com/!upper/@v/"+newest+".info"] = fmt.Sprintf(info, old)
		p := newFakeProxy(t, serveFiles(m))
		c := newTestClient(t, p.URL, nil)
		if got, _, err := c.Latest(context.Background(), modPath); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "names version "+old) {
			t.Fatalf("Latest = %+v, %v; want an invalid .info error", got, err)
		}
	})
	t.Run("a failing @latest is not worked around", func(t *testing.T) {
		p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/@latest") {
				http.Error(w, "broken", http.StatusInternalServerError)
				return
			}
			serveFiles(files(newest+"\n", newest))(w, r)
		})
		c := newTestClient(t, p.URL, func(o *Options) { o.Retries = -1 })
		if got, _, err := c.Latest(context.Background(), modPath); err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("Latest = %+v, %v; want the 500", got, err)
		}
		for _, uri := range p.uris() {
			if strings.HasSuffix(uri, "/@v/list") {
				t.Errorf("asked for the list after @latest failed: %q", p.uris())
			}
		}
	})
}

var backoffTests = []struct {
	backoff time.Duration
	n       int
	want    time.Duration // before jitter of ±50%
}{
	{200 * time.Millisecond, 0, 200 * time.Millisecond},
	{200 * time.Millisecond, 1, 400 * time.Millisecond},
	{200 * time.Millisecond, 3, 1600 * time.Millisecond},
	{200 * time.Millisecond, 8, 51200 * time.Millisecond},
	{200 * time.Millisecond, 9, maxBackoff}, // 102.4s, capped
	{200 * time.Millisecond, 100, maxBackoff},
	{time.Millisecond, 5, 32 * time.Millisecond},
	{time.Duration(1) << 62, 1, maxBackoff}, // overflows
	{2 * time.Minute, 0, maxBackoff},
}

func TestBackoff(t *testing.T) {
	for _, tt := range backoffTests {
		c := New(nil, Options{Backoff: tt.backoff})
		lo, hi := tt.want/2, tt.want/2+tt.want // [d/2, 3d/2)
		least, most := hi, time.Duration(0)
		for range 200 {
			d := c.backoff(tt.n)
			if d < lo || d >= hi {
				t.Fatalf("Backoff %v, backoff(%d) = %v; want within [%v, %v)", tt.backoff, tt.n, d, lo, hi)
			}
			least, most = min(least, d), max(most, d)
		}
		if least == most {
			t.Errorf("Backoff %v, backoff(%d) is always %v; want random jitter", tt.backoff, tt.n, least)
		}
	}
}

// TestDefaultSizeLimits checks that a new Client has the go command's
// limits (golang.org/x/mod/zip): TestSizeLimits lowers them.
func TestDefaultSizeLimits(t *testing.T) {
	want := map[string]int64{
		"info": modzip.MaxGoMod, "latest": modzip.MaxGoMod, "query": modzip.MaxGoMod, "list": modzip.MaxGoMod,
		"mod": modzip.MaxGoMod, "zip": modzip.MaxZipFile,
	}
	if c := New(nil, Options{}); !maps.Equal(c.limits, want) {
		t.Errorf("limits %v; want %v", c.limits, want)
	}
}

// TestListDropsVersionsOfAnotherMajor checks that a list keeps only the
// versions its module path can have: a v2 or later of a path without a
// /vN suffix only as +incompatible, and of a /v2 path only v2, never
// +incompatible, as the go command has it. A broken
// proxy's "v2.0.0" in the list of a v1 path would otherwise become the
// path's newest version, one that no .info can be given for.
func TestListDropsVersionsOfAnotherMajor(t *testing.T) {
	files := map[string]string{
		"example.com/m/@v/list":    "v1.0.0\nv2.0.0\nv3.0.0+incompatible\nv2.1.0-pre\n",
		"example.com/m/v2/@v/list": "v1.0.0\nv2.0.0\nv3.0.0\nv2.0.1+incompatible\n",
	}
	p := newFakeProxy(t, serveFiles(files))
	c := newTestClient(t, p.URL, nil)
	for path, want := range map[string][]string{
		"example.com/m":    {"v1.0.0", "v3.0.0+incompatible"},
		"example.com/m/v2": {"v2.0.0"},
	} {
		list, _, err := c.List(context.Background(), path)
		if err != nil || !slices.Equal(list, want) {
			t.Errorf("List(%s) = %q, %v; want %q", path, list, err, want)
		}
	}
}
