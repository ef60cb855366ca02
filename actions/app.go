// Package actions is Agora's HTTP layer and nothing else: it parses
// requests, calls the registry (package modproxy) or the account functions
// (package models), and renders. app.go is the route table.
package actions

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gobuffalo/buffalo"
	"github.com/gobuffalo/pop/v6"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"agora/checksum"
	"agora/config"
	"agora/metrics"
	"agora/modproxy"
	"agora/upstream"
)

// Deps is what the handlers need. Every field is required but SumDB and
// Metrics.
type Deps struct {
	Config   *config.Config
	DB       *pop.Connection
	Registry *modproxy.Service
	Logger   *slog.Logger
	// SumDB is the checksum database proxied under /sumdb/; nil answers
	// 404 there, so that the go command goes to the database itself.
	SumDB *checksum.DB
	// Metrics counts requests and serves /metrics; nil counts nothing.
	Metrics *metrics.Metrics
	// ShuttingDown reports whether the server is shutting down: /readyz
	// then answers 503, so that a load balancer sends it no more requests.
	// Nil: never.
	ShuttingDown func() bool
	// Via is the name this process gives itself in the Via header of its
	// upstream requests (upstream.WithVia). A request whose Via names it
	// came back: it is answered 508 Loop Detected. Empty: not checked.
	Via string
}

// Handler returns Agora's whole HTTP surface: the download protocol, served
// by a plain handler on the hot path, and everything else by the Buffalo app.
// Every request is logged, without headers or query strings, so tokens never
// reach the log. A request's body has a read deadline (see bodyStall).
func Handler(d *Deps) (http.Handler, error) {
	app, err := App(d)
	if err != nil {
		return nil, err
	}
	proxy := newProxyHandler(d)
	var canRead func(*http.Request) bool // nil: anyone may read
	if d.Config.ReadAuth == config.ReadToken {
		canRead = d.canRead
	}
	sumdb := newSumDBHandler(d.SumDB, d.sumdbPrivate, canRead, d.Metrics, d.Logger)
	var metricsHandler http.Handler = http.NotFoundHandler()
	if d.Metrics != nil {
		metricsHandler = d.Metrics.Handler()
	}
	return logRequests(d.Logger, d.Metrics, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = guardBody(w, r)
		switch {
		case d.Via != "" && upstream.CameBack(r.Header, d.Via):
			d.loopDetected(w, r)
		case isPublish(r):
			d.publishVersion(w, r)
		case strings.HasPrefix(r.URL.Path, "/sumdb/"):
			sumdb.ServeHTTP(w, r)
		case r.URL.Path == "/metrics":
			metricsHandler.ServeHTTP(w, r)
		case isProxyPath(r.URL.Path) && !strings.HasPrefix(r.URL.Path, "/api/"):
			proxy.ServeHTTP(w, r)
		default:
			app.ServeHTTP(w, limitBody(w, r, maxSiteBody))
		}
	})), nil
}

// loopDetected answers a request that this process sent upstream itself,
// and that came back.
func (d *Deps) loopDetected(w http.ResponseWriter, r *http.Request) {
	const msg = "loop detected: this request came back to the Agora that sent it upstream: AGORA_UPSTREAM (or AGORA_RULES), or a proxy it names, leads back to this Agora"
	d.Logger.Error("an upstream request came back: AGORA_UPSTREAM leads back to this Agora; set it to the proxies it should fetch from", "path", r.URL.Path)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusLoopDetected)
	io.WriteString(w, msg+"\n")
}

// App returns the Buffalo application: the REST API, health checks and the
// site. Its route table:
//
//	GET    /                                      home page
//	GET    /healthz                               process is up (HEAD too)
//	GET    /readyz                                database, storage and tmp usable, not shutting down (HEAD too; see readiness)
//	GET    /api/v1/whoami                         the caller's identity
//	GET    /api/v1/modules?q=&limit=&cursor=      modules, by path
//	GET    /api/v1/modules/{module}               a module's versions
//	DELETE /api/v1/modules/{module}[/@v/{v}]      delete, block or purge
//	GET    /api/v1/audit?...                      the audit log (admins)
//	GET    /assets/...                            CSS
//
// Some routes are not here but in Handler, in front of Buffalo: the download
// protocol (/{module}/@v/..., /{module}/@latest), the checksum-database
// proxy (/sumdb/{name}/...), publishing (PUT
// /api/v1/modules/{module}/@v/{v}.zip) and /metrics; see proxyHandler and
// publishVersion for why.
func App(d *Deps) (*buffalo.App, error) {
	secret, err := d.Config.SessionSecret()
	if err != nil {
		return nil, err
	}
	store := sessions.NewCookieStore([]byte(secret))
	store.Options.HttpOnly = true
	store.Options.Secure = d.Config.Production()
	store.Options.SameSite = http.SameSiteLaxMode

	app := buffalo.New(buffalo.Options{
		Env:          d.Config.Env,
		Addr:         d.Config.Addr,
		SessionName:  "_agora_session",
		SessionStore: lazySessions{store},
		WorkerOff:    true,
		// No POST is taken for the method a _method field names, as
		// Buffalo's default would: the API accepts basic auth, which
		// browsers send again by themselves, so any web site's form could
		// delete versions (a cross-site request forgery). The site has no
		// forms that need it.
		MethodOverride: func(http.ResponseWriter, *http.Request) {},
		// Requests are logged by Handler; Buffalo logs only its warnings,
		// and errors, to Agora's log.
		Logger: buffaloLogger{d.Logger.With("source", "buffalo")},
	})
	app.Middleware.Remove(buffalo.RequestLogger)
	app.Use(d.logPanics)

	ready := &readiness{d: d}
	app.GET("/", home)
	app.GET("/healthz", healthz)
	app.GET("/readyz", ready.serve)
	app.HEAD("/healthz", healthz) // monitors often ask with HEAD
	app.HEAD("/readyz", ready.serve)

	api := app.Group("/api/v1")
	api.Use(d.requireToken, d.refuseUnstorableQuery)
	api.GET("/whoami", d.whoami)
	api.GET("/modules", d.listModules)
	api.GET("/audit", d.listAudit)
	api.GET("/modules/{rest:.+}", d.showModule)
	api.DELETE("/modules/{rest:.+}", d.deleteTarget)

	app.ServeFiles("/assets", assetsFS())

	// Under /api/, unmatched routes and failures answer like every other
	// API error; elsewhere in plain text.
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusInternalServerError} {
		app.ErrorHandlers[status] = func(status int, err error, c buffalo.Context) error {
			if status == http.StatusMethodNotAllowed {
				c.Response().Header().Set("Allow", allowedMethods(app.Muxer(), c.Request()))
			}
			if !strings.HasPrefix(c.Request().URL.Path, "/api/") {
				return d.renderSiteStatus(c, status, err)
			}
			return d.renderAPIStatus(c, status, err)
		}
	}
	return app, nil
}

// logPanics logs the stack of a panic in a handler of Buffalo's routes,
// which Buffalo's PanicHandler, further out, answers with a 500 and logs
// (through the 500 handler) by the panic's value alone.
func (d *Deps) logPanics(next buffalo.Handler) buffalo.Handler {
	return func(c buffalo.Context) error {
		defer func() {
			if v := recover(); v != nil {
				req := c.Request()
				d.Logger.Error("panic", "method", req.Method, "path", req.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				panic(v)
			}
		}()
		return next(c)
	}
}

// renderSiteStatus answers a request outside the API that Buffalo failed
// (no route, no such method, a handler's unexpected error) in plain text,
// whatever GO_ENV says: Buffalo's development pages, and Agora runs in
// development unless told otherwise, list every route and show a
// failure's stack trace to whoever asks.
func (d *Deps) renderSiteStatus(c buffalo.Context, status int, err error) error {
	req := c.Request()
	path := req.URL.Path // with a slash that Buffalo added
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	msg := fmt.Sprintf("%s: %s %s", strings.ToLower(http.StatusText(status)), req.Method, path)
	if status == http.StatusInternalServerError {
		msg = errorMessage(d.Logger, req, status, err)
	}
	c.Response().Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.Response().WriteHeader(status)
	_, werr := io.WriteString(c.Response(), msg+"\n")
	return werr
}

// allowedMethods returns the methods, comma-separated, that r's path takes:
// those of the routes of router it matches, and PUT for an upload, which
// Handler serves in front of router (see isPublish). It is the Allow
// header of a 405.
func allowedMethods(router *mux.Router, r *http.Request) string {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = method
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil || isPublish(probe) {
			allow = append(allow, method)
		}
	}
	return strings.Join(allow, ", ")
}

// apiStatusCodes are the error codes of the statuses Buffalo itself answers.
var apiStatusCodes = map[int]string{
	http.StatusNotFound:            "not_found",
	http.StatusMethodNotAllowed:    "method_not_allowed",
	http.StatusInternalServerError: "internal",
}

// renderAPIStatus answers an API request that Buffalo failed: no route, no
// such method, or a handler's unexpected error.
func (d *Deps) renderAPIStatus(c buffalo.Context, status int, err error) error {
	req := c.Request()
	msg := fmt.Sprintf("no API endpoint %s %s", req.Method, strings.TrimSuffix(req.URL.Path, "/"))
	if status == http.StatusInternalServerError {
		msg = errorMessage(d.Logger, req, status, err)
	}
	c.Response().Header().Set("Content-Type", "application/json")
	c.Response().WriteHeader(status)
	return json.NewEncoder(c.Response()).Encode(apiError{Error: msg, Code: apiStatusCodes[status]})
}

// renderError renders err as the API's JSON error with the status the error
// table gives it.
func (d *Deps) renderError(c buffalo.Context, err error) error {
	status, body := newAPIError(d.Logger, c.Request(), err)
	return c.Render(status, r.JSON(body))
}

// writeError writes err as the API's JSON error, outside Buffalo.
func (d *Deps) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := newAPIError(d.Logger, r, err)
	writeJSON(w, status, body)
}

// writeJSON writes v as a JSON response, outside Buffalo.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// logRequests logs one line per request: method, path, status, bytes and
// duration, and counts it in m. A request whose handler panics is a 500,
// whatever it sent before: net/http logs the panic and cuts the response
// off (Buffalo's routes answer 500 themselves).
func logRequests(log *slog.Logger, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start, path := time.Now(), r.URL.Path // Buffalo rewrites r.URL.Path
		defer m.InFlight()()
		lw := &loggingWriter{ResponseWriter: w}
		returned := false
		defer func() {
			if !returned { // panicking: not recovered, so net/http still sees it
				logRequest(log, m, r, path, start, http.StatusInternalServerError, lw.bytes)
			}
		}()
		next.ServeHTTP(lw, r)
		returned = true
		if lw.status == 0 {
			lw.status = http.StatusOK
		}
		logRequest(log, m, r, path, start, lw.status, lw.bytes)
	})
}

// logRequest logs and counts a request for path, started at start, that
// ended with status after bytes of body.
func logRequest(log *slog.Logger, m *metrics.Metrics, r *http.Request, path string, start time.Time, status int, bytes int64) {
	end := time.Now()
	d := end.Sub(start)
	m.ObserveRequest(metrics.Route(path), r.Method, status, d, bytes)
	if h := log.Handler(); h.Enabled(r.Context(), slog.LevelInfo) {
		// The record is made here rather than by log.LogAttrs, which
		// would take the time again and walk the stack for a source
		// position that the log does not show: a tenth of the cost of a
		// cached download.
		rec := slog.NewRecord(end, slog.LevelInfo, "request", 0)
		rec.AddAttrs(slog.String("method", r.Method), slog.String("path", path),
			slog.Int("status", status), slog.Int64("bytes", bytes),
			slog.Duration("duration", d.Round(time.Microsecond)))
		h.Handle(r.Context(), rec)
	}
}

// loggingWriter records a response's status and size. It implements
// io.ReaderFrom by handing the reader to the connection's own ReadFrom, so
// that files still go out with sendfile.
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom implements io.ReaderFrom.
func (w *loggingWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
