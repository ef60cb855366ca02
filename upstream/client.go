package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// ErrNotFound is wrapped by the error a Client returns when no proxy of
// its list has what was asked for: each answered 404, 410 or 403 (some
// mirrors answer unknown modules with 403), or the list is empty.
var ErrNotFound = errors.New("not found upstream")

// ErrTooLarge is wrapped by the error for a response over its size limit.
var ErrTooLarge = errors.New("upstream response too large")

// ErrInvalid is wrapped by the error for a module path or version that
// cannot be asked for: a path that golang.org/x/mod/module rejects, or a
// version for Mod and Zip that is not canonical. No request is sent.
var ErrInvalid = errors.New("invalid module path or version")

// Size limits of responses, by kind, in bytes. The go.mod and zip limits
// are the go command's own (golang.org/x/mod/zip); .info, @latest and list
// get the go.mod limit, far more than any real one needs.
const (
	maxInfo = modzip.MaxGoMod   // .info and @latest
	maxList = modzip.MaxGoMod   // @v/list
	maxMod  = modzip.MaxGoMod   // .mod
	maxZip  = modzip.MaxZipFile // .zip
)

// The kinds of file fetched, as the Observer is told them.
const (
	kindInfo   = "info"
	kindLatest = "latest"
	kindList   = "list"
	kindMod    = "mod"
	kindZip    = "zip"
	kindQuery  = "query" // the .info of a query, not a canonical version
)

// DefaultUserAgent is the User-Agent sent when Options.UserAgent is empty.
const DefaultUserAgent = "agora/1 (Go module proxy)"

// Info is a version's .info (or @latest) as an upstream served it.
type Info struct {
	// Version is the canonical version the upstream named.
	Version string
	// Time is the version's commit time; zero if the upstream gave none.
	Time time.Time
	// Raw is the .info exactly as served, with any Origin field: what
	// Agora stores and serves.
	Raw []byte
}

// Observer is told of every HTTP request made to an upstream, once per
// attempt: the proxy's URL (password redacted), the kind of file ("info",
// "mod", "zip", "list", "latest", or "query" for the .info of a query
// rather than a canonical version), the status (0 when no response came),
// the body bytes read, the duration (for a 200, until the body is closed)
// and the error, if any. Package metrics implements it.
type Observer interface {
	Fetch(proxy, kind string, status int, bytes int64, d time.Duration, err error)
}

// HealthObserver is told when a proxy goes down (several requests in a
// row got no answer, and requests to it now fail at once) and when it
// answers again. An Observer that implements it is told so; package
// metrics' does.
type HealthObserver interface {
	ProxyDown(proxy string, down bool)
}

// Options tune a Client. Zero values take the defaults.
type Options struct {
	// Transport carries the requests. Nil means a new keep-alive
	// transport from NewTransport; give clients one transport to share
	// its connections (NewRouter does).
	Transport http.RoundTripper
	// ConnectTimeout bounds connecting and the TLS handshake of the
	// transport made by NewTransport (default 10s). HeaderTimeout bounds
	// the wait for response headers from when a request starts, connecting
	// included, and again the reading of an error answer's body (default
	// 30s). BodyTimeout bounds reading a whole zip once the headers came
	// (default 10 minutes), and SmallBodyTimeout the body of a list,
	// @latest, .info or .mod (default 30s, or BodyTimeout if less): well
	// within the minute or two that callers such as modproxy wait for
	// those, so that a proxy whose bodies stall times out, and is found
	// down, before they give up.
	ConnectTimeout, HeaderTimeout, BodyTimeout, SmallBodyTimeout time.Duration
	// Retries is how often a request that failed with a 5xx, a 429 or a
	// connection error is tried again (default 2; negative: never). The
	// first retry waits about Backoff (default 200ms), each further one
	// twice as long, with random jitter of ±50%.
	Retries int
	Backoff time.Duration
	// Observer, if not nil, is told of every request.
	Observer Observer
	// UserAgent is sent with every request (default DefaultUserAgent).
	UserAgent string
	// Logger is told when a proxy goes down and when it answers again
	// (default: nowhere).
	Logger *slog.Logger
	// Health tracks whether the proxies answer. Clients that share one
	// (those of a Router do) share what they learn. Nil means a new one,
	// with Logger, and Observer if it is a HealthObserver.
	Health *Health

	now func() time.Time // the clock of a new Health; tests set it
	// startHeaderTimer starts the timer of a header timeout, or of an
	// error answer's body, named what (see attempt): time.AfterFunc of
	// HeaderTimeout, unless a test fires them itself.
	startHeaderTimer func(what string, f func()) stopper
}

// stopper is a timer that a Client stops, such as a *time.Timer.
type stopper interface{ Stop() bool }

// Defaults of Options.
const (
	defaultConnectTimeout   = 10 * time.Second
	defaultHeaderTimeout    = 30 * time.Second
	defaultBodyTimeout      = 10 * time.Minute
	defaultSmallBodyTimeout = 30 * time.Second
	defaultRetries          = 2
	defaultBackoff          = 200 * time.Millisecond
)

// withDefaults returns o with its zero values replaced by the defaults,
// except Transport.
func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = defaultHeaderTimeout
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = defaultBodyTimeout
	}
	if o.SmallBodyTimeout <= 0 {
		o.SmallBodyTimeout = min(defaultSmallBodyTimeout, o.BodyTimeout)
	}
	if o.Retries == 0 {
		o.Retries = defaultRetries
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = defaultBackoff
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.startHeaderTimer == nil {
		d := o.HeaderTimeout
		o.startHeaderTimer = func(_ string, f func()) stopper { return time.AfterFunc(d, f) }
	}
	if o.Health == nil {
		observer, _ := o.Observer.(HealthObserver)
		o.Health = newHealth(o.Logger, observer, o.now)
	}
	return o
}

// NewTransport returns a keep-alive transport for upstream proxies, with
// o's ConnectTimeout, the environment's HTTP proxy settings
// (HTTPS_PROXY, NO_PROXY), HTTP/2, and room for 64 idle connections per
// host, so that many concurrent fetches from one proxy reuse connections.
func NewTransport(o Options) *http.Transport {
	o = o.withDefaults()
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// Client fetches modules from a list of proxies, trying them in order
// with the go command's fall-through rules. It is safe for concurrent use.
//
// A nil *Client has no proxies: its methods return errors wrapping
// ErrNotFound.
type Client struct {
	list    []Proxy
	proxies []*proxy
	opts    Options
	hc      *http.Client
	limits  map[string]int64 // by kind; tests lower them
}

// proxy is a parsed entry of a Client's list.
type proxy struct {
	base        *url.URL // nil if err is set
	name        string   // the URL with its secret redacted (RedactURL)
	fallThrough bool
	err         error   // the entry is not a valid proxy URL
	health      *health // whether it answers, from Options.Health
}

// New returns a Client of proxies, as ParseList returns them. A proxy
// whose URL is invalid fails every request sent to it.
func New(proxies []Proxy, opts Options) *Client {
	opts = opts.withDefaults()
	if opts.Transport == nil {
		opts.Transport = NewTransport(opts)
	}
	c := &Client{
		list: append([]Proxy(nil), proxies...),
		opts: opts,
		hc:   &http.Client{Transport: fileTransport{next: opts.Transport}, CheckRedirect: checkRedirect},
		limits: map[string]int64{
			kindInfo: maxInfo, kindLatest: maxInfo, kindQuery: maxInfo, kindList: maxList, kindMod: maxMod, kindZip: maxZip,
		},
	}
	for _, p := range proxies {
		u, err := parseProxyURL(p.URL)
		pp := &proxy{base: u, name: redact(p.URL), fallThrough: p.FallThrough, err: err}
		if u != nil {
			pp.name = RedactURL(u)
		}
		pp.health = opts.Health.get(pp.name)
		c.proxies = append(c.proxies, pp)
	}
	return c
}

// maxRedirects is how many redirects a request follows, as net/http.
const maxRedirects = 10

// checkRedirect lets a request follow only redirects to http and https
// URLs: an upstream must not make Agora read its own files. A request to
// https follows only redirects to https, as the go command's. It refuses
// with a *redirectError.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return &redirectError{fmt.Sprintf("redirect to %s refused: an upstream may only redirect to http:// or https://", RedactURL(req.URL))}
	}
	if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return &redirectError{fmt.Sprintf("redirected from secure URL %s to insecure URL %s", RedactURL(via[len(via)-1].URL), RedactURL(req.URL))}
	}
	if len(via) >= maxRedirects {
		return &redirectError{fmt.Sprintf("stopped after %d redirects", maxRedirects)}
	}
	return nil
}

// redirectError is a redirect that checkRedirect refused: an answer of
// the proxy, which no retry mends.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// Proxies returns the client's proxy list.
func (c *Client) Proxies() []Proxy {
	if c == nil {
		return nil
	}
	return append([]Proxy(nil), c.list...)
}

// Info returns path's .info for query (GET <proxy>/<path>/@v/<query>.info)
// and the URL of the proxy that answered (password redacted). The query
// may be a canonical version, which the answer must name, or anything the
// upstream resolves, such as a branch, a commit hash or a non-canonical
// version: the answer names a canonical version. The .info must be JSON
// with a canonical Version valid for path, of at most 16 MiB.
func (c *Client) Info(ctx context.Context, path, query string) (*Info, string, error) {
	escPath, err := module.EscapePath(path)
	if err != nil {
		return nil, "", invalid(path, query, err)
	}
	escQuery, err := module.EscapeVersion(query)
	if err != nil {
		return nil, "", invalid(path, query, err)
	}
	canonical := semver.IsValid(query) && query == module.CanonicalVersion(query)
	kind := kindInfo
	if !canonical {
		kind = kindQuery
	}
	var info *Info
	src, err := c.try(ctx, func(p *proxy) error {
		data, err := c.getBytes(ctx, p, kind, escPath, "@v/"+escQuery+".info")
		if err != nil {
			return err
		}
		if info, err = parseInfo(path, data); err != nil {
			return fmt.Errorf("invalid .info from proxy %s: %v", p.name, err)
		}
		if canonical && info.Version != query {
			return fmt.Errorf("invalid .info from proxy %s: it names version %s instead of the requested one", p.name, info.Version)
		}
		return nil
	})
	if err != nil {
		return nil, "", &module.ModuleError{Path: path, Version: query, Err: err}
	}
	return info, src, nil
}

// Latest returns path's @latest (GET <proxy>/<path>/@latest): the version
// the upstream considers latest, typically a pseudo-version of the default
// branch of a module without tags, and the URL of the proxy that answered.
//
// @latest is optional in the protocol, and a GOPROXY file tree such as a
// module cache has none. A proxy that does not have it is asked, as the go
// command asks it, for its @v/list, and the newest pseudo-version there
// (by the time on its line, else the pseudo-version's own) is the answer,
// with that version's .info; only when the list has none either does the
// proxy not have the module. Tagged versions in the list are not
// considered: a caller with tags picks the latest of List instead.
func (c *Client) Latest(ctx context.Context, path string) (*Info, string, error) {
	escPath, err := module.EscapePath(path)
	if err != nil {
		return nil, "", invalid(path, "", err)
	}
	var info *Info
	src, err := c.try(ctx, func(p *proxy) error {
		data, err := c.getBytes(ctx, p, kindLatest, escPath, "@latest")
		if errors.Is(err, ErrNotFound) {
			info, err = c.latestFromList(ctx, p, path, escPath)
			return err
		}
		if err != nil {
			return err
		}
		if info, err = parseInfo(path, data); err != nil {
			return fmt.Errorf("invalid @latest from proxy %s: %v", p.name, err)
		}
		return nil
	})
	if err != nil {
		return nil, "", &module.ModuleError{Path: path, Err: err}
	}
	return info, src, nil
}

// latestFromList is Latest for a proxy p without @latest: the .info of
// the newest pseudo-version of p's @v/list.
func (c *Client) latestFromList(ctx context.Context, p *proxy, path, escPath string) (*Info, error) {
	data, err := c.getBytes(ctx, p, kindList, escPath, "@v/list")
	if err != nil {
		return nil, err
	}
	version := newestPseudoVersion(data)
	if version == "" {
		return nil, fmt.Errorf("proxy %s has no @latest of %s, and its @v/list no pseudo-version: %w", p.name, path, ErrNotFound)
	}
	escVersion, err := module.EscapeVersion(version)
	if err != nil {
		return nil, invalid(path, version, err)
	}
	data, err = c.getBytes(ctx, p, kindInfo, escPath, "@v/"+escVersion+".info")
	if err != nil {
		return nil, err
	}
	info, err := parseInfo(path, data)
	if err != nil {
		return nil, fmt.Errorf("invalid .info of %s from proxy %s: %v", version, p.name, err)
	}
	if info.Version != version {
		return nil, fmt.Errorf("invalid .info of %s from proxy %s: it names version %s", version, p.name, info.Version)
	}
	return info, nil
}

// newestPseudoVersion returns the pseudo-version of a @v/list that the go
// command takes for @latest when a proxy has none (cmd/go's
// proxyRepo.latestFromList): of the lines whose first field is a valid
// version, the one with the latest time, which is the line's second field
// if it is an RFC 3339 time, else the pseudo-version's; lines with neither
// time are skipped, and so are pseudo-versions that are not canonical. ""
// if there is none.
func newestPseudoVersion(list []byte) string {
	var best string
	var bestTime time.Time
	for line := range bytes.Lines(list) {
		f := strings.Fields(string(line))
		if len(f) == 0 || !semver.IsValid(f[0]) {
			continue
		}
		var t time.Time
		if len(f) >= 2 {
			t, _ = time.Parse(time.RFC3339, f[1])
		} else if module.IsPseudoVersion(f[0]) {
			t, _ = module.PseudoVersionTime(f[0])
		}
		if t.IsZero() || !module.IsPseudoVersion(f[0]) || module.CanonicalVersion(f[0]) != f[0] {
			continue
		}
		if bestTime.Before(t) {
			best, bestTime = f[0], t
		}
	}
	return best
}

// List returns the versions in path's list (GET <proxy>/<path>/@v/list)
// and the URL of the proxy that answered. Only canonical semantic versions
// that are not pseudo-versions are kept (as the go command does), and that
// path can have (see pathCanHave: a v2 of a path without /v2 is only
// +incompatible), each once, in semver order; lines that are not are
// skipped. The list may be
// empty (a module without tags). It is limited to 16 MiB.
func (c *Client) List(ctx context.Context, path string) ([]string, string, error) {
	escPath, err := module.EscapePath(path)
	if err != nil {
		return nil, "", invalid(path, "", err)
	}
	var list []string
	src, err := c.try(ctx, func(p *proxy) error {
		data, err := c.getBytes(ctx, p, kindList, escPath, "@v/list")
		if err != nil {
			return err
		}
		list = parseVersionList(path, data)
		return nil
	})
	if err != nil {
		return nil, "", &module.ModuleError{Path: path, Err: err}
	}
	return list, src, nil
}

// Mod returns the go.mod of path at the canonical version (GET
// <proxy>/<path>/@v/<version>.mod) and the URL of the proxy that
// answered. The bytes are returned as served, not parsed: a proxy may
// synthesize the go.mod of a module without one. It is limited to
// golang.org/x/mod/zip.MaxGoMod bytes.
func (c *Client) Mod(ctx context.Context, path, version string) ([]byte, string, error) {
	escPath, escVersion, err := escapeCanonical(path, version)
	if err != nil {
		return nil, "", err
	}
	var mod []byte
	src, err := c.try(ctx, func(p *proxy) error {
		var err error
		mod, err = c.getBytes(ctx, p, kindMod, escPath, "@v/"+escVersion+".mod")
		return err
	})
	if err != nil {
		return nil, "", &module.ModuleError{Path: path, Version: version, Err: err}
	}
	return mod, src, nil
}

// Zip opens the module zip of path at the canonical version (GET
// <proxy>/<path>/@v/<version>.zip) and returns its body and the URL of
// the proxy that answered. The caller reads the body and must close it.
// Reading fails with an error wrapping ErrTooLarge after
// golang.org/x/mod/zip.MaxZipFile bytes, and with a timeout error when
// the whole body has not come within Options.BodyTimeout. Failed requests
// are retried only until the body is returned; the zip is not validated.
func (c *Client) Zip(ctx context.Context, path, version string) (io.ReadCloser, string, error) {
	escPath, escVersion, err := escapeCanonical(path, version)
	if err != nil {
		return nil, "", err
	}
	var body *body
	src, err := c.try(ctx, func(p *proxy) error {
		var err error
		body, err = c.open(ctx, p, kindZip, escPath, "@v/"+escVersion+".zip")
		return err
	})
	if err != nil {
		return nil, "", &module.ModuleError{Path: path, Version: version, Err: err}
	}
	return body, src, nil
}

// try calls fetch for the proxies in order, falling through as the go
// command does: after a ',' only when the proxy does not have the module,
// after a '|' after any error. It returns the name of the proxy that
// succeeded, or the most telling error: the first that is not "not
// found", else the first "not found".
func (c *Client) try(ctx context.Context, fetch func(*proxy) error) (string, error) {
	if c == nil || len(c.proxies) == 0 {
		return "", fmt.Errorf("no upstream proxy is configured for this path: %w", ErrNotFound)
	}
	var notFound, other error
	for _, p := range c.proxies {
		err := p.err
		if err == nil {
			err = c.sendTo(ctx, p, fetch)
		}
		if err == nil {
			return p.name, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		isNotFound := errors.Is(err, ErrNotFound)
		switch {
		case isNotFound && notFound == nil:
			notFound = err
		case !isNotFound && other == nil:
			other = err
		}
		if !isNotFound && !p.fallThrough {
			break
		}
	}
	if other != nil {
		return "", other
	}
	return "", notFound
}

// parseInfo parses and checks the .info or @latest of a version of path.
func parseInfo(path string, data []byte) (*Info, error) {
	var j struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, err
	}
	switch {
	case j.Version == "":
		return nil, errors.New("no Version")
	case !semver.IsValid(j.Version) || module.CanonicalVersion(j.Version) != j.Version:
		return nil, fmt.Errorf("version %q is not a canonical semantic version", j.Version)
	}
	if err := module.Check(path, j.Version); err != nil {
		return nil, err
	}
	return &Info{Version: j.Version, Time: j.Time, Raw: data}, nil
}

// parseVersionList returns the canonical release and pre-release versions
// of path's @v/list that path can have, in semver order, each once.
// Anything after a version on its line (some proxies add a time) is
// ignored, and so are lines that do not start with one.
func parseVersionList(path string, data []byte) []string {
	var list []string
	seen := make(map[string]bool)
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		v := string(f[0])
		if seen[v] || !semver.IsValid(v) || module.CanonicalVersion(v) != v || module.IsPseudoVersion(v) || !pathCanHave(path, v) {
			continue
		}
		seen[v] = true
		list = append(list, v)
	}
	semver.Sort(list)
	return list
}

// pathCanHave reports whether a module of path can have version v:
// module.Check's rule (a v2 or later of a path without a major version
// suffix only +incompatible, of one with a suffix only that major), and
// the go command's, that a path with a suffix has no +incompatible
// versions.
func pathCanHave(path, v string) bool {
	if module.Check(path, v) != nil {
		return false
	}
	_, major, _ := module.SplitPathVersion(path)
	return major == "" || semver.Build(v) != "+incompatible"
}

// escapeCanonical escapes path and a version that must be canonical.
func escapeCanonical(path, version string) (escPath, escVersion string, err error) {
	if escPath, err = module.EscapePath(path); err != nil {
		return "", "", invalid(path, version, err)
	}
	if !semver.IsValid(version) || version != module.CanonicalVersion(version) {
		return "", "", invalid(path, version, errors.New("not a canonical version"))
	}
	if escVersion, err = module.EscapeVersion(version); err != nil {
		return "", "", invalid(path, version, err)
	}
	return escPath, escVersion, nil
}

// invalid returns the error for a path or version that cannot be asked
// for.
func invalid(path, version string, err error) error {
	return &module.ModuleError{Path: path, Version: version, Err: fmt.Errorf("%w: %v", ErrInvalid, err)}
}
