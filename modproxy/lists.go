package modproxy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

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
	// notFound, if not nil, is the answer instead of versions: the module
	// is neither stored nor known upstream. The go command looks up every
	// prefix of a package's path, so most of these are paths that are no
	// module, asked again by every 'go get' of the package.
	notFound error
}

// listCache holds moduleLists by module path.
type listCache struct {
	mu sync.RWMutex
	m  map[string]*moduleList
}

func (c *listCache) init() { c.m = make(map[string]*moduleList) }

func (c *listCache) get(path string) *moduleList {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[path]
}

// put keeps l as path's list, unless path's list was dropped since st was
// taken.
func (c *listCache) put(path string, l *moduleList, st stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.current() {
		return
	}
	if len(c.m) >= liveCacheSize {
		clear(c.m)
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
// here; pseudo-versions are listed only when there is nothing else. The
// answer is reused for the list TTL; when the upstream fails, its last list
// (or none) is merged instead. A module neither stored nor known upstream
// is ErrNotFound, an answer reused for the list TTL too (a publish or a
// fetch of the path drops it); one whose versions were all deleted has an
// empty list.
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
	if l := s.lists.get(path); l != nil && s.now().Sub(l.at) < s.listTTL {
		if l.notFound != nil {
			return nil, true, l.notFound
		}
		return l, true, nil
	}
	if err := checkPath(path); err != nil {
		return nil, false, err
	}
	what := path + "/@v/list"
	s.detached.start(what)
	ch := s.listFetches.DoChan(path, func() (any, error) {
		lctx, cancel := s.detached.detach(ctx, listTimeout)
		defer cancel()
		return s.computeList(lctx, path, s.lists.get(path))
	})
	select {
	case r := <-ch:
		s.detached.done(what)
		if r.Err != nil {
			return nil, false, r.Err
		}
		return r.Val.(*moduleList), false, nil
	case <-ctx.Done():
		go func() { <-ch; s.detached.done(what) }() // for Wait
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
		if release, upErr = s.smallWork.acquire(ctx); upErr == nil {
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
		l.notFound = errorf(ErrNotFound, path, "", "no versions")
		if upErr != nil {
			l.notFound = lookupError(path, "", upErr)
		}
		s.lists.put(path, l, st)
		return nil, l.notFound
	}
	l.versions = mergeLists(records, l.upstream)
	s.lists.put(path, l, st)
	return l, nil
}

// mergeLists returns the live versions among records and the versions
// upstream lists, except those deleted here, in semver order;
// pseudo-versions only if there is nothing else.
func mergeLists(records []*Version, upstreamList []string) []string {
	recorded := make(map[string]bool, len(records))
	all := make([]*Version, 0, len(records)+len(upstreamList))
	for _, v := range records {
		recorded[v.Version] = true
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
		if v, err = s.upstreamLatest(ctx, path); err != nil {
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
