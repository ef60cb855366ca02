package command

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"
	"golang.org/x/mod/sumdb/note"

	"agora/actions"
	"agora/auth"
	"agora/checksum"
	"agora/config"
	"agora/internal/testutil"
	"agora/metrics"
	"agora/models"
	"agora/upstream"
)

// countingTransport counts the requests it carries.
type countingTransport struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// TestSumDBUsesTheUpstreamOptions checks that the checksum database is
// reached as the upstream proxies are: with the transport it is given, the
// upstream proxies' keep-alive one, not with http.DefaultTransport, which
// keeps two idle connections per host (concurrent lookups would then open
// connections all the time); with Agora's User-Agent; and told to the
// metrics.
func TestSumDBUsesTheUpstreamOptions(t *testing.T) {
	_, vkey, err := note.GenerateKey(rand.Reader, "sum.test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		agents []string
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		if r.URL.Path == "/sumdb/sum.test.invalid/supported" {
			return
		}
		http.NotFound(w, r)
	}))
	defer proxy.Close()
	cfg := &config.Config{
		Data:     config.Data{DataDir: t.TempDir()},
		Upstream: []upstream.Proxy{{URL: proxy.URL}},
		SumDB:    vkey,
	}
	transport := &countingTransport{next: http.DefaultTransport}
	m := metrics.New()
	db, err := openSumDB(cfg, upstream.Options{Transport: transport, UserAgent: userAgent, Observer: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}

	_, err = db.Lookup(context.Background(), "example.com/m", "v1.0.0")
	if !errors.Is(err, checksum.ErrNotFound) || !strings.Contains(err.Error(), "example.com/m@v1.0.0") {
		t.Fatalf("Lookup = %v; want ErrNotFound from the proxy's 404", err)
	}
	// The probe of /supported and the lookup.
	if n := transport.n.Load(); n != 2 {
		t.Errorf("requests through the transport given = %d; want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(agents, []string{userAgent, userAgent}) {
		t.Errorf("User-Agents = %q; want %q", agents, userAgent)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`agora_upstream_fetches_total{kind="sumdb",result="ok",upstream="` + proxy.URL + `"} 1`,
		`agora_upstream_fetches_total{kind="sumdb",result="not_found",upstream="` + proxy.URL + `"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// sumdbRouteTests give AGORA_UPSTREAM and AGORA_RULES, naming the proxies
// $DEAD (refuses connections), $NOSUMDB (404 for everything), and $A and $B
// (proxy the checksum database, whose lookups answer 404), and the proxy
// that a lookup in the checksum database reaches; "" for none.
var sumdbRouteTests = []struct {
	name     string
	upstream string
	rules    string
	want     string
}{
	{name: "first proxy", upstream: "$A,$B", want: "A"},
	{name: "after a 404 for /supported", upstream: "$NOSUMDB,$A", want: "A"},
	{name: "not after a failure and ,", upstream: "$DEAD,$A", want: ""},
	{name: "after a failure and |", upstream: "$DEAD|$A", want: "A"},
	{name: "after a 404 and |", upstream: "$NOSUMDB|$A", want: "A"},
	// The rules' upstreams come after the default ones, each once.
	{name: "rules with the default off", upstream: "off", rules: "rsc.io/*  $A", want: "A"},
	{name: "the default first", upstream: "$B", rules: "rsc.io/*  $A", want: "B"},
	{name: "then the rules'", upstream: "$NOSUMDB", rules: "corp.example.com  none\nrsc.io/*  $NOSUMDB,$A", want: "A"},
	{name: "off, with rules to none only", upstream: "off", rules: "corp.example.com  none", want: ""},
	{name: "off", upstream: "off", want: ""},
}

// TestSumDBReachedThroughTheUpstreams checks which upstream proxy the
// checksum database is reached through: the first that proxies it, as the
// go command picks one from its GOPROXY.
func TestSumDBReachedThroughTheUpstreams(t *testing.T) {
	const name = "sum.test.invalid"
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range sumdbRouteTests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				asked = map[string][]string{} // proxy name -> URL paths
			)
			urls := map[string]string{}
			for _, p := range []string{"NOSUMDB", "A", "B"} {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					asked[p] = append(asked[p], r.URL.Path)
					mu.Unlock()
					if p != "NOSUMDB" && r.URL.Path == "/sumdb/"+name+"/supported" {
						return
					}
					http.NotFound(w, r)
				}))
				t.Cleanup(srv.Close)
				urls[p] = srv.URL
			}
			urls["DEAD"] = testutil.RefusedURL(t)
			expand := func(s string) string { return os.Expand(s, func(p string) string { return urls[p] }) }
			list, err := upstream.ParseList(expand(tt.upstream))
			if err != nil {
				t.Fatal(err)
			}
			rules, err := upstream.ParseRules(strings.NewReader(expand(tt.rules)), "rules")
			if err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{Data: config.Data{DataDir: t.TempDir()}, Upstream: list, Rules: rules, SumDB: vkey}
			db, err := openSumDB(cfg, upstream.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}

			_, err = db.Lookup(context.Background(), "example.com/m", "v1.0.0")
			mu.Lock()
			defer mu.Unlock()
			lookup := "/sumdb/" + name + "/lookup/example.com/m@v1.0.0"
			var reached []string
			for p, paths := range asked {
				if slices.Contains(paths, lookup) {
					reached = append(reached, p)
				}
				if n := strings.Count(strings.Join(paths, " "), "/supported"); n > 1 {
					t.Errorf("%s was asked for /supported %d times; want at most once", p, n)
				}
			}
			if tt.want == "" {
				if !errors.Is(err, checksum.ErrUnavailable) || len(reached) > 0 {
					t.Errorf("Lookup = %v, reaching %q; want ErrUnavailable, reaching no proxy", err, reached)
				}
				return
			}
			if !errors.Is(err, checksum.ErrNotFound) || !slices.Equal(reached, []string{tt.want}) {
				t.Errorf("Lookup = %v, reaching %q; want ErrNotFound from %s", err, reached, tt.want)
			}
		})
	}
}

// serveEnv points the configuration at a fresh data directory and a free
// port, and returns it loaded.
func serveEnv(t *testing.T) *config.Config {
	t.Helper()
	t.Setenv("AGORA_DATA_DIR", t.TempDir())
	t.Setenv("ADDR", "127.0.0.1:0")
	t.Setenv("AGORA_UPSTREAM", "off")
	t.Setenv("AGORA_SUMDB", "off")
	for _, k := range []string{"DATABASE_URL", "AGORA_STORAGE_DIR", "AGORA_RULES", "PORT", "GO_ENV", "AGORA_LOG_FORMAT", "AGORA_LOG_LEVEL"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serveAndStop runs serve on cfg, logging to h, until it listens, then
// stops it as a signal does, and returns its error.
func serveAndStop(cfg *config.Config, h slog.Handler) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	return serve(ctx, cfg, slog.New(&stopWhenListening{Handler: h, stop: cancel}))
}

// stopWhenListening is a log handler that calls stop once the server has
// said that it listens.
type stopWhenListening struct {
	slog.Handler
	stop func()
}

func (h *stopWhenListening) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo || h.Handler.Enabled(ctx, level)
}

func (h *stopWhenListening) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.Handler.Enabled(ctx, r.Level) {
		err = h.Handler.Handle(ctx, r)
	}
	if r.Message == "agora listening" {
		h.stop()
	}
	return err
}

func (h *stopWhenListening) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &stopWhenListening{h.Handler.WithAttrs(attrs), h.stop}
}

func (h *stopWhenListening) WithGroup(name string) slog.Handler {
	return &stopWhenListening{h.Handler.WithGroup(name), h.stop}
}

// TestServeWarnsUpstreamOff checks that a server whose environment gives
// it no upstream (a static binary on a host without GOPROXY or a go
// command) says so at start, with what to set: it used to say only
// upstream=off, and then serve 404s for every public module.
func TestServeWarnsUpstreamOff(t *testing.T) {
	serveEnv(t)
	t.Setenv("AGORA_UPSTREAM", "")
	os.Unsetenv("AGORA_UPSTREAM")
	t.Setenv("GOPROXY", "")
	t.Setenv("PATH", t.TempDir())
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := serveAndStop(cfg, slog.NewTextHandler(&log, nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "no go command") || !strings.Contains(log.String(), "AGORA_UPSTREAM") {
		t.Errorf("log lacks a warning that the upstream is off, and why:\n%s", log.String())
	}
}

// TestServeWarnsReservedUser checks that a server warns of a user named
// as the command line acts, which builds before the name was reserved let
// anyone create, and that owns every imported version.
func TestServeWarnsReservedUser(t *testing.T) {
	cfg := serveEnv(t)
	serveOnce := func() string {
		var log bytes.Buffer
		if err := serveAndStop(cfg, slog.NewTextHandler(&log, nil)); err != nil {
			t.Fatal(err)
		}
		return log.String()
	}
	if log := serveOnce(); strings.Contains(log, "a user is named") {
		t.Fatalf("warned of a reserved user with none:\n%s", log)
	}
	conn, err := models.Connect(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = conn.RawQuery("INSERT INTO users (name, role, created_at, updated_at) VALUES (?, ?, ?, ?)", cliActor, "publisher", now, now).Exec()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if log := serveOnce(); !strings.Contains(log, "level=WARN msg=\"a user is named cli") {
		t.Errorf("no warning of a user named %s:\n%s", cliActor, log)
	}
}

// TestRedactURL checks that what Agora prints of DATABASE_URL, at start and
// in errors, has none of its passwords: PostgreSQL's drivers take one from
// the query (?password=) as well as from the user information.
func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"postgres://agora:s3cret@db.example:5432/agora?sslmode=require", "postgres://agora:xxxxx@db.example:5432/agora?sslmode=require"},
		{"postgres://agora@db.example/agora?sslmode=require&password=s3cret", "postgres://agora@db.example/agora?sslmode=require&password=xxxxx"},
		{"postgres://db.example/agora?password=s3cret&user=agora", "postgres://db.example/agora?password=xxxxx&user=agora"},
		{"postgres://agora@db.example/agora?sslkey=%2Fetc%2Fk&sslpassword=s3cret", "postgres://agora@db.example/agora?sslkey=%2Fetc%2Fk&sslpassword=xxxxx"},
		{"postgres://agora@db.example/agora?pass%77ord=s3cret", "postgres://agora@db.example/agora?pass%77ord=xxxxx"},
		{"sqlite3:///var/lib/agora/agora.db?_busy_timeout=5000", "sqlite3:///var/lib/agora/agora.db?_busy_timeout=5000"},
	} {
		got := redactURL(tt.url)
		if got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.url, got, tt.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q shows the password", tt.url, got)
		}
	}
}

// TestInFlight checks that the requests being served are named, the
// longest running first, and waited for, also when one starts while the
// wait is under way (which a sync.WaitGroup forbids).
func TestInFlight(t *testing.T) {
	var f inFlight
	release := map[string]chan struct{}{} // by path, not written once serving
	for _, path := range []string{"/api/v1/modules/example.com/m/@v/v1.0.0.zip", "/example.com/m/@v/v1.0.0.zip", "/example.com/m/@v/list"} {
		release[path] = make(chan struct{})
	}
	started := make(chan struct{})
	h := f.track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release[r.URL.Path]
	}))
	serveOne := func(method, path string) {
		go h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
		<-started
	}
	serveOne(http.MethodPut, "/api/v1/modules/example.com/m/@v/v1.0.0.zip")
	serveOne(http.MethodGet, "/example.com/m/@v/v1.0.0.zip")
	var got []string
	for _, r := range f.running() {
		got = append(got, r.method+" "+r.path)
	}
	if want := []string{"PUT /api/v1/modules/example.com/m/@v/v1.0.0.zip", "GET /example.com/m/@v/v1.0.0.zip"}; !slices.Equal(got, want) {
		t.Errorf("running = %q; want %q", got, want)
	}

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if f.Wait(expired) {
		t.Error("wait reported no request running with two running")
	}
	waited := make(chan bool)
	go func() { waited <- f.Wait(context.Background()) }()
	close(release["/api/v1/modules/example.com/m/@v/v1.0.0.zip"])
	serveOne(http.MethodGet, "/example.com/m/@v/list")
	close(release["/example.com/m/@v/v1.0.0.zip"])
	select {
	case <-waited:
		t.Fatal("wait returned with a request running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release["/example.com/m/@v/list"])
	if !<-waited {
		t.Error("wait = false; want true once every request ended")
	}
	if n := len(f.running()); n != 0 {
		t.Errorf("%d requests running after they all ended", n)
	}
}

// setShutdownAllowance makes shutdownAllowance d until t ends. Call it
// before the test starts a server.
func setShutdownAllowance(t *testing.T, d time.Duration) {
	old := shutdownAllowance
	shutdownAllowance = d
	t.Cleanup(func() { shutdownAllowance = old })
}

// wrapServerHandler has serve serve wrap(the handler it builds) until t
// ends. Call it before the test starts a server.
func wrapServerHandler(t *testing.T, wrap func(http.Handler) http.Handler) {
	old := serverHandler
	serverHandler = func(d *actions.Deps) (http.Handler, error) {
		h, err := old(d)
		if err != nil {
			return nil, err
		}
		return wrap(h), nil
	}
	t.Cleanup(func() { serverHandler = old })
}

// hookedLog is a log handler that calls hook with each record it handles.
type hookedLog struct {
	slog.Handler
	hook func(slog.Record)
}

func (h *hookedLog) Handle(ctx context.Context, r slog.Record) error {
	h.hook(r)
	return h.Handler.Handle(ctx, r)
}

func (h *hookedLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &hookedLog{h.Handler.WithAttrs(attrs), h.hook}
}

func (h *hookedLog) WithGroup(name string) slog.Handler {
	return &hookedLog{h.Handler.WithGroup(name), h.hook}
}

// TestShutdownEndsWithinItsAllowance checks that what a shutdown does once
// AGORA_SHUTDOWN_TIMEOUT has run out (wait for the handlers of the
// requests it cut off, for the fetches it abandoned, and record tokens'
// last uses) ends within shutdownAllowance in all, whatever hangs, and
// that recording the uses still gets its share: each step used to wait
// for as long as it was given on its own, 25 s in all, which a
// supervisor's kill timeout had to allow for. Here a handler ignores its
// cancellation for good, a fetch hangs on its upstream until abandoned,
// and the database stays locked, so that a token's use cannot be
// recorded, until the fetch is abandoned, the step before the recording.
func TestShutdownEndsWithinItsAllowance(t *testing.T) {
	const (
		timeout   = 500 * time.Millisecond
		allowance = 3 * time.Second
		slack     = 500 * time.Millisecond
	)
	setShutdownAllowance(t, allowance)
	released := make(chan struct{}) // the hung handler and upstream, at the end
	fetching := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case fetching <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-released:
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(released) }) // before up.Close waits for its handlers
	hanging := make(chan struct{}, 1)
	wrapServerHandler(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/test/hang" {
				h.ServeHTTP(w, r)
				return
			}
			select {
			case hanging <- struct{}{}:
			default:
			}
			<-released // not r.Context()
		})
	})
	cfg := serveEnv(t)
	if err := serveAndStop(cfg, slog.DiscardHandler); err != nil { // makes the database
		t.Fatal(err)
	}
	conn, err := models.Connect(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := models.CreateUser(ctx, conn, cliActor, "alice", auth.RolePublisher, ""); err != nil {
		t.Fatal(err)
	}
	token, _, err := models.CreateToken(ctx, conn, cliActor, "alice", "ci", auth.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}

	t.Setenv("AGORA_UPSTREAM", up.URL)
	if cfg, err = config.Load(); err != nil {
		t.Fatal(err)
	}
	cfg.ShutdownTimeout = timeout
	var (
		log    testutil.Buffer
		url    = make(chan string, 1)
		locked *pop.Connection // the database's write lock, held by the test
		unlock sync.Once
	)
	release := func() {
		unlock.Do(func() {
			if locked != nil {
				locked.TX.Rollback()
			}
		})
	}
	defer release()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	h := &hookedLog{slog.NewTextHandler(&log, nil), func(r slog.Record) {
		switch r.Message {
		case "agora listening":
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "url" {
					url <- a.Value.String()
				}
				return true
			})
		case "shutdown: abandoned fetches":
			release()
		}
	}}
	served := make(chan error, 1)
	go func() { served <- serve(sctx, cfg, slog.New(h)) }()
	var base string
	select {
	case base = <-url:
	case err := <-served:
		t.Fatalf("serve = %v before it listened", err)
	}
	if locked, err = conn.NewTransaction(); err != nil { // BEGIN IMMEDIATE
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/whoami: status %d, want 200", resp.StatusCode)
	}
	for _, path := range []string{"/test/hang", "/example.com/m/@v/v1.0.0.info"} {
		go func() {
			if resp, err := http.Get(base + path); err == nil {
				resp.Body.Close()
			}
		}()
	}
	for _, started := range []chan struct{}{hanging, fetching} {
		select {
		case <-started:
		case <-time.After(time.Minute):
			t.Fatalf("the hanging request and the fetch did not both start\n%s", log.String())
		}
	}

	stopped := time.Now()
	stop()
	var took time.Duration
	select {
	case err = <-served:
		took = time.Since(stopped)
	case <-time.After(time.Minute):
		t.Fatalf("serve still running a minute after it was stopped\n%s", log.String())
	}
	if limit := timeout + allowance + slack; took > limit {
		t.Errorf("serve returned %v after it was stopped; want at most %v (timeout %v + allowance %v + %v)", took, limit, timeout, allowance, slack)
	}
	if err == nil || !strings.Contains(err.Error(), "requests still running after 500ms were cut off") {
		t.Errorf("serve = %v; want requests cut off", err)
	}
	for _, want := range []string{
		`level=WARN msg="shutdown: cut off a request" method=GET path=/test/hang`,
		`level=ERROR msg="shutdown: a request cut off did not end" method=GET path=/test/hang waited=`,
		`level=WARN msg="shutdown: abandoned fetches" timeout=500ms err="still running: example.com/m@v1.0.0.info`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	toks, err := models.Tokens(ctx, conn, "alice")
	if err != nil || len(toks) != 1 || toks[0].LastUsedAt == nil {
		t.Errorf("tokens after serve returned: %+v, %v; want one, its use recorded\n%s", toks, err, log.String())
	}
}

// TestShutdownDeadline checks how long the steps of a shutdown may wait:
// those before recording tokens' last uses until tokenFlushReserve before
// the deadline, the recording until the deadline, but never less than
// tokenFlushReserve, nor more than shutdownAllowance (as before the
// shutdown, or when it ended within its timeout).
func TestShutdownDeadline(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name           string
		deadline       shutdownDeadline
		step, lastStep time.Time // zero: done at once
	}{
		{"not shutting down", shutdownDeadline{}, time.Time{}, now.Add(shutdownAllowance)},
		{"within the timeout", shutdownDeadline{now.Add(30*time.Second + shutdownAllowance)},
			now.Add(30*time.Second + shutdownAllowance - tokenFlushReserve), now.Add(shutdownAllowance)},
		{"after the timeout", shutdownDeadline{now.Add(5 * time.Second)}, now.Add(3 * time.Second), now.Add(5 * time.Second)},
		{"allowance used up", shutdownDeadline{now.Add(time.Second)}, time.Time{}, now.Add(tokenFlushReserve)},
		{"deadline passed", shutdownDeadline{now.Add(-time.Second)}, time.Time{}, now.Add(tokenFlushReserve)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			check := func(step string, ctx context.Context, cancel context.CancelFunc, want time.Time) {
				t.Helper()
				defer cancel()
				at, _ := ctx.Deadline()
				if want.IsZero() {
					if ctx.Err() == nil {
						t.Errorf("%s: done at %v; want done at once", step, at.Sub(now))
					}
					return
				}
				if d := at.Sub(want); d < 0 || d > time.Second {
					t.Errorf("%s: done %v from now; want %v", step, at.Sub(now), want.Sub(now))
				}
			}
			ctx, cancel := tt.deadline.step()
			check("step", ctx, cancel, tt.step)
			ctx, cancel = tt.deadline.lastStep()
			check("lastStep", ctx, cancel, tt.lastStep)
		})
	}
}
