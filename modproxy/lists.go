package modproxy

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/semver"

	"agora/storage"
	"agora/upstream"
)

// listTimeout bounds asking an upstream for a module's list or latest
// version on behalf of waiting clients.
const listTimeout = time.Minute

// moduleList is a module's answer to @v/list, kept for the list TTL.
type moduleList struct {
	at       time.Time
	versions []string // the answer: merged, in semver order
	// upstream is the upstream's own list when it answered, kept to answer
	// with when it fails later (stale if error); upstreamOK says it did.
	upstream   []string
	upstreamOK bool
	latest     *Version // the @latest answer once computed; nil before
	// notFound, if not empty, is the answer instead of versions: the
	// module is neither stored nor known upstream, for this reason (see
	// notFoundReason). The go command looks up every prefix of a
	// package's path, so most of these are paths that are no module,
	// asked again by every 'go get' of the package; and anyone may ask
	// for as many made-up paths as they like, so each keeps little.
	notFound string
}

// notFoundError returns the answer of l, a not-found answer for path.
func (l *moduleList) notFoundError(path string) error {
	return &Error{Kind: ErrNotFound, Path: path, Err: errors.New(l.notFound)}
}

// maxNotFoundReason bounds the reason kept with a not-found answer, in
// bytes.
const maxNotFoundReason = 200

// notFoundReason returns what a not-found answer keeps of err, the
// upstream's not found: its first line, at most maxNotFoundReason bytes,
// in a string of its own. That line names the proxy and its status
// ("reading https://proxy.golang.org/m/@v/list: 404 Not Found"); what
// follows is the proxy's explanation, up to 8 lines of it, which would
// make the answer several times larger.
func notFoundReason(err error) string {
	msg, _, _ := strings.Cut(cause(err).Error(), "\n")
	if len(msg) > maxNotFoundReason {
		msg = msg[:maxNotFoundReason]
		for !utf8.ValidString(msg) { // cut in the middle of a rune
			msg = msg[:len(msg)-1]
		}
	}
	return strings.Clone(msg) // not the whole error's string
}

// listCacheSize bounds the number of lists, and not-found answers, that
// listCache keeps.
const listCacheSize = 1 << 16

// listCache holds moduleLists by module path, at most max of them. A list
// is fresh for ttl after it was made; after that it is made again when
// asked for, and the expired one, which may still serve the upstream's
// last list (see computeList), stays until the cache is full.
type listCache struct {
	mu  sync.RWMutex
	m   map[string]*moduleList
	max int
	ttl time.Duration
}

func (c *listCache) init(max int, ttl time.Duration) {
	c.m = make(map[string]*moduleList)
	c.max, c.ttl = max, ttl
}

// fresh reports whether l may be served at now.
func (c *listCache) fresh(l *moduleList, now time.Time) bool {
	return now.Sub(l.at) < c.ttl
}

func (c *listCache) get(path string) *moduleList {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[path]
}

// put keeps l as path's list, unless path's list was dropped since st was
// taken. A full cache first drops what has expired at now; if fresh lists
// still fill more than three quarters of it, it drops them all. Made-up
// paths thus hold a full cache's worth of memory at most, and only until
// their answers expire; and the cache is gone through once per quarter of
// its size at most.
func (c *listCache) put(path string, l *moduleList, st stamp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.current() {
		return
	}
	if len(c.m) >= c.max {
		maps.DeleteFunc(c.m, func(_ string, l *moduleList) bool { return !c.fresh(l, now) })
		if len(c.m) > c.max/4*3 {
			clear(c.m)
		}
	}
	c.m[path] = l
}

// setLatest records the @latest answer of the list it was computed from,
// unless the list was replaced meanwhile.
func (c *listCache) setLatest(path string, l *moduleList, v *Version) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[path] == l {
		cp := *l
		cp.latest = v
		c.m[path] = &cp
	}
}

func (c *listCache) forget(path string) {
	c.mu.Lock()
	delete(c.m, path)
	c.mu.Unlock()
}

func (c *listCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// List returns the versions of path in semver order: the body of
// GET /{module}/@v/list. They are the live stored versions merged with the
// upstream's list when path has an upstream, leaving out versions deleted
// here, and tags stored with an .info alone that the upstream, answering,
// does not list (see mergeLists); pseudo-versions are listed only when
// there is nothing else. The answer is reused for the list TTL; when the
// upstream fails, its last list (or none) is merged instead. A module
// neither stored nor known upstream is ErrNotFound, an answer reused for
// the list TTL too (a publish or a fetch of the path drops it), which says
// in a line what the upstream answered; one whose versions were all
// deleted has an empty list.
func (s *Service) List(ctx context.Context, path string) ([]string, error) {
	l, cached, err := s.moduleList(ctx, path)
	s.observe("list", cached)
	if err != nil {
		return nil, err
	}
	return l.versions, nil
}

// moduleList returns path's list from memory while it is fresh, and
// reports true then, else computes it once for all concurrent callers.
func (s *Service) moduleList(ctx context.Context, path string) (*moduleList, bool, error) {
	if l := s.lists.get(path); l != nil && s.lists.fresh(l, s.now()) {
		if l.notFound != "" {
			return nil, true, l.notFoundError(path)
		}
		return l, true, nil
	}
	if err := checkPath(path); err != nil {
		return nil, false, err
	}
	what := path + "/@v/list"
	s.detached.Start(what)
	ch := s.listFetches.DoChan(path, func() (any, error) {
		lctx, cancel := s.detached.detach(ctx, listTimeout)
		defer cancel()
		return s.computeList(lctx, path, s.lists.get(path))
	})
	select {
	case r := <-ch:
		s.detached.Done(what)
		if r.Err != nil {
			return nil, false, r.Err
		}
		return r.Val.(*moduleList), false, nil
	case <-ctx.Done():
		go func() { <-ch; s.detached.Done(what) }() // for Wait
		return nil, false, ctx.Err()
	}
}

// computeList merges path's stored versions with its upstream's list.
// stale is the previous answer, if any.
func (s *Service) computeList(ctx context.Context, path string, stale *moduleList) (*moduleList, error) {
	st := s.stamps.take()
	records, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	l := &moduleList{at: s.now()}
	var upErr error
	if up := s.upstreamFor(path); up != nil {
		// Too busy to ask is an upstream failure: stale or stored versions
		// are still served.
		var release func()
		if release, upErr = acquire(ctx, s.smallWork); upErr == nil {
			l.upstream, _, upErr = up.List(ctx, path)
			release()
		}
		switch {
		case upErr == nil:
			l.upstreamOK = true
		case errors.Is(upErr, upstream.ErrNotFound):
			l.upstream = nil
		case stale != nil && stale.upstreamOK:
			s.logFallback("the upstream failed to list a module: serving its last list", upErr, "module", path)
			l.upstream, l.upstreamOK = stale.upstream, true
		case len(records) > 0:
			s.logFallback("the upstream failed to list a module: serving the stored versions", upErr, "module", path)
			l.upstream = nil
		default:
			s.logFallback("the upstream failed to list a module, and none of its versions is stored: answering not found", upErr, "module", path)
			l.upstream = nil
		}
	}
	if len(records) == 0 && !l.upstreamOK {
		if upErr != nil && !errors.Is(upErr, upstream.ErrNotFound) {
			return nil, lookupError(path, "", upErr) // not kept: asked again next time
		}
		l.notFound = "no versions"
		if upErr != nil {
			l.notFound = notFoundReason(lookupError(path, "", upErr))
		}
		s.lists.put(path, l, st, s.now())
		return nil, l.notFoundError(path)
	}
	l.versions = mergeLists(records, l.upstream, l.upstreamOK)
	s.lists.put(path, l, st, s.now())
	return l, nil
}

// mergeLists returns the live versions among records and the versions
// upstream lists, except those deleted here, in semver order;
// pseudo-versions only if there is nothing else. upstreamOK says that
// the upstream answered with upstreamList (just now, or earlier for a list
// kept for when it fails).
//
// A tag recorded with its .info alone is then left out unless the
// upstream lists it, as the @v/list file leaves it out (see writeList):
// nothing of it can be downloaded from here, and an upstream that named it
// once (in its @latest, or the .info of a query) may never serve it.
// Listed, it would be the module's @latest for good (a module with tags
// has its highest, without asking the upstream), which the go command
// then fails to download. Without an answer from the upstream it is
// listed, as all that is known of the module. A pseudo-version recorded
// so is listed too: only when there is no tag, and @latest asks the
// upstream before taking it.
func mergeLists(records []*Version, upstreamList []string, upstreamOK bool) []string {
	upstreamHas := make(map[string]bool, len(upstreamList))
	for _, v := range upstreamList {
		upstreamHas[v] = true
	}
	recorded := make(map[string]bool, len(records))
	all := make([]*Version, 0, len(records)+len(upstreamList))
	for _, v := range records {
		recorded[v.Version] = true
		if upstreamOK && !v.Has(storage.Mod) && !isPseudo(v.Version) && !upstreamHas[v.Version] {
			continue
		}
		all = append(all, v)
	}
	for _, v := range upstreamList {
		if !recorded[v] && semver.IsValid(v) {
			recorded[v] = true
			all = append(all, &Version{Version: v})
		}
	}
	return listed(all)
}

// Latest returns the version that GET /{module}/@latest reports: the latest
// of the module's list by the go command's rule (the highest release, else
// pre-release), its .info fetched if needed. A module without tags has the
// upstream's @latest, typically a pseudo-version of its default branch:
// pseudo-versions stored here, from earlier requests for commits, may be
// behind it. Only when the upstream does not answer, or there is none, is
// the latest stored pseudo-version the answer, as it is offline. The answer
// is reused with the list.
func (s *Service) Latest(ctx context.Context, path string) (*Version, error) {
	v, hit, err := s.latest(ctx, path)
	s.observe("latest", hit)
	return v, err
}

// latest is Latest, and reports whether the answer came from what is
// stored and kept in memory (hit), nothing recomputed or fetched: a
// request for @latest counts as such, not as a list (see Observer).
func (s *Service) latest(ctx context.Context, path string) (v *Version, hit bool, err error) {
	l, hit, err := s.moduleList(ctx, path)
	if err != nil && !(errors.Is(err, ErrNotFound) && s.upstreamFor(path) != nil) {
		return nil, hit, err
	}
	if l != nil && l.latest != nil {
		v := *l.latest
		return &v, hit, nil
	}
	stored := ""
	if l != nil {
		stored = LatestVersion(l.versions)
	}
	fetched := false
	switch {
	case stored != "" && !isPseudo(stored):
		v, fetched, err = s.resolve(ctx, path, stored, storage.Info, s.stamps.take())
	case stored == "":
		v, err = s.upstreamLatest(ctx, path)
		fetched = s.upstreamFor(path) != nil
	case s.upstreamFor(path) != nil && l.upstreamOK:
		fetched = true
		// A caller that gave up gets its context's error: the upstream
		// has not failed, and nobody waits for the fallback.
		if v, err = s.upstreamLatest(ctx, path); err != nil && ctx.Err() == nil {
			s.logFallback("the upstream failed to give a module's latest version: serving the latest stored pseudo-version", err, "module", path, "version", stored)
			v, _, err = s.resolve(ctx, path, stored, storage.Info, s.stamps.take())
		}
	default: // no upstream, or it failed to list the module just now
		v, fetched, err = s.resolve(ctx, path, stored, storage.Info, s.stamps.take())
	}
	hit = hit && !fetched
	if err != nil {
		return nil, hit, err
	}
	if l != nil {
		s.lists.setLatest(path, l, v)
	}
	return v, hit, nil
}

// upstreamLatest asks path's upstream for its @latest and stores that
// version's .info. Concurrent requests share one upstream request; a
// caller that gives up does not cancel it for the others.
func (s *Service) upstreamLatest(ctx context.Context, path string) (*Version, error) {
	up := s.upstreamFor(path)
	if up == nil {
		return nil, errorf(ErrNotFound, path, "", "no versions")
	}
	return s.lookUp(ctx, "latest "+path, path, "", func(ctx context.Context) (*upstream.Info, string, error) {
		return up.Latest(ctx, path)
	})
}

// logFallback logs that the upstream failed with err and what is served
// instead: a warning, unless the upstream is down (upstream.ErrDown), which
// was logged once, when it went down; a line for every list asked for while
// it is would drown the log.
func (s *Service) logFallback(msg string, err error, args ...any) {
	level := slog.LevelWarn
	if errors.Is(err, upstream.ErrDown) {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, msg, append(args, "err", err)...)
}
