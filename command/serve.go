package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobuffalo/pop/v6"
	"github.com/spf13/cobra"

	"agora/actions"
	"agora/checksum"
	"agora/config"
	"agora/cork"
	"agora/internal/running"
	"agora/internal/stopsignal"
	"agora/metrics"
	"agora/models"
	"agora/modproxy"
	"agora/storage"
	"agora/upstream"
)

func newServe() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Serve the module proxy, the API and the site (the default)",
		Args:  arguments(),
		RunE:  runServe,
	}
}

func runServe(cmd *cobra.Command, _ []string) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := newLogger(cmd.ErrOrStderr(), cfg)
	// What logs without a logger of its own (the writer of tokens' last
	// uses, package log) goes to the same place, in the same format.
	slog.SetDefault(log)
	// The first signal stops start-up, or starts a graceful shutdown; a
	// second one ends the process at once, instead of waiting out
	// AGORA_SHUTDOWN_TIMEOUT.
	ctx, stop := stopsignal.NotifyContext(cmd.Context())
	defer stop()
	return serve(ctx, cfg, log)
}

// newLogger returns the server's logger, writing to w in the format of
// AGORA_LOG_FORMAT what is at AGORA_LOG_LEVEL or above.
func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the server until ctx is done, then shuts down gracefully:
// /readyz answers 503 at once; the server goes on serving for
// cfg.ShutdownDelay, then accepts no more connections; in-flight requests,
// then the fetches they started, get cfg.ShutdownTimeout to finish; what
// is cut off after that is logged, an upload cut off is rolled back by the
// registry (nothing half-written), and a fetch abandoned leaves at most a
// file in tmp/, which the next start clears. What follows the timeout
// takes shutdownAllowance at most (see shutdownDeadline). Done before the
// server listens, ctx stops start-up, which waits on nothing more (a
// database that does not answer, another process's lock on the
// migrations): serve then returns an error that wraps ctx's cause.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// Nothing is removed before this server knows that no other serves
	// from its data directory and that its port is free: a second server
	// started by mistake must not clear the first one's tmp/.
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ADDR: %w", err)
	}
	defer ln.Close()
	// Only this server uses tmp/ (imports stage elsewhere): what is in it
	// is what a crash left behind.
	if err := os.RemoveAll(cfg.TempDir()); err != nil {
		return fmt.Errorf("clearing %s: %w", cfg.TempDir(), err)
	}
	if err := os.MkdirAll(cfg.TempDir(), 0o700); err != nil {
		return fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	disk, err := openStorage(&cfg.Data, log)
	if err != nil {
		return err
	}
	conn, err := openDataDB(ctx, &cfg.Data, nil) // a server makes its database on its first start
	if err != nil {
		return startFailed(ctx, err)
	}
	defer conn.Close()
	// Set once the shutdown starts; it bounds the last step too.
	var deadline shutdownDeadline
	defer func() { // before the close: record the last uses of tokens
		fctx, cancel := deadline.lastStep()
		defer cancel()
		if err := models.FlushTokenUses(fctx, conn); err != nil {
			log.Warn("shutting down", "err", err)
		}
	}()
	warnReservedUser(ctx, conn, log)
	m := metrics.New()
	// The upstream proxies and the checksum database (reached through
	// their /sumdb/) share one keep-alive transport, so that concurrent
	// fetches and lookups reuse their connections, and one Health, so
	// that a proxy that stopped answering is not waited for by either.
	// Every upstream request names this process in its Via header, so
	// that one that comes back (AGORA_UPSTREAM leading back here) is
	// answered at once as a loop, not left to wait on itself.
	via := upstream.NewViaName()
	up := upstream.Options{
		Transport: upstream.WithVia(upstream.NewTransport(upstream.Options{}), via),
		Health:    upstream.NewHealth(log, m),
		Observer:  m,
		UserAgent: userAgent,
		Logger:    log,
	}
	sumdb, err := openSumDB(cfg, up)
	if err != nil {
		return err
	}
	meta := models.NewRegistry(conn)
	registry := newCachingRegistry(cfg, meta, disk, sumdb, m, up)
	if conn.Dialect.Name() == "postgres" {
		// Other nodes sharing the database change records this one
		// holds in memory; they announce it, and this node listens
		// before it serves anything.
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		changes, err := meta.ListenChanges(lctx, cfg.DatabaseURL, log)
		cancel()
		if err != nil {
			return startFailed(ctx, err)
		}
		// Until serve returns, not until the signal: requests served
		// during the shutdown use what memory holds too.
		lctx, stopListening := context.WithCancel(context.WithoutCancel(ctx))
		defer stopListening()
		go changes.Run(lctx, registry.Invalidate, registry.InvalidateAll)
	}
	var shuttingDown atomic.Bool
	handler, err := serverHandler(&actions.Deps{Config: cfg, DB: conn, Registry: registry, Logger: log, SumDB: sumdb, Metrics: m,
		ShuttingDown: shuttingDown.Load, Via: via})
	if err != nil {
		return err
	}

	if ctx.Err() != nil {
		return fmt.Errorf("start-up stopped: %w", context.Cause(ctx))
	}
	// Start-up (migrations, templates, routes) leaves garbage behind; give
	// its memory back now rather than whenever the scavenger gets to it.
	debug.FreeOSMemory()

	var inflight inFlight
	srv := &http.Server{
		Handler:           inflight.track(handler),
		ConnContext:       cork.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	attrs := []any{"url", "http://" + ln.Addr().String(), "version", version(), "env", cfg.Env,
		"storage", cfg.StorageDir, "database", redactURL(cfg.DatabaseURL),
		"upstream", upstreamDesc(cfg), "sumdb", cfg.SumDB}
	if len(cfg.Rules) > 0 {
		attrs = append(attrs, "routing_rules", len(cfg.Rules)) // AGORA_RULES
	}
	if cfg.UpstreamOff != "" {
		log.Warn("no upstream: public modules are not fetched, only what is stored is served; "+
			"set AGORA_UPSTREAM to a GOPROXY-style list of proxies (or to off, to say so)", "reason", cfg.UpstreamOff)
	}
	log.Info("agora listening", attrs...)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shuttingDown.Store(true) // /readyz answers 503
	// Whose it was: a supervisor's SIGTERM, a Ctrl-C.
	cause := slog.String("cause", context.Cause(ctx).Error())
	if cfg.ShutdownDelay > 0 {
		// Serve on while load balancers learn that this server is going
		// (Kubernetes routes to a pod for a few seconds after it sent
		// SIGTERM): refused connections would be errors for their
		// clients. Responses close their connections meanwhile, and idle
		// ones are closed, so that clients connect again, elsewhere.
		log.Info("shutting down: serving on, /readyz answering 503, before refusing connections", "delay", cfg.ShutdownDelay, cause)
		srv.SetKeepAlivesEnabled(false)
		select {
		case <-time.After(cfg.ShutdownDelay):
		case err := <-served:
			return err
		}
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout, cause)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	deadline = newShutdownDeadline(cfg.ShutdownTimeout)
	if err := srv.Shutdown(sctx); err != nil {
		// Cut off what is still running, saying what it is: each
		// request's own log line tells only what its handler answered,
		// to a client that no longer hears it. An upload whose body stops
		// arriving fails and rolls back; wait for that before exiting, so
		// that nothing is left half-written.
		now := time.Now()
		for _, r := range inflight.running() {
			log.Warn("shutdown: cut off a request", "method", r.method, "path", r.path, "running", now.Sub(r.start).Round(time.Millisecond))
		}
		srv.Close()
		wctx, cancel := deadline.step()
		if !inflight.Wait(wctx) {
			waited := time.Since(now).Round(time.Millisecond)
			for _, r := range inflight.running() {
				log.Error("shutdown: a request cut off did not end", "method", r.method, "path", r.path, "waited", waited)
			}
		}
		cancel()
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		if err := registry.Wait(expired); err != nil {
			log.Warn("shutdown: abandoned fetches", "timeout", cfg.ShutdownTimeout, "err", err)
			abandon(registry, deadline)
		}
		return fmt.Errorf("shutdown: requests still running after %v were cut off", cfg.ShutdownTimeout)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Fetches and lists outlive the requests that started them; they
	// need the database, closed when serve returns.
	if err := registry.Wait(sctx); err != nil {
		log.Warn("shutdown: abandoned fetches", "timeout", cfg.ShutdownTimeout, "err", err)
		abandon(registry, deadline)
		return fmt.Errorf("shutdown: fetches still running after %v were abandoned", cfg.ShutdownTimeout)
	}
	log.Info("stopped")
	return nil
}

// startFailed returns err, the failure of a step of start-up, saying
// first, if it is so, that ctx ended, which stopped the step.
func startFailed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("start-up stopped: %w: %w", context.Cause(ctx), err)
}

// abandon cancels the fetches that outlived the shutdown's time, and gives
// them until deadline allows (see shutdownDeadline.step) to end, and remove
// their temporary files, while the database is still open.
func abandon(registry *modproxy.Service, deadline shutdownDeadline) {
	registry.Abandon()
	ctx, cancel := deadline.step()
	defer cancel()
	registry.Wait(ctx)
}

// warnReservedUser warns when a user holds the name the command line acts
// as, which builds before it was reserved let anyone create: that user owns
// every version agora import brought in, and may delete them. There is no
// command to rename a user; revoking its tokens takes the rights away.
func warnReservedUser(ctx context.Context, conn *pop.Connection, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if u, err := models.UserByName(ctx, conn, cliActor); err == nil {
		log.Warn("a user is named "+cliActor+", the name the command line acts as: it owns every version agora import brought in, and may delete them; revoke its tokens (agora token list "+cliActor+", agora token revoke ID)",
			"user_id", u.ID)
	}
}

// serverHandler builds the handler that serve serves: actions.Handler,
// which a test wraps.
var serverHandler = actions.Handler

// shutdownAllowance is how long a shutdown may go on once
// AGORA_SHUTDOWN_TIMEOUT has run out, all its steps together: waiting for
// the handlers of the requests it cut off to return (an upload to roll
// back), for the fetches it abandoned to end (and remove their temporary
// files), and recording tokens' last uses before the database is closed.
// Whatever hangs, the process then ends within AGORA_SHUTDOWN_DELAY +
// AGORA_SHUTDOWN_TIMEOUT + shutdownAllowance, the kill timeout README
// tells operators to give their supervisor. 10 s is ample for these steps
// when nothing hangs (a handler returns once its connection is closed, a
// rollback, a file removed, a transaction of a few rows), and short beside
// the timeout, which is where requests and fetches get their time. A
// test shortens it.
var shutdownAllowance = 10 * time.Second

// tokenFlushReserve is the part of shutdownAllowance kept for recording
// tokens' last uses, the last step: the steps before it end that long
// before the shutdown's deadline, so that a handler that never returns
// does not leave the recording, one quick transaction, without time.
// What it fails to record is only a token's last use shown older.
const tokenFlushReserve = 2 * time.Second

// shutdownDeadline is when a shutdown must have ended: shutdownAllowance
// after AGORA_SHUTDOWN_TIMEOUT runs out. Each step after the timeout waits
// at most until then, so that the steps share the allowance rather than
// each having a wait of its own. The zero shutdownDeadline is that of a
// server not shutting down (start-up failed, or the listener did).
type shutdownDeadline struct{ at time.Time }

// newShutdownDeadline returns the deadline of a shutdown whose requests
// and fetches get timeout from now.
func newShutdownDeadline(timeout time.Duration) shutdownDeadline {
	return shutdownDeadline{time.Now().Add(timeout + shutdownAllowance)}
}

// step returns the context of a step that comes before recording tokens'
// last uses: done tokenFlushReserve before the deadline, or at once if
// that has passed.
func (d shutdownDeadline) step() (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), d.at.Add(-tokenFlushReserve))
}

// lastStep returns the context of recording tokens' last uses: done at the
// deadline, but no sooner than tokenFlushReserve from now, however long the
// steps before took (they end that long before the deadline, so the floor
// moves it by no more than what they did after their wait). It waits no
// more than shutdownAllowance either, as before: when the shutdown has not
// started, or everything ended within the timeout, the deadline is
// further away.
func (d shutdownDeadline) lastStep() (context.Context, context.CancelFunc) {
	if d.at.IsZero() {
		return context.WithTimeout(context.Background(), shutdownAllowance)
	}
	now, at := time.Now(), d.at
	if floor := now.Add(tokenFlushReserve); at.Before(floor) {
		at = floor
	}
	if ceiling := now.Add(shutdownAllowance); at.After(ceiling) {
		at = ceiling
	}
	return context.WithDeadline(context.Background(), at)
}

// inFlight tracks the requests being served, so that a shutdown that cuts
// them off can name them and wait for their handlers to return.
type inFlight struct{ running.Set[*servedRequest] }

// servedRequest is a request being served.
type servedRequest struct {
	method, path string // the path as it came: Buffalo rewrites r.URL.Path
	start        time.Time
}

// track returns next, counting its requests in f.
func (f *inFlight) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := &servedRequest{method: r.Method, path: r.URL.Path, start: time.Now()}
		f.Start(sr)
		defer f.Done(sr)
		next.ServeHTTP(w, r)
	})
}

// running returns the requests being served, the longest running first.
func (f *inFlight) running() []servedRequest {
	list := make([]servedRequest, 0)
	for _, r := range f.Keys() {
		list = append(list, *r)
	}
	slices.SortFunc(list, func(a, b servedRequest) int { return a.start.Compare(b.start) })
	return list
}

// staleTemp is how long a temporary file in storage must have gone
// unmodified before start-up removes it as the leftover of an interrupted
// write. Other nodes sharing the storage directory may be writing theirs.
const staleTemp = 10 * time.Minute

// openStorage opens the blob store, removing what interrupted writes left.
func openStorage(cfg *config.Data, log *slog.Logger) (*storage.Disk, error) {
	disk, err := storage.NewDisk(cfg.StorageDir)
	if err != nil {
		return nil, fmt.Errorf("AGORA_STORAGE_DIR: %w", err)
	}
	if n, err := disk.RemoveTemp(staleTemp); err != nil {
		return nil, err
	} else if n > 0 {
		log.Warn("removed temporary files an interrupted write left in storage", "count", n)
	}
	return disk, nil
}

// newRegistry wires the registry of a command (import, tasks) to the
// database and the blob store, staging zips apart from a server's.
func newRegistry(cfg *config.Data, conn *pop.Connection, disk *storage.Disk, log *slog.Logger) *modproxy.Service {
	return modproxy.New(modproxy.Config{
		Metadata: models.NewRegistry(conn),
		Blobs:    disk,
		TempDir:  cfg.ImportTempDir(),
		Logger:   log,
	})
}

// newCachingRegistry wires the registry as a pull-through cache: public
// modules are fetched with up from the upstream that cfg routes their path
// to, verified against the checksum database, and stored; m counts, and
// up's Logger logs.
func newCachingRegistry(cfg *config.Config, meta *models.Registry, disk *storage.Disk, sumdb *checksum.DB, m *metrics.Metrics, up upstream.Options) *modproxy.Service {
	router := upstream.NewRouter(cfg.Upstream, cfg.Rules, up)
	mc := modproxy.Config{
		Metadata: meta,
		Blobs:    disk,
		TempDir:  cfg.TempDir(),
		Upstream: func(path string) modproxy.Upstream {
			if c := router.For(path); c != nil {
				return c
			}
			return nil
		},
		ListTTL:  cfg.ListTTL,
		Observer: m,
		Logger:   up.Logger,
	}
	if sumdb != nil {
		mc.Checker = sumdb
	}
	return modproxy.New(mc)
}

// openSumDB opens the checksum database that fetched versions are verified
// against and that /sumdb/ proxies, reached through the upstream proxies'
// /sumdb/ endpoints (see sumdbProxies) with up's Transport and Health; nil
// when AGORA_SUMDB=off. It is offline only when no path is fetched from
// any upstream.
func openSumDB(cfg *config.Config, up upstream.Options) (*checksum.DB, error) {
	db, err := checksum.ParseDB(cfg.SumDB)
	if err != nil {
		return nil, fmt.Errorf("config: AGORA_SUMDB=%q: %w", cfg.SumDB, err)
	}
	if db.Name == "" {
		return nil, nil
	}
	proxies := sumdbProxies(cfg)
	sumdb, err := checksum.New(checksum.Options{
		Name:      db.Name,
		Key:       db.Key,
		Direct:    db.URL,
		Proxies:   proxies,
		CacheDir:  filepath.Join(cfg.DataDir, "sumdb"),
		NoSumDB:   cfg.NoSumDB,
		Offline:   len(proxies) == 0,
		Transport: up.Transport,
		Health:    up.Health,
		Observer:  up.Observer,
		UserAgent: up.UserAgent,
		Logger:    up.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("config: AGORA_SUMDB: %w", err)
	}
	return sumdb, nil
}

// sumdbProxies returns the proxies the checksum database is reached
// through: the default upstreams (AGORA_UPSTREAM), then those of the
// routing rules (AGORA_RULES) in their order, each proxy once. The versions
// fetched through any of them are verified, so with the default list off
// and rules that route paths to an upstream, the database is still
// reached. Rules that route to none add nothing.
func sumdbProxies(cfg *config.Config) []upstream.Proxy {
	var list []upstream.Proxy
	seen := map[string]bool{}
	add := func(proxies []upstream.Proxy) {
		for _, p := range proxies {
			if !seen[p.URL] {
				seen[p.URL] = true
				list = append(list, p)
			}
		}
	}
	add(cfg.Upstream)
	for _, rule := range cfg.Rules {
		if !rule.None {
			add(rule.Proxies)
		}
	}
	return list
}

// userAgent is what Agora calls itself to upstream proxies.
const userAgent = "agora (Go module proxy)"

// upstreamDesc describes the default upstream list for the start-up line.
func upstreamDesc(cfg *config.Config) string {
	if len(cfg.Upstream) == 0 {
		return "off"
	}
	return upstream.String(cfg.Upstream)
}

// redactURL hides a database URL's passwords: the user's, and those of
// the query (password, sslpassword), where PostgreSQL's drivers take any
// connection parameter from.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			k, _, _ := strings.Cut(p, "=")
			if key, err := url.QueryUnescape(k); err == nil && (key == "password" || key == "sslpassword") {
				params[i] = k + "=xxxxx"
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	return u.Redacted()
}
