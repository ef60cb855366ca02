package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/singleflight"

	"agora/internal/slots"
	"agora/upstream"
)

// Defaults of Options.
const (
	// DefaultLatestTTL is how long latest is reused by default.
	DefaultLatestTTL = 10 * time.Second
	// DefaultTimeout bounds one fetch from the upstream by default.
	DefaultTimeout = 30 * time.Second
	// DefaultRetries is how often a failed request is tried again, and
	// DefaultBackoff about how long the first retry waits.
	DefaultRetries = 2
	DefaultBackoff = 200 * time.Millisecond
)

// Limits on what the upstream may send, in bytes. A hash tile must be
// exactly W*tlog.HashSize bytes long.
const (
	maxLatest    = 16 << 10 // a signed tree head, with room for many signatures
	maxLookup    = 64 << 10 // a record (a few go.sum lines) and a signed tree head
	maxDataTile  = 1 << 20  // 2^tileHeight records
	maxSupported = 4 << 10  // /supported has an empty body
)

// How many fetches of lookups and tiles from the upstream run at once, and
// how many may wait for one of them to end. They go on after their callers
// give up (see shared), so without a bound a client of the /sumdb/ proxy
// could leave any number of them running, one distinct lookup or tile per
// request; beyond those that may wait, a fetch is refused at once
// (ErrBusy). Latest, of which one fetch runs at a time, is not counted.
const (
	maxFetches = 64
	maxWaiting = 1024
)

// tileHeight is the only tile height served: the one the go command
// always uses. It bounds a hash tile to 8 KiB.
const tileHeight = 8

// How long the base URL found by probing the proxies is reused before
// they are probed again. A failure through it forgets it at once.
const baseTTL = time.Hour

// clientMaxAge is how long one sumdb.Client is used. The client keeps every
// record and tile it reads in memory for good, errors included; a fresh one
// starts from the disk cache and the verified tree head.
const clientMaxAge = time.Hour

// Options configure a DB.
type Options struct {
	// Name and Key are the database's name and verifier key (see ParseDB).
	Name, Key string
	// Proxies are the upstream proxies, in order. The database is reached
	// at <URL>/sumdb/<Name>/ through the first one whose
	// /sumdb/<Name>/supported answers 200, as the go command picks one from
	// GOPROXY: a 404 or 410 there moves on to the next one, and so does
	// any other failure of a proxy with FallThrough (a '|' after it);
	// any other failure of one without (a ',') is an error. Entries that
	// are not http or https URLs are skipped.
	Proxies []upstream.Proxy
	// Direct is the database's own base URL, used when no proxy supports
	// it; empty means https://<Name>. Unlike the go command, which goes
	// straight to a URL given in GOSUMDB, the proxies are tried first even
	// then: every answer is authenticated by the key, whatever the route.
	Direct string
	// CacheDir is where answers are kept (see the package documentation).
	// Required.
	CacheDir string
	// LatestTTL is how long the database's latest signed tree head is
	// reused before it is fetched again; DefaultLatestTTL when zero.
	LatestTTL time.Duration
	// Timeout bounds one fetch from the upstream, probing the proxies
	// included; DefaultTimeout when zero.
	Timeout time.Duration
	// Transport makes the HTTP requests; http.DefaultTransport when nil.
	Transport http.RoundTripper
	// Retries is how often a request that failed with a 5xx, a 429 or a
	// connection error is tried again (DefaultRetries when zero; negative:
	// never), the first time after about Backoff (DefaultBackoff when
	// zero), each further one after twice as long, as the upstream client
	// does for modules. A 404 or 410 is an answer, and not retried.
	Retries int
	Backoff time.Duration
	// NoSumDB lists the module path patterns Lookup skips, in GONOSUMDB
	// syntax (comma-separated path.Match prefix patterns).
	NoSumDB string
	// Offline, when set, never contacts the network: only what is in the
	// cache is served and verified against.
	Offline bool
	// Health, when set, tracks whether the proxies (and the database's
	// own URL) answer; share the one of the module fetches, so that a
	// proxy that stopped answering either is not waited for by both.
	// Requests to a server that is down fail at once (ErrUnavailable).
	Health *upstream.Health
	// UserAgent is sent with every request (Go's default when empty).
	UserAgent string
	// Observer, if not nil, is told of every HTTP request to the upstream,
	// once per attempt, with the server (a proxy, or the database's own
	// URL) as its proxy and "sumdb" as its kind (package metrics'
	// KindSumDB).
	Observer upstream.Observer
	// Logger logs security errors and upstream failures; slog.Default()
	// when nil.
	Logger *slog.Logger
}

// A DB is a checksum database reached through the upstream proxies, with an
// on-disk cache. It is safe for concurrent use.
type DB struct {
	name, key string
	verifiers note.Verifiers
	proxies   []upstream.Proxy // http and https only, without a trailing slash
	direct    string
	dir       string // CacheDir/<name>
	latestTTL time.Duration
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	http      *http.Client
	nosumdb   string
	offline   bool
	health    *upstream.Health  // nil: none
	observer  upstream.Observer // nil: none
	userAgent string
	log       *slog.Logger
	now       func() time.Time

	flight  singleflight.Group
	fetches *slots.Slots // bounds the fetches of lookups and tiles

	baseMu sync.Mutex
	base   string // the base URL found by probing; "" when not known
	baseAt time.Time

	latestMu   sync.Mutex
	latest     []byte    // the newest signed tree head fetched, or read from disk
	latestNext time.Time // when latest is fetched again
	newest     tlog.Tree // the largest signed tree adopted (see adoptTree), which proves tiles

	configMu sync.Mutex // makes writeConfig a compare-and-swap

	clientMu   sync.Mutex
	client     *sumdb.Client
	clientBorn time.Time
}

// New returns a DB for the database opts names. It contacts nothing.
func New(opts Options) (*DB, error) {
	v, err := note.NewVerifier(opts.Key)
	if err != nil {
		return nil, fmt.Errorf("checksum database key %q: %v", opts.Key, err)
	}
	if v.Name() != opts.Name {
		return nil, fmt.Errorf("checksum database key %q is for %q, not %q", opts.Key, v.Name(), opts.Name)
	}
	if err := checkName(opts.Name); err != nil {
		return nil, err
	}
	if opts.CacheDir == "" {
		return nil, errors.New("checksum database: no cache directory")
	}
	direct := "https://" + opts.Name
	if opts.Direct != "" {
		if direct, err = checkURL(opts.Direct); err != nil {
			return nil, fmt.Errorf("checksum database URL %q: %v", opts.Direct, err)
		}
	}
	db := &DB{
		name:      opts.Name,
		key:       opts.Key,
		verifiers: note.VerifierList(v),
		direct:    direct,
		dir:       filepath.Join(opts.CacheDir, filepath.FromSlash(opts.Name)),
		latestTTL: opts.LatestTTL,
		timeout:   opts.Timeout,
		retries:   opts.Retries,
		backoff:   opts.Backoff,
		http:      &http.Client{Transport: opts.Transport},
		nosumdb:   opts.NoSumDB,
		offline:   opts.Offline,
		health:    opts.Health,
		observer:  opts.Observer,
		userAgent: opts.UserAgent,
		log:       opts.Logger,
		now:       time.Now,
		fetches:   slots.New("fetches from the upstream", maxFetches, maxWaiting),
	}
	for _, p := range opts.Proxies {
		if u, err := checkURL(p.URL); err == nil {
			db.proxies = append(db.proxies, upstream.Proxy{URL: u, FallThrough: p.FallThrough})
		}
	}
	if db.latestTTL <= 0 {
		db.latestTTL = DefaultLatestTTL
	}
	if db.timeout <= 0 {
		db.timeout = DefaultTimeout
	}
	switch {
	case db.retries == 0:
		db.retries = DefaultRetries
	case db.retries < 0:
		db.retries = 0
	}
	if db.backoff <= 0 {
		db.backoff = DefaultBackoff
	}
	if db.log == nil {
		db.log = slog.Default()
	}
	db.http.CheckRedirect = checkRedirect
	return db, nil
}

// maxRedirects is how many redirects a request follows.
const maxRedirects = 5

// checkRedirect lets a request follow only redirects to http and https
// URLs, and one to https only redirects to https, as the go command's
// checksum database client: the module paths looked up must not cross the
// network in the clear because a server said so. It refuses with a
// *redirectError.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return &redirectError{fmt.Sprintf("redirect to %s refused: only http:// and https:// are followed", upstream.RedactURL(req.URL))}
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return &redirectError{fmt.Sprintf("redirected from secure URL %s to insecure URL %s", upstream.RedactURL(via[len(via)-1].URL), upstream.RedactURL(req.URL))}
	}
	if len(via) >= maxRedirects {
		return &redirectError{fmt.Sprintf("stopped after %d redirects", maxRedirects)}
	}
	return nil
}

// redirectError is a redirect that checkRedirect refused: an answer of
// the server, which no retry mends.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// Name returns the database's name, such as sum.golang.org.
func (db *DB) Name() string { return db.name }

// Covers reports whether the database is asked about path: false for a
// path that NoSumDB matches.
func (db *DB) Covers(path string) bool { return !module.MatchPrefixPatterns(db.nosumdb, path) }

// Get returns what the database serves at rel, one of
//
//	latest
//	lookup/<escaped module path>@<escaped version>
//	tile/<H>/<L>/<N>[.p/<W>]       (L may be "data")
//
// from the cache or the upstream. Concurrent misses of one rel share one
// fetch, which a caller giving up does not cancel. The result must not be
// modified.
func (db *DB) Get(ctx context.Context, rel string) ([]byte, error) {
	data, _, err := db.Load(ctx, rel)
	return data, err
}

// Load is Get, and also reports whether the answer came from the cache
// (memory or disk) rather than from the upstream just now.
func (db *DB) Load(ctx context.Context, rel string) (data []byte, cached bool, err error) {
	req, err := parseRel(rel)
	if err != nil {
		return nil, false, err
	}
	if req.kind == kindLatest {
		return db.loadLatest(ctx)
	}
	if data, ok := db.readCache(req); ok {
		return data, true, nil
	}
	if db.offline {
		return nil, false, fmt.Errorf("%w: %s/%s is not in the cache, and fetching is off", ErrUnavailable, db.name, rel)
	}
	if full, ok := db.fullTile(ctx, req); ok {
		data, cached, err := db.Load(ctx, full.rel)
		if err != nil {
			return nil, false, err
		}
		return cutTile(req.tile, data), cached, nil
	}
	r, err := db.shared(ctx, rel, func(ctx context.Context) (result, error) {
		if data, ok := db.readCache(req); ok { // filled while this caller waited
			return result{data, true}, nil
		}
		// The slot is held while the answer is proven: the tiles of the
		// proof are fetched within it, and take none of their own, so
		// that no holder of a slot waits for another.
		release, err := db.fetches.Acquire(ctx)
		if err != nil {
			return result{}, fmt.Errorf("%w: %w", ErrUnavailable, err) // ErrBusy when too many wait
		}
		defer release()
		data, err := db.fetchShared(ctx, req)
		if err != nil {
			return result{}, err
		}
		proven, err := db.authenticate(ctx, req, data)
		if err != nil {
			return result{}, err
		}
		if proven {
			db.writeCache(req, data)
		}
		return result{data, false}, nil
	})
	return r.data, r.cached, err
}

// loadLatest serves latest: from memory while fresh, else from the
// upstream, else (the upstream failing) the last one fetched, which is then
// reused for another LatestTTL before the upstream is asked again.
func (db *DB) loadLatest(ctx context.Context) ([]byte, bool, error) {
	db.latestMu.Lock()
	data, next := db.latest, db.latestNext
	db.latestMu.Unlock()
	if data != nil && (db.offline || db.now().Before(next)) {
		return data, true, nil
	}
	if db.offline {
		if data := db.staleLatest(); data != nil {
			return data, true, nil
		}
		return nil, false, fmt.Errorf("%w: %s/latest is not in the cache, and fetching is off", ErrUnavailable, db.name)
	}
	r, err := db.shared(ctx, "latest", func(ctx context.Context) (result, error) {
		data, err := db.fetch(ctx, request{rel: "latest", kind: kindLatest})
		if err == nil {
			db.setLatest(data)
			if err := db.writeFile(db.latestPath(), data); err != nil {
				db.log.Error("caching the checksum database's latest tree", "db", db.name, "err", err)
			}
			return result{data, false}, nil
		}
		if stale := db.staleLatest(); stale != nil {
			db.log.Warn("checksum database unavailable: serving its last known tree", "db", db.name, "err", err)
			db.setLatest(stale)
			return result{stale, true}, nil
		}
		return result{}, err
	})
	return r.data, r.cached, err
}

// setLatest keeps data as the latest tree head for LatestTTL.
func (db *DB) setLatest(data []byte) {
	db.latestMu.Lock()
	db.latest, db.latestNext = data, db.now().Add(db.latestTTL)
	db.latestMu.Unlock()
}

// staleLatest returns the last tree head fetched, from memory or disk, or
// nil.
func (db *DB) staleLatest() []byte {
	db.latestMu.Lock()
	data := db.latest
	db.latestMu.Unlock()
	if data != nil {
		return data
	}
	data, err := os.ReadFile(db.latestPath())
	if err != nil || db.checkTree(data) != nil {
		return nil
	}
	db.latestMu.Lock()
	if db.latest == nil {
		db.latest = data
	}
	db.latestMu.Unlock()
	return data
}

// result is what a shared fetch returns.
type result struct {
	data   []byte
	cached bool
}

// shared runs f once for all concurrent callers with the same key. f runs
// detached from the caller's cancellation (other callers may wait for it),
// bounded by the timeout; a caller whose ctx ends stops waiting.
func (db *DB) shared(ctx context.Context, key string, f func(context.Context) (result, error)) (result, error) {
	ch := db.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), db.timeout)
		defer cancel()
		return f(fctx)
	})
	select {
	case r := <-ch:
		res, _ := r.Val.(result)
		return res, r.Err
	case <-ctx.Done():
		return result{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, key, ctx.Err())
	}
}

// fetchShared is fetch, shared by concurrent callers.
func (db *DB) fetchShared(ctx context.Context, req request) ([]byte, error) {
	r, err := db.shared(ctx, "raw:"+req.rel, func(ctx context.Context) (result, error) {
		data, err := db.fetch(ctx, req)
		return result{data: data}, err
	})
	return r.data, err
}

// fetch gets req from the upstream and checks its shape.
func (db *DB) fetch(ctx context.Context, req request) ([]byte, error) {
	base, err := db.baseURL(ctx)
	if err != nil {
		return nil, err
	}
	data, err := db.httpGet(ctx, db.serverOf(base), base+"/"+req.rel, req.limit())
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			db.forgetBase(base)
		}
		return nil, err
	}
	if err := db.check(req, data); err != nil {
		return nil, fmt.Errorf("%w: %s served an invalid %s: %v", ErrUnavailable, redact(base), req.rel, err)
	}
	return data, nil
}

// check reports whether data is a plausible answer to req: signed tree
// heads carry the database's signature, and tiles have the right shape.
// Records and tiles are proven by authenticate.
func (db *DB) check(req request, data []byte) error {
	switch req.kind {
	case kindLatest:
		return db.checkTree(data)
	case kindLookup:
		_, text, tree, err := tlog.ParseRecord(data)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(text, []byte(req.path+" "+req.version+" ")) {
			return fmt.Errorf("the record is not about %s@%s", req.path, req.version)
		}
		return db.checkTree(tree)
	default:
		return checkTile(req.tile, data)
	}
}

// checkTree checks that data is a tree head signed by the database.
func (db *DB) checkTree(data []byte) error {
	_, err := db.openTree(data)
	return err
}

// openTree returns the tree of a tree head signed by the database.
func (db *DB) openTree(data []byte) (tlog.Tree, error) {
	n, err := note.Open(data, db.verifiers)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("signed tree head: %v", err)
	}
	return tlog.ParseTree([]byte(n.Text))
}

// checkTile checks the size of a hash tile, and the number of records in a
// data tile.
func checkTile(t tlog.Tile, data []byte) error {
	if t.L >= 0 {
		if len(data) != t.W*tlog.HashSize {
			return fmt.Errorf("%d bytes, want %d", len(data), t.W*tlog.HashSize)
		}
		return nil
	}
	// Each record is its text (lines ending in \n, no blank line) and a
	// blank line.
	if n := bytes.Count(data, []byte("\n\n")); n != t.W || !bytes.HasSuffix(data, []byte("\n\n")) {
		return fmt.Errorf("%d records, want %d", n, t.W)
	}
	return nil
}

// baseURL returns the base URL the database is reached at: the first
// proxy that supports it, or the direct URL when every proxy answered 404
// or 410, or failed with FallThrough set (see Options.Proxies).
func (db *DB) baseURL(ctx context.Context) (string, error) {
	db.baseMu.Lock()
	base, at := db.base, db.baseAt
	db.baseMu.Unlock()
	if base != "" && db.now().Sub(at) < baseTTL {
		return base, nil
	}
	v, err, _ := db.flight.Do("\x00base", func() (any, error) {
		for _, p := range db.proxies {
			u := p.URL + "/sumdb/" + db.name
			_, err := db.httpGet(ctx, p.URL, u+"/supported", maxSupported)
			if errors.Is(err, ErrNotFound) || err != nil && p.FallThrough {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("asking whether %s proxies the checksum database: %w", redact(p.URL), err)
			}
			return u, nil
		}
		return db.direct, nil
	})
	if err != nil {
		return "", err
	}
	base = v.(string)
	db.baseMu.Lock()
	db.base, db.baseAt = base, db.now()
	db.baseMu.Unlock()
	return base, nil
}

// forgetBase makes the next fetch probe the proxies again, after a failure
// through base.
func (db *DB) forgetBase(base string) {
	db.baseMu.Lock()
	if db.base == base {
		db.base = ""
	}
	db.baseMu.Unlock()
}

// serverOf returns the server that base is reached at, for Options.Health:
// the proxy of a <proxy>/sumdb/<name> base, else base itself.
func (db *DB) serverOf(base string) string {
	if p, ok := strings.CutSuffix(base, "/sumdb/"+db.name); ok {
		return p
	}
	return base
}

// httpGet gets u from server, reading at most limit bytes. 404 and 410 are
// ErrNotFound; anything else but 200 is ErrUnavailable. Connection errors,
// 5xx and 429 are tried again (see Options.Retries), with exponential
// backoff and jitter, unless ctx ends first. A server that Options.Health
// says is down is not asked.
func (db *DB) httpGet(ctx context.Context, server, u string, limit int64) ([]byte, error) {
	if db.health == nil {
		return db.httpGetRetrying(ctx, server, u, limit)
	}
	var data []byte
	// Fetches run detached from their callers (see shared): ctx ends only
	// at the fetch's timeout, which is no answer in time, and that counts.
	err := db.health.Do(context.WithoutCancel(ctx), server, func() error {
		var err error
		data, err = db.httpGetRetrying(ctx, server, u, limit)
		return err
	})
	if errors.Is(err, upstream.ErrDown) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return data, err
}

// httpGetRetrying is httpGet without Options.Health. Its failures that got
// no answer from the server are marked with upstream.NoAnswer.
func (db *DB) httpGetRetrying(ctx context.Context, server, u string, limit int64) ([]byte, error) {
	for n := 0; ; n++ {
		data, retry, err := db.httpGetOnce(ctx, server, u, limit)
		if err == nil || !retry || n >= db.retries || ctx.Err() != nil {
			if err != nil && n > 0 {
				err = fmt.Errorf("%w (gave up after %d attempts)", err, n+1)
			}
			if err != nil && (retry || ctx.Err() != nil) {
				err = upstream.NoAnswer(err)
			}
			return data, err
		}
		d := db.backoff << min(n, 20)
		t := time.NewTimer(d/2 + rand.N(d))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, upstream.NoAnswer(err)
		}
	}
}

// fetchKind is the kind of request Options.Observer is told of.
const fetchKind = "sumdb"

// httpGetOnce is one attempt of httpGet; retry reports whether its failure
// is worth another.
func (db *DB) httpGetOnce(ctx context.Context, server, u string, limit int64) (data []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if db.userAgent != "" {
		req.Header.Set("User-Agent", db.userAgent)
	}
	start, status, n := time.Now(), 0, 0 // n: body bytes read, those of a failure too
	if db.observer != nil {
		defer func() {
			db.observer.Fetch(server, fetchKind, status, int64(n), time.Since(start), err)
		}()
	}
	resp, err := db.http.Do(req)
	if err != nil {
		var re *redirectError
		return nil, !errors.As(err, &re), fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		var msg []byte
		if resp.StatusCode != http.StatusSwitchingProtocols {
			// The body of a 101 is the connection itself, in another
			// protocol: a read that neither ctx nor the timeout ends.
			msg, _ = io.ReadAll(io.LimitReader(resp.Body, 256))
		}
		n = len(msg)
		line, _, _ := strings.Cut(strings.TrimSpace(string(msg)), "\n")
		kind := ErrUnavailable
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
			kind = ErrNotFound
		}
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, retry, fmt.Errorf("%w: GET %s: %s: %s", kind, redact(u), resp.Status, line)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	n = len(data)
	if err != nil {
		// A body cut short is worth another attempt; one that is not the
		// gzip it claims is the server's answer.
		return nil, !upstream.IsCorruptEncoding(err), fmt.Errorf("%w: GET %s: %v", ErrUnavailable, redact(u), redactErr(err))
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("%w: GET %s: answer larger than %d bytes", ErrUnavailable, redact(u), limit)
	}
	return data, false, nil
}

// redact returns u without its secret (see upstream.RedactURL), for
// messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	return upstream.RedactURL(p)
}

// redactErr returns err without the password of the URL a *url.Error
// names.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %v", ue.Op, redact(ue.URL), ue.Err)
	}
	return err
}

// The kinds of request Get serves.
const (
	kindLatest = iota
	kindLookup
	kindTile
)

// request is a parsed, valid rel.
type request struct {
	rel           string
	kind          int
	path, version string    // kindLookup
	tile          tlog.Tile // kindTile
}

// limit returns the largest answer accepted for r, in bytes.
func (r request) limit() int64 {
	switch {
	case r.kind == kindLatest:
		return maxLatest
	case r.kind == kindLookup:
		return maxLookup
	case r.tile.L >= 0:
		return int64(r.tile.W * tlog.HashSize)
	default:
		return maxDataTile
	}
}

// parseRel parses and validates rel (see Get).
func parseRel(rel string) (request, error) {
	r := request{rel: rel}
	switch {
	case rel == "latest":
		r.kind = kindLatest
	case strings.HasPrefix(rel, "lookup/"):
		r.kind = kindLookup
		escPath, escVers, ok := strings.Cut(strings.TrimPrefix(rel, "lookup/"), "@")
		if !ok || strings.Contains(escVers, "@") {
			return r, fmt.Errorf("%w: %q: want lookup/<module>@<version>", ErrInvalid, rel)
		}
		var err error
		if r.path, err = module.UnescapePath(escPath); err != nil {
			return r, fmt.Errorf("%w: %q: %v", ErrInvalid, rel, err)
		}
		if r.version, err = module.UnescapeVersion(escVers); err != nil {
			return r, fmt.Errorf("%w: %q: %v", ErrInvalid, rel, err)
		}
		if err := module.Check(r.path, r.version); err != nil {
			return r, fmt.Errorf("%w: %q: %v", ErrInvalid, rel, err)
		}
		if module.CanonicalVersion(r.version) != r.version {
			return r, fmt.Errorf("%w: %q: version %s is not canonical", ErrInvalid, rel, r.version)
		}
	case strings.HasPrefix(rel, "tile/"):
		r.kind = kindTile
		t, err := tlog.ParseTilePath(rel) // also checks that rel is t.Path()
		if err != nil {
			return r, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if t.H != tileHeight {
			return r, fmt.Errorf("%w: %q: tile height %d, only %d is served", ErrInvalid, rel, t.H, tileHeight)
		}
		// Bound the records the tile covers, (N+1)<<(H*(L+1)), to 2^62,
		// far beyond any database, so that no arithmetic overflows.
		if level := max(t.L, 0) + 1; level*t.H >= 62 || t.N >= 1<<(62-level*t.H) {
			return r, fmt.Errorf("%w: %q: tile beyond any tree", ErrInvalid, rel)
		}
		r.tile = t
	default:
		return r, fmt.Errorf("%w: %q: want latest, lookup/<module>@<version> or tile/<H>/<L>/<N>", ErrInvalid, rel)
	}
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return r, fmt.Errorf("%w: %q", ErrInvalid, rel)
	}
	return r, nil
}

// cachePath returns where req's answer is kept.
func (db *DB) cachePath(req request) string {
	return filepath.Join(db.dir, filepath.FromSlash(req.rel))
}

// latestPath returns where the last tree head fetched is kept.
func (db *DB) latestPath() string { return filepath.Join(db.dir, "latest") }

// verifiedPath returns where Lookup's newest proven tree head is kept.
func (db *DB) verifiedPath() string { return filepath.Join(db.dir, "verified-latest") }

// readCache returns req's cached answer, if it is there and well-formed.
// A partial tile is also cut from the full tile.
func (db *DB) readCache(req request) ([]byte, bool) {
	data, ok := db.readCacheFile(req)
	if ok || req.kind != kindTile || req.tile.W == 1<<tileHeight {
		return data, ok
	}
	full := req.tile
	full.W = 1 << tileHeight
	if data, ok := db.readCacheFile(request{rel: full.Path(), kind: kindTile, tile: full}); ok {
		return cutTile(req.tile, data), true
	}
	return nil, false
}

// fullTile returns the request of the full tile of req, a partial tile,
// if the database's tree holds the full one: the newest tree adopted, or
// else the latest. Such a partial tile is served cut from the full tile,
// which alone is fetched and cached. Fetched and cached itself, each of
// the 255 partial tiles of every full tile that anyone asks /sumdb/ for
// would be a file of its own, about 128 times the disk of the full tiles.
// The partial tiles at the tree's edge have no full tile yet.
func (db *DB) fullTile(ctx context.Context, req request) (request, bool) {
	t := req.tile
	if req.kind != kindTile || t.W == 1<<tileHeight {
		return request{}, false
	}
	t.W = 1 << tileHeight
	n := (t.N + 1) << (t.H * (max(t.L, 0) + 1)) // records the full tile covers; bounded by parseRel
	db.latestMu.Lock()
	tree := db.newest
	db.latestMu.Unlock()
	if tree.N < n {
		data, _, err := db.loadLatest(ctx)
		if err == nil {
			tree, err = db.openTree(data)
		}
		if err != nil || tree.N < n {
			return request{}, false
		}
	}
	return request{rel: t.Path(), kind: kindTile, tile: t}, true
}

// cutTile returns the partial tile t cut from full, the data of its full
// tile, well-formed (see checkTile).
func cutTile(t tlog.Tile, full []byte) []byte {
	if t.L >= 0 {
		return full[:t.W*tlog.HashSize]
	}
	end := 0
	for range t.W {
		end += bytes.Index(full[end:], []byte("\n\n")) + 2
	}
	return full[:end]
}

// readCacheFile returns the cache file of req, if it is there and
// well-formed.
func (db *DB) readCacheFile(req request) ([]byte, bool) {
	data, err := os.ReadFile(db.cachePath(req))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			db.log.Error("reading the checksum database cache", "db", db.name, "rel", req.rel, "err", err)
		}
		return nil, false
	}
	if len(data) == 0 || req.kind == kindTile && checkTile(req.tile, data) != nil {
		return nil, false // damaged: fetched again, and replaced
	}
	return data, true
}

// writeCache caches req's proven answer, unless it is there already.
func (db *DB) writeCache(req request, data []byte) {
	if _, ok := db.readCacheFile(req); ok {
		return
	}
	if err := db.writeFile(db.cachePath(req), data); err != nil {
		db.log.Error("caching a checksum database answer", "db", db.name, "rel", req.rel, "err", err)
	}
}

// writeFile writes data to name atomically: readers see the old content or
// the whole new one.
func (db *DB) writeFile(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
