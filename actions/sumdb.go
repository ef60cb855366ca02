package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"agora/checksum"
	"agora/metrics"
	"agora/upstream"
)

// sumdbHandler serves the checksum-database proxy protocol
// (https://go.dev/design/25530-sumdb#proxying-a-checksum-database):
//
//	GET /sumdb/{name}/supported                  200 when {name} is proxied
//	GET /sumdb/{name}/latest                     the latest signed tree head
//	GET /sumdb/{name}/lookup/{module}@{version}  a go.sum record
//	GET /sumdb/{name}/tile/{H}/{L}/{N}[.p/{W}]   a tile of the tree
//
// A 404 for /supported makes the go command go to the database itself, so
// every other name, and every path when no database is proxied
// (AGORA_SUMDB=off), is answered 404. Like proxyHandler, it is a plain
// http.Handler in front of the Buffalo app.
//
// A lookup of a private module's path is answered 404 without asking the
// database: it would leak the path to the database's operator, and the
// database cannot know a private module anyway. The go command asks only
// when its GONOSUMDB does not match the path, so the answer says to set
// it; not GOPRIVATE, which also sets GONOPROXY, so that the go command
// would no longer ask this proxy for the module at all.
//
// With AGORA_READ_AUTH=token it needs a token of read scope, as downloads
// do; the go command sends the same credentials to both.
type sumdbHandler struct {
	db      *checksum.DB             // nil: none proxied
	private privatePaths             // nil: no path is private
	canRead func(*http.Request) bool // nil: anyone may read
	metrics *metrics.Metrics
	log     *slog.Logger

	// The Cache-Control of lookups and tiles: private when canRead is set
	// (see cacheControl).
	lookupCache, tileCache string
}

// privatePaths says why path is private to this proxy, or "" if it is not.
type privatePaths func(ctx context.Context, path string) (reason string, err error)

// newSumDBHandler returns the handler of /sumdb/ for db, which may be nil.
func newSumDBHandler(db *checksum.DB, private privatePaths, canRead func(*http.Request) bool, m *metrics.Metrics, log *slog.Logger) http.Handler {
	return &sumdbHandler{
		db: db, private: private, canRead: canRead, metrics: m, log: log,
		lookupCache: cacheControl(canRead != nil, sumdbLookupCache),
		tileCache:   cacheControl(canRead != nil, immutable),
	}
}

// sumdbPrivate says why path is private to this proxy: a rule routes it to
// no upstream, AGORA_NOSUMDB matches it, or a version of it was published
// here and none was fetched from an upstream (see PublishedOnlyHere). It
// returns "" for a path that is not.
func (d *Deps) sumdbPrivate(ctx context.Context, path string) (string, error) {
	if i := upstream.FirstMatch(d.Config.Rules, path); i >= 0 && d.Config.Rules[i].None {
		rule := d.Config.Rules[i]
		return fmt.Sprintf("AGORA_RULES line %d (%s) fetches it from no upstream", rule.Line, rule.Pattern), nil
	}
	if d.SumDB != nil && !d.SumDB.Covers(path) {
		return "AGORA_NOSUMDB matches it", nil
	}
	published, err := d.Registry.PublishedOnlyHere(ctx, path)
	if err != nil || !published {
		return "", err
	}
	return "it is published here", nil
}

// Cache-Control of the answers: tiles never change (immutable); a lookup's
// record never does, though the tree head it carries ages; latest changes
// all the time. sumdbLookupCache follows "public" or "private" (see
// cacheControl).
const (
	sumdbLookupCache = "max-age=86400"
	sumdbLatestCache = "no-cache"
)

func (h *sumdbHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if h.canRead != nil && !h.canRead(r) {
		w.Header().Set("WWW-Authenticate", challenge)
		h.fail(w, http.StatusUnauthorized, readUnauthorized)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/sumdb/")
	if h.db == nil {
		h.fail(w, http.StatusNotFound, "not found: this proxy does not proxy a checksum database (AGORA_SUMDB=off)")
		return
	}
	rel, ok := strings.CutPrefix(rest, h.db.Name()+"/")
	if !ok {
		h.fail(w, http.StatusNotFound, "not found: this proxy proxies the checksum database "+h.db.Name()+" only")
		return
	}

	var kind, contentType, cache string
	switch {
	case rel == "supported":
		h.metrics.SumDBRequest(metrics.SumDBSupported, true, nil)
		w.Header().Set("Cache-Control", sumdbLatestCache)
		w.WriteHeader(http.StatusOK)
		return
	case rel == "latest":
		kind, contentType, cache = metrics.SumDBLatest, "text/plain; charset=utf-8", sumdbLatestCache
	case strings.HasPrefix(rel, "lookup/"):
		kind, contentType, cache = metrics.SumDBLookup, "text/plain; charset=utf-8", h.lookupCache
		if h.keptPrivate(w, r, rel) {
			return
		}
	case strings.HasPrefix(rel, "tile/"):
		// Hash tiles are binary, data tiles text, as sum.golang.org serves them.
		contentType = "application/octet-stream"
		if strings.HasPrefix(rel, "tile/8/data/") {
			contentType = "text/plain; charset=utf-8"
		}
		kind, cache = metrics.SumDBTile, h.tileCache
	default:
		h.fail(w, http.StatusNotFound, "not found: "+r.URL.Path)
		return
	}

	data, cached, err := h.db.Load(r.Context(), rel)
	h.metrics.SumDBRequest(kind, cached, err)
	if err != nil {
		status := sumdbStatus(err)
		msg := err.Error()
		if status == http.StatusInternalServerError {
			h.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
			msg = "internal error"
		}
		h.fail(w, status, strings.ToLower(statusText(status))+": "+msg)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", cache)
	// ServeContent handles HEAD and Range.
	serveContent(w, r, time.Time{}, bytes.NewReader(data))
}

// keptPrivate answers the lookup rel with 404, and reports true, if its
// module is private to this proxy; nothing is asked of the database then.
func (h *sumdbHandler) keptPrivate(w http.ResponseWriter, r *http.Request, rel string) bool {
	if h.private == nil {
		return false
	}
	escPath, _, _ := strings.Cut(strings.TrimPrefix(rel, "lookup/"), "@")
	path, err := module.UnescapePath(escPath)
	if err != nil {
		return false // Load refuses it
	}
	reason, err := h.private(r.Context(), path)
	switch {
	case err != nil:
		// The database's error, which the downloads' table classifies: a
		// client gone, the database out of reach, or an internal error.
		h.metrics.SumDBRequest(metrics.SumDBLookup, false, err)
		status, _ := statusOf(err)
		h.fail(w, status, strings.ToLower(statusText(status))+": "+errorMessage(h.log, r, status, err))
		return true
	case reason == "":
		return false
	}
	h.metrics.SumDBRequest(metrics.SumDBLookup, false, checksum.ErrNotFound)
	// The path once: the go command prints no answer longer than a line
	// of 648 bytes, and a long path must leave room for the advice.
	h.fail(w, http.StatusNotFound, fmt.Sprintf(
		"not found: %s is a private module of this proxy (%s), which %s cannot know; "+
			"set GONOSUMDB to a pattern that matches it where the go command runs "+
			"(GOPRIVATE alone sends the go command past this proxy, to the module's version control; with it, set GONOPROXY=none)",
		path, reason, h.db.Name()))
	return true
}

// sumdbStatus returns the status of a checksum.DB error. (The kinds are
// package checksum's, not modproxy's, so errorStatus does not know them.)
func sumdbStatus(err error) int {
	switch {
	case errors.Is(err, checksum.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, checksum.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, context.Canceled):
		return statusClientClosedRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, checksum.ErrBusy):
		return http.StatusServiceUnavailable
	case errors.Is(err, checksum.ErrUnavailable):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// fail answers with a plain-text reason, as the go command prints it (see
// oneLine).
func (h *sumdbHandler) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	io.WriteString(w, oneLine(msg)+"\n")
}
