// Command replay is the load generator of bench/replay.sh: it replays a
// list of GOPROXY request paths against a server with concurrent keep-alive
// clients and prints machine-readable totals.
//
// The list has one request path per line (such as
// /golang.org/x/mod/@v/v0.42.0.zip); blank lines and lines starting with #
// are skipped. -c workers share one http.Transport that keeps a connection
// per worker alive. In mode "once" the workers take the next line until every
// line was requested exactly once (a cold fill: its time is the time to
// fetch the whole list); in mode "loop" each worker cycles through the list,
// starting at its own offset, for -duration (warm replay).
//
// Every response must be 200. With -ref, every path is first fetched once
// from the reference server, and each response is then compared with it:
// -verify full compares the SHA-256 of the bodies, -verify size only the
// length. An @v/list body is compared as the go command reads it: the set
// of its valid versions that are not pseudo-versions (servers may order
// them differently, and a module cache's list holds pseudo-versions, which
// the go command ignores and proxies may leave out). A failed request or
// check counts as an error, and the first few are printed on stderr.
//
// The result is one line on stdout:
//
//	RESULT mode=once requests=N errors=N bytes=N seconds=F rps=F mbps=F p50_ms=F p99_ms=F max_ms=F
//
// bytes counts response bodies (not headers); MB = 10^6 bytes; latencies
// are those of whole requests, body included. With -kinds, a line per kind
// of request (info, mod, zip, list, latest, other) follows:
//
//	KIND kind=zip requests=N bytes=N busy_s=F p50_ms=F p99_ms=F max_ms=F
//
// where busy_s is the sum of the kind's latencies. replay exits with status
// 0 even if requests failed (see errors), and 1 if it could not run.
//
// With -hashdir DIR, replay sends no requests but measures what validating
// and hashing the listed zips costs, which any cache that verifies what it
// fetches adds to a cold fill: the files DIR/<path> of the list's .zip
// paths, with -c goroutines, go through golang.org/x/mod/zip.CheckZip and
// the go.sum hash (dirhash.HashZip, h1:). It prints
//
//	HASH zips=N bytes=N seconds=F
//
// Usage:
//
//	replay -list requests.txt -url http://127.0.0.1:8080 -mode once -ref http://127.0.0.1:8081
//	replay -list requests.txt -url http://127.0.0.1:8080 -mode loop -duration 10s -c 16
//	replay -list requests.txt -hashdir "$(go env GOMODCACHE)/cache/download"
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"hash"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

func main() {
	var (
		list     = flag.String("list", "", "file of request paths, one per line (required)")
		base     = flag.String("url", "", "base URL of the server under test (required, unless -hashdir)")
		mode     = flag.String("mode", "once", "once: every path exactly once; loop: cycle through the paths for -duration")
		duration = flag.Duration("duration", 10*time.Second, "length of a loop run")
		conns    = flag.Int("c", 16, "concurrent clients, each on its own keep-alive connection")
		ref      = flag.String("ref", "", "base URL of a reference server whose bodies every response must equal")
		verify   = flag.String("verify", "full", "with -ref: full (SHA-256 of the body), size (length only) or none")
		timeout  = flag.Duration("timeout", 5*time.Minute, "limit of one request, body included")
		kinds    = flag.Bool("kinds", false, "also print totals per kind of request")
		hashDir  = flag.String("hashdir", "", "send no requests: validate and hash the listed zips under this GOPROXY file tree")
	)
	flag.Parse()
	cfg := config{
		base: strings.TrimSuffix(*base, "/"), mode: *mode, duration: *duration,
		conns: *conns, verify: *verify, timeout: *timeout, kinds: *kinds,
	}
	if *list == "" || (cfg.base == "") == (*hashDir == "") || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *hashDir != "" {
		err = hashZips(ctx, *hashDir, *list, cfg.conns)
	} else {
		err = run(ctx, cfg, *list, strings.TrimSuffix(*ref, "/"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
}

// config is what a run needs besides the paths.
type config struct {
	base     string
	mode     string
	duration time.Duration
	conns    int
	verify   string
	timeout  time.Duration
	kinds    bool
}

func run(ctx context.Context, cfg config, listFile, ref string) error {
	switch {
	case cfg.mode != "once" && cfg.mode != "loop":
		return fmt.Errorf("-mode %q: want once or loop", cfg.mode)
	case cfg.verify != "full" && cfg.verify != "size" && cfg.verify != "none":
		return fmt.Errorf("-verify %q: want full, size or none", cfg.verify)
	case cfg.conns < 1:
		return fmt.Errorf("-c %d: want at least 1", cfg.conns)
	case cfg.mode == "loop" && cfg.duration <= 0:
		return fmt.Errorf("-duration %v: want a positive duration", cfg.duration)
	}
	paths, err := readList(listFile)
	if err != nil {
		return err
	}
	client := newClient(cfg.conns, cfg.timeout)
	defer client.CloseIdleConnections()

	var want map[string]expected
	if ref != "" && cfg.verify != "none" {
		if want, err = fetchReference(ctx, client, ref, paths, cfg.conns); err != nil {
			return err
		}
	}
	r := &runner{cfg: cfg, client: client, paths: paths, want: want}
	res := r.run(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range r.errs {
		fmt.Fprintln(os.Stderr, "replay: error:", e)
	}
	if n := r.errors.Load(); n > int64(len(r.errs)) {
		fmt.Fprintf(os.Stderr, "replay: %d more errors\n", n-int64(len(r.errs)))
	}
	fmt.Println(res)
	if cfg.kinds {
		for k := range numKinds {
			if len(res.kinds[k].latencies) > 0 {
				fmt.Println(res.kindLine(k))
			}
		}
	}
	return nil
}

// readList reads the request paths of file.
func readList(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "/") {
			return nil, fmt.Errorf("%s:%d: %q is not a request path (want a leading /)", file, n, line)
		}
		paths = append(paths, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s lists no request paths", file)
	}
	return paths, nil
}

// newClient returns a client whose one transport keeps a connection alive
// for each of conns workers, ignores proxy settings of the environment and
// asks for no compression (the files are served as they are stored).
func newClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          2 * conns,
			MaxIdleConnsPerHost:   conns,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: timeout,
			DisableCompression:    true,
		},
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, and not a 200
		},
	}
}

// expected is what a path's body must be: its length and SHA-256.
type expected struct {
	size int64
	sum  [sha256.Size]byte
}

// fetchReference fetches every distinct path once from the reference server
// ref, with conns workers, and returns what each body is.
func fetchReference(ctx context.Context, client *http.Client, ref string, paths []string, conns int) (map[string]expected, error) {
	distinct := slices.Clone(paths)
	slices.Sort(distinct)
	distinct = slices.Compact(distinct)
	want := make(map[string]expected, len(distinct))
	var (
		mu    sync.Mutex
		next  atomic.Int64
		first error
		wg    sync.WaitGroup
	)
	for range min(conns, len(distinct)) {
		wg.Go(func() {
			h := sha256.New()
			buf := make([]byte, 256<<10)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(distinct) {
					return
				}
				p := distinct[i]
				e, err := get(ctx, client, ref+p, p, h, buf)
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("reference %s: %w", ref, err)
				}
				want[p] = e
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return want, first
}

// get requests url (for path), checks that the answer is 200 and returns its
// body's length and, if h is not nil, its SHA-256; for an @v/list always the
// SHA-256 of its versions (see listVersions). buf is the read buffer.
func get(ctx context.Context, client *http.Client, url, path string, h hash.Hash, buf []byte) (expected, error) {
	var e expected
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return e, err
	}
	req.Header.Set("User-Agent", "agora-replay")
	resp, err := client.Do(req)
	if err != nil {
		return e, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return e, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	switch {
	case kindOf(path) == kindList:
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		e.size = int64(len(body))
		e.sum = sha256.Sum256(listVersions(body))
	case h == nil:
		e.size, err = io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf)
	default:
		h.Reset()
		e.size, err = io.CopyBuffer(h, onlyReader{resp.Body}, buf)
		h.Sum(e.sum[:0])
	}
	if err != nil {
		return e, fmt.Errorf("GET %s: reading the body: %w", path, err)
	}
	return e, nil
}

// onlyReader hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ io.Reader }

// listVersions returns the versions of an @v/list body b as the go command
// reads them (the first field of each line, if a valid semantic version and
// not a pseudo-version), sorted and without duplicates, one per line.
func listVersions(b []byte) []byte {
	var versions []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 && semver.IsValid(f[0]) && !module.IsPseudoVersion(f[0]) {
			versions = append(versions, f[0])
		}
	}
	semver.Sort(versions)
	return []byte(strings.Join(slices.Compact(versions), "\n") + "\n")
}

// Kinds of request, by the end of the path.
const (
	kindInfo = iota
	kindMod
	kindZip
	kindList
	kindLatest
	kindOther
	numKinds
)

// kindNames are the names of the kinds, by index.
var kindNames = [numKinds]string{"info", "mod", "zip", "list", "latest", "other"}

// kindOf returns the kind of request of path.
func kindOf(path string) int {
	switch {
	case strings.HasSuffix(path, ".info"):
		return kindInfo
	case strings.HasSuffix(path, ".mod"):
		return kindMod
	case strings.HasSuffix(path, ".zip"):
		return kindZip
	case strings.HasSuffix(path, "/@v/list"):
		return kindList
	case strings.HasSuffix(path, "/@latest"):
		return kindLatest
	}
	return kindOther
}

// runner is one replay run.
type runner struct {
	cfg    config
	client *http.Client
	paths  []string
	want   map[string]expected // nil: no comparison

	next   atomic.Int64 // mode once: the next line to request
	errors atomic.Int64
	mu     sync.Mutex
	errs   []string // the first maxShown errors
}

// maxShown is how many errors are printed.
const maxShown = 10

// tally is what requests of one kind, or all, came to.
type tally struct {
	bytes     int64
	latencies []time.Duration // sorted once the run is over
}

// result is the outcome of a run.
type result struct {
	mode    string
	errors  int64
	seconds float64
	all     tally
	kinds   [numKinds]tally
}

func (r result) String() string {
	n := len(r.all.latencies)
	return fmt.Sprintf("RESULT mode=%s requests=%d errors=%d bytes=%d seconds=%.3f rps=%.1f mbps=%.2f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
		r.mode, n, r.errors, r.all.bytes, r.seconds, float64(n)/r.seconds, float64(r.all.bytes)/1e6/r.seconds,
		r.all.percentile(0.50), r.all.percentile(0.99), r.all.percentile(1))
}

// kindLine returns the KIND line of kind k.
func (r result) kindLine(k int) string {
	t := r.kinds[k]
	var busy time.Duration
	for _, d := range t.latencies {
		busy += d
	}
	return fmt.Sprintf("KIND kind=%s requests=%d bytes=%d busy_s=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
		kindNames[k], len(t.latencies), t.bytes, busy.Seconds(), t.percentile(0.50), t.percentile(0.99), t.percentile(1))
}

// percentile returns the latency that a share p of the requests did not
// exceed (nearest rank), in milliseconds.
func (t tally) percentile(p float64) float64 {
	if len(t.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(t.latencies)))) - 1
	return float64(t.latencies[max(i, 0)]) / 1e6
}

// run replays the paths with cfg.conns workers and returns the totals.
func (r *runner) run(ctx context.Context) result {
	workers := make([][numKinds]tally, r.cfg.conns)
	start := time.Now()
	deadline := start.Add(r.cfg.duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var h hash.Hash
			if r.want != nil && r.cfg.verify == "full" {
				h = sha256.New()
			}
			buf := make([]byte, 256<<10)
			me := &workers[w]
			for n := 0; ctx.Err() == nil; n++ {
				var i int
				if r.cfg.mode == "once" {
					if i = int(r.next.Add(1) - 1); i >= len(r.paths) {
						return
					}
				} else {
					if n > 0 && !time.Now().Before(deadline) {
						return
					}
					i = (w*len(r.paths)/len(workers) + n) % len(r.paths)
				}
				p := r.paths[i]
				t0 := time.Now()
				e, err := get(ctx, r.client, r.cfg.base+p, p, h, buf)
				t := &me[kindOf(p)]
				t.latencies = append(t.latencies, time.Since(t0))
				t.bytes += e.size
				if err == nil && r.want != nil {
					err = r.check(p, e)
				}
				if err != nil && ctx.Err() == nil {
					r.fail(err)
				}
			}
		})
	}
	wg.Wait()
	res := result{mode: r.cfg.mode, errors: r.errors.Load(), seconds: time.Since(start).Seconds()}
	for _, w := range workers {
		for k, t := range w {
			res.kinds[k].bytes += t.bytes
			res.kinds[k].latencies = append(res.kinds[k].latencies, t.latencies...)
		}
	}
	for k := range res.kinds {
		res.all.bytes += res.kinds[k].bytes
		res.all.latencies = append(res.all.latencies, res.kinds[k].latencies...)
		slices.Sort(res.kinds[k].latencies)
	}
	slices.Sort(res.all.latencies)
	return res
}

// check compares the body e of path with the reference's: an @v/list by its
// versions, anything else by its length and, with -verify full, SHA-256.
func (r *runner) check(path string, e expected) error {
	want, ok := r.want[path]
	list := kindOf(path) == kindList
	switch {
	case !ok:
		return fmt.Errorf("GET %s: no reference body", path)
	case list && e.sum != want.sum:
		return fmt.Errorf("GET %s: the versions differ from the reference's", path)
	case !list && e.size != want.size:
		return fmt.Errorf("GET %s: %d bytes, the reference has %d", path, e.size, want.size)
	case !list && r.cfg.verify == "full" && e.sum != want.sum:
		return fmt.Errorf("GET %s: the body differs from the reference's (SHA-256 %x, want %x)", path, e.sum, want.sum)
	}
	return nil
}

// fail counts err and keeps it if it is one of the first few.
func (r *runner) fail(err error) {
	r.errors.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < maxShown {
		r.errs = append(r.errs, err.Error())
	}
}

// hashZips validates and hashes the zips of the list under dir with conns
// goroutines and prints the HASH line.
func hashZips(ctx context.Context, dir, listFile string, conns int) error {
	paths, err := readList(listFile)
	if err != nil {
		return err
	}
	var zips []string
	for _, p := range paths {
		if kindOf(p) == kindZip {
			zips = append(zips, p)
		}
	}
	var (
		next  atomic.Int64
		size  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range max(conns, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(zips) {
					return
				}
				n, err := hashZip(dir, zips[i])
				size.Add(n)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Printf("HASH zips=%d bytes=%d seconds=%.3f\n", len(zips), size.Load(), time.Since(start).Seconds())
	return nil
}

// hashZip checks the zip of request path p (/<module>/@v/<version>.zip)
// under dir as x/mod/zip does and computes its go.sum hash. It returns the
// zip's size.
func hashZip(dir, p string) (int64, error) {
	escPath, file, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/@v/")
	if !ok {
		return 0, fmt.Errorf("%s: not a module zip path", p)
	}
	path, err := module.UnescapePath(escPath)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	version, err := module.UnescapeVersion(strings.TrimSuffix(file, ".zip"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	name := filepath.Join(dir, filepath.FromSlash(p))
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	if _, err := modzip.CheckZip(module.Version{Path: path, Version: version}, name); err != nil {
		return fi.Size(), err
	}
	if _, err := dirhash.HashZip(name, dirhash.Hash1); err != nil {
		return fi.Size(), fmt.Errorf("hashing %s: %w", name, err)
	}
	return fi.Size(), nil
}
