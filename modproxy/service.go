package modproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/sync/singleflight"

	"agora/internal/running"
	"agora/internal/slots"
	"agora/storage"
	"agora/upstream"
)

// Service is the registry. Its methods are safe for concurrent use.
type Service struct {
	meta      Metadata
	blobs     storage.Store
	tempDir   string
	now       func() time.Time
	log       *slog.Logger
	upstreams func(path string) Upstream
	checker   Checker
	observer  Observer

	live         liveCache
	small        smallFiles
	lists        listCache
	stamps       stamps             // how often anything was dropped from memory
	fetches      singleflight.Group // one upstream request at a time per file, query and @latest
	listFetches  singleflight.Group // path: one upstream list per module
	listLocks    [64]sync.Mutex     // serialise rewriting one module's @v/list file
	versionLocks [256]sync.Mutex    // serialise writing and removing one version's files (see lockVersion)
	detached     detachedWork       // shared fetches and lists, which outlive their callers
	zipWork      *slots.Slots       // zip fetches and restores under way
	smallWork    *slots.Slots       // the rest: .info, .mod, queries, @latest, lists
	// restoreInfoWait bounds the wait for an upstream's .info when a lost
	// one is restored (see restoreInfo).
	restoreInfoWait time.Duration
}

// detachedWork counts the work that runs apart from the requests that
// started it, by what it is (callers whose answer is still to come), so
// that Wait can wait for it and name it.
type detachedWork struct {
	running.Set[string]

	mu        sync.Mutex
	abandoned context.Context // done once Abandon is called
	abandon   context.CancelFunc
}

// detach returns the context of work that outlives the caller of ctx: with
// ctx's values and none of its cancellation, ending after timeout or when
// the work is abandoned (see Service.Abandon).
func (d *detachedWork) detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	d.mu.Lock()
	if d.abandoned == nil {
		d.abandoned, d.abandon = context.WithCancel(context.Background())
	}
	abandoned := d.abandoned
	d.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	stop := context.AfterFunc(abandoned, cancel)
	return wctx, func() { stop(); cancel() }
}

// Wait waits until no fetch or list that a request started is running,
// or until ctx is done: then it returns ctx's error, naming what still
// runs. Such work goes on after its requests have been answered or have
// given up (other requests may share it, and what it fetched is kept), so
// a server that shuts down waits for it before it closes the database.
func (s *Service) Wait(ctx context.Context) error {
	if s.detached.Wait(ctx) {
		return nil
	}
	names := s.detached.Keys()
	if len(names) == 0 { // ended just then
		return nil
	}
	slices.Sort(names)
	return fmt.Errorf("still running: %s: %w", strings.Join(names, ", "), ctx.Err())
}

// Abandon cancels the fetches and lists still running apart from their
// requests (see Wait), and those started after: they end with their
// context's error, removing what they wrote to the temporary directory.
// A server that shuts down calls it when Wait gives up, then waits
// briefly again, so that the work ends before the database is closed.
func (s *Service) Abandon() {
	d := &s.detached
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.abandoned == nil {
		d.abandoned, d.abandon = context.WithCancel(context.Background())
	}
	d.abandon()
}

// stripe returns the mutex of key among locks.
func stripe(locks []sync.Mutex, key string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &locks[h.Sum32()%uint32(len(locks))]
}

// lockVersion runs fn while it holds path@version's lock, and returns
// fn's error. Whatever writes or removes the version's files holds it
// from its reading the version's record, to decide what to write, until
// the files are written and what it recorded is committed: a fetch
// storing what it downloaded, a publish, an import, a restore of a lost
// file, the removal of a deleted version's files. Else one could write a
// file over another that the other's record now announces, so that
// storage serves content with other hashes than the record's, and every
// go command that downloads the version fails its go.sum check; or write
// a file after a delete removed the version's files, which the storage
// tree, a GOPROXY=file:// directory, then serves. They run in other
// processes too, which share the database and the storage directory
// (nodes on one PostgreSQL; agora import beside the server), so the lock
// is Metadata.Exclusive's, then a mutex of this process, for a store whose
// Exclusive keeps only other processes out. Serving stored files takes no
// lock.
//
// fn gets ctx with the lock held. A fetch, which holds its file's
// Exclusive while it downloads, calls lockVersion with the context that
// Exclusive gave it: the version's lock is then nested in it.
func (s *Service) lockVersion(ctx context.Context, path, version string, fn func(ctx context.Context) error) error {
	return s.meta.Exclusive(ctx, "version "+path+"@"+version, func(ctx context.Context) error {
		mu := stripe(s.versionLocks[:], path+"@"+version)
		mu.Lock()
		defer mu.Unlock()
		return fn(ctx)
	})
}

// Config holds what a Service is made of.
type Config struct {
	Metadata Metadata
	Blobs    storage.Store
	// TempDir receives uploads, fetched zips and copies of imported zips
	// while they are checked. On the blob store's file system, storing one
	// is a rename; elsewhere, a copy.
	TempDir string
	// Upstream returns the upstream proxy that path's public versions are
	// fetched from, or nil to serve path only from what is stored (a
	// private path, or no upstream at all). A nil func means no upstream.
	Upstream func(path string) Upstream
	// Checker verifies fetched versions against a checksum database; nil
	// skips verification.
	Checker Checker
	// ListTTL is how long a module's version list, merged from the
	// upstream's and the stored versions, is reused; 0 means DefaultListTTL.
	ListTTL time.Duration
	// Observer counts cache hits and misses, and restored files; nil
	// counts nothing.
	Observer Observer
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives what the registry cannot return to a caller, such as a
	// failure to remove a deleted version's files; nil discards it.
	Logger *slog.Logger
}

// DefaultListTTL is how long a version list is reused by default.
const DefaultListTTL = 60 * time.Second

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		meta:      cfg.Metadata,
		blobs:     cfg.Blobs,
		tempDir:   cfg.TempDir,
		now:       cfg.Now,
		log:       cfg.Logger,
		upstreams: cfg.Upstream,
		checker:   cfg.Checker,
		observer:  cfg.Observer,
		zipWork:   slots.New("zip fetches", maxZipWork, maxWaiting),
		smallWork: slots.New("fetches", maxSmallWork, maxWaiting),

		restoreInfoWait: restoreInfoWait,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.tempDir == "" {
		s.tempDir = os.TempDir()
	}
	s.live.init(liveCacheSize)
	s.small.init(smallFilesBytes)
	listTTL := cfg.ListTTL
	if listTTL <= 0 {
		listTTL = DefaultListTTL
	}
	s.lists.init(listCacheSize, listTTL)
	return s
}

// createTemp creates a new file in the temporary directory, as
// os.CreateTemp does, making the directory again if it was removed while
// the server runs: it is made only at start, and uploads and fetches would
// otherwise fail until a restart.
func (s *Service) createTemp(pattern string) (*os.File, error) {
	f, err := os.CreateTemp(s.tempDir, pattern)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(s.tempDir, 0o700); err != nil {
			return nil, err
		}
		f, err = os.CreateTemp(s.tempDir, pattern)
	}
	return f, err
}

// CheckTempDir returns an error when uploads and fetches cannot be staged
// in the temporary directory (see storage.Probe). It serves /readyz.
func (s *Service) CheckTempDir() error {
	f, err := s.createTemp(".readyz-*")
	if err != nil {
		return err
	}
	return storage.Probe(f)
}

// observe reports a hit or a miss of kind to the observer.
func (s *Service) observe(kind string, hit bool) {
	if s.observer != nil {
		s.observer.CacheRequest(kind, hit)
	}
}

// resolve returns the record of path@version once its file of kind is
// stored: from the database, or fetched from path's upstream. A query
// instead of a canonical version (a branch, a commit) is resolved by the
// upstream, for .info only, and the canonical version's record returned;
// a commit that no upstream resolves, by the stored pseudo-version that
// names it (see storedCommit); and a version that path cannot carry and
// its +incompatible one can, by that one (see incompatibleVersion). A
// stored version without an .info whose upstream cannot give one (there
// is none, it failed, or it does not know the version) has its record
// returned for .info all the same, with a zero Time: see Open.
// fetched reports whether the upstream was asked. The record is kept in
// memory unless path@version was dropped from it since st was taken.
func (s *Service) resolve(ctx context.Context, path, version string, kind storage.Kind, st stamp) (v *Version, fetched bool, err error) {
	if err := checkPath(path); err != nil {
		return nil, false, err
	}
	up := s.upstreamFor(path)
	if isQuery(version) {
		if kind != storage.Info {
			return nil, false, errorf(ErrNotFound, path, version, "unknown revision %s", version)
		}
		if up == nil {
			v, err := s.storedCommit(ctx, path, version)
			if v != nil {
				s.live.put(v, st)
			}
			return v, false, err
		}
		v, err := s.resolveQuery(ctx, up, path, version)
		if errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			// The upstream cannot resolve it (it is down, or does not
			// know the commit, as a GOPROXY file tree knows none): a
			// commit that a stored pseudo-version names is that one.
			if stored, serr := s.storedCommit(ctx, path, version); serr == nil {
				s.log.Debug("serving the stored pseudo-version of a commit the upstream did not resolve", "module", path, "query", version, "version", stored.Version, "err", err)
				s.live.put(stored, st)
				return stored, true, nil
			}
		}
		return v, true, err
	}
	if incompatible, ok := incompatibleVersion(path, version); ok {
		if kind != storage.Info {
			return nil, false, errorf(ErrNotFound, path, version, "unknown revision %s", version)
		}
		return s.resolve(ctx, path, incompatible, kind, st)
	}
	v, err = s.meta.Version(ctx, path, version)
	switch {
	case err == nil && !v.Live():
		return nil, false, gone(v)
	case err == nil && v.Has(kind):
		s.live.put(v, st)
		return v, false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return nil, false, err
	case up == nil && err != nil:
		return nil, false, err
	case up == nil && kind == storage.Info:
		s.live.put(v, st)
		return v, false, nil
	case up == nil:
		return nil, false, errorf(ErrNotFound, path, version, "%s file not stored, and there is no upstream to fetch it from", kind)
	}
	if err := checkVersion(path, version); err != nil {
		return nil, false, errorf(ErrNotFound, path, version, "%v", cause(err))
	}
	recorded := v
	v, err = s.fetch(ctx, up, path, version, kind)
	if err != nil {
		if kind == storage.Info && recorded != nil && !errors.Is(err, ErrGone) && ctx.Err() == nil {
			s.log.Debug("serving a stored version's .info without a time", "module", path, "version", version, "err", err)
			return recorded, true, nil
		}
		return nil, true, err
	}
	if v.Has(kind) {
		// Else an .info without a time, which the version's record, if
		// it has one, does not announce: see storeInfo.
		s.live.put(v, st)
	}
	return v, true, nil
}

// incompatibleVersion returns version+"+incompatible" when version is a
// canonical version that path cannot carry but that one can: v2.0.0 of a
// path without a major-version suffix. The go command asks for the .info
// of such a version ('go get m@v2.0.0') and takes the +incompatible one
// that a proxy answers with (cmd/go's proxyRepo.Stat holds a proxy to the
// version asked for only when that one is valid for the path), as the go
// command itself resolves it from version control; it can name nothing
// else.
func incompatibleVersion(path, version string) (string, bool) {
	if semver.Build(version) != "" || module.Check(path, version) == nil {
		return "", false
	}
	incompatible := version + "+incompatible"
	return incompatible, module.Check(path, incompatible) == nil
}

// storedCommit returns the record of the live pseudo-version of path that
// names the commit query, a hexadecimal commit hash of at least 12 digits
// (a pseudo-version names the first 12), or an ErrNotFound error. Of
// several (a commit's pseudo-version depends on the tags before it), the
// highest is the answer. This is how the go command resolves a commit from
// its module cache when it may ask no proxy (cmd/go's readDiskStatByHash),
// and how a commit resolves here when no upstream can: for a module
// published here (which has none), offline, or with the upstream down.
// Branches and other queries name no commit of their own, and stay unknown.
func (s *Service) storedCommit(ctx context.Context, path, query string) (*Version, error) {
	if !isCommitHash(query) {
		return nil, errorf(ErrNotFound, path, query, "unknown revision %s", query)
	}
	records, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	var best *Version
	for _, v := range records {
		if !v.Live() || !isPseudo(v.Version) {
			continue
		}
		if rev, err := module.PseudoVersionRev(v.Version); err != nil || rev != query[:12] {
			continue
		}
		if best == nil || semver.Compare(v.Version, best.Version) > 0 {
			best = v
		}
	}
	if best == nil {
		return nil, errorf(ErrNotFound, path, query, "unknown revision %s", query)
	}
	return best, nil
}

// isCommitHash reports whether query may be a commit hash that a
// pseudo-version names: at least 12 lower-case hexadecimal digits, as the
// go command requires to look one up in its module cache.
func isCommitHash(query string) bool {
	if len(query) < 12 {
		return false
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// resolveQuery asks up for the version that query (a branch, a commit)
// names, and stores that version's .info (see lookUp).
func (s *Service) resolveQuery(ctx context.Context, up Upstream, path, query string) (*Version, error) {
	return s.lookUp(ctx, "query "+path+"@"+query, path, query, func(ctx context.Context) (*upstream.Info, string, error) {
		return up.Info(ctx, path, query)
	})
}

// lookUp asks an upstream, with ask, which version of path a query or
// @latest names, and stores that version's .info unless it is stored.
// Concurrent requests with the same key share one upstream request; a
// caller that gives up does not cancel it for the others.
func (s *Service) lookUp(ctx context.Context, key, path, query string, ask func(context.Context) (*upstream.Info, string, error)) (*Version, error) {
	r, err := s.shareFileWork(ctx, key, storage.Info, func(ctx context.Context) (any, error) {
		info, src, err := ask(ctx)
		if err != nil {
			return nil, lookupError(path, query, err)
		}
		if v := s.live.get(path, info.Version); v != nil && v.Has(storage.Info) {
			return v, nil
		}
		return s.storeInfo(ctx, path, info, src)
	})
	if err != nil {
		return nil, err
	}
	v := *r.(*Version) // shared: each caller gets its own copy
	return &v, nil
}

// gone returns the ErrGone error for a tombstoned version.
func gone(v *Version) error {
	what := "deleted"
	if v.Blocked {
		what = "blocked"
	}
	if v.DeleteReason != "" {
		return errorf(ErrGone, v.Path, v.Version, "%s: %s", what, v.DeleteReason)
	}
	return errorf(ErrGone, v.Path, v.Version, "%s", what)
}

// Open opens the stored file of the given kind of a live version: the body of
// GET /{module}/@v/{version}.info, .mod or .zip. The caller closes the file.
// A file not stored is fetched from path's upstream first, if it has one;
// for .info, version may be a query the upstream resolves, and the returned
// record names the canonical version. A version stored without an .info
// that the upstream cannot give has one made up, without a time (see
// timelessInfo); the record's zero Time tells it apart. A live version's
// record is kept in memory, and small .info and .mod files too.
//
// The .mod and zip of a version never change: the record pins their
// hashes. Its .info is pinned less: it says the recorded version and time,
// but may say more, such as the Origin field of an upstream's, and one put
// back after storage lost it may say otherwise (see restore). So an .info
// held in memory (up to 16 KiB; not one made up) has a method
// Digest() string, a digest of its bytes taken when they were read, for
// what must change whenever they do, such as an HTTP ETag.
func (s *Service) Open(ctx context.Context, path, version string, kind storage.Kind) (storage.File, *Version, error) {
	f, v, hit, err := s.open(ctx, path, version, kind)
	s.observe(observedKind(version, kind), hit)
	return f, v, err
}

// observedKind returns the kind of a request for version's file of kind, as
// the Observer is told it: "info", "mod" or "zip"; "query" for the .info of
// a query (see isQuery), which the upstream resolves, not a file.
func observedKind(version string, kind storage.Kind) string {
	if kind == storage.Info && isQuery(version) {
		return "query"
	}
	return string(kind[1:])
}

// open is Open, and reports whether the answer is a hit (see Observer): the
// file, or the version's tombstone, was found stored. A file neither
// stored nor fetched (there is no upstream, or the path or version is
// invalid) is a miss; and so is a file that storage had lost, whether
// restored or not (it was not stored, and the restore of a fetched
// version's zip asks the upstream as a miss does), or failed to read.
func (s *Service) open(ctx context.Context, path, version string, kind storage.Kind) (_ storage.File, _ *Version, hit bool, _ error) {
	// Taken before anything is read, so that nothing read before the
	// version changed is kept in memory after.
	st := s.stamps.take()
	v := s.live.get(path, version)
	if v == nil || !v.Has(kind) {
		var (
			fetched bool
			err     error
		)
		v, fetched, err = s.resolve(ctx, path, version, kind, st)
		if err != nil {
			return nil, nil, !fetched && errors.Is(err, ErrGone), err
		}
		hit = !fetched
	} else {
		hit = true
	}
	if kind == storage.Info && !v.Has(storage.Info) {
		return timelessInfo(v), v, hit, nil
	}
	key := fileKey{path, v.Version, kind}
	if kind != storage.Zip {
		if f := s.small.open(key); f != nil {
			return f, v, hit, nil
		}
	}
	f, err := s.blobs.Open(ctx, path, v.Version, kind)
	if err == nil {
		if kind != storage.Zip {
			return s.small.load(key, f, st), v, hit, nil
		}
		return f, v, hit, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false, err
	}
	// The cache said live but the file is gone: another node may have
	// deleted it. Ask the database again.
	s.forget(path, v.Version)
	cur, err := s.meta.Version(ctx, path, v.Version)
	switch {
	case err != nil:
		return nil, nil, false, err
	case !cur.Live():
		return nil, nil, hit, gone(cur)
	case !cur.Has(kind):
		return nil, nil, false, errorf(ErrNotFound, path, v.Version, "%s file not stored", kind)
	}
	// The record announces a file that storage has lost: put it back.
	err = s.restore(ctx, cur, kind)
	if err != nil {
		if errors.Is(err, ErrGone) || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Deleted meanwhile; or the caller left, and the restore
			// goes on without it.
			return nil, nil, false, err
		}
		switch {
		case errors.Is(err, ErrUpstream):
			// A bad gateway, as for a miss.
			return nil, nil, false, errorf(ErrUpstream, path, v.Version, "%s file missing from storage, and restoring it failed: %w", kind, cause(err))
		case errors.Is(err, ErrNotFound):
			// It cannot be restored here (an upload's or an import's
			// zip, no upstream): not here.
			return nil, nil, false, errorf(ErrNotFound, path, v.Version, "%s file missing from storage, and restoring it failed: %w", kind, cause(err))
		}
		// This side's failure (a full disk, the database), kept as it is.
		return nil, nil, false, fmt.Errorf("%s@%s: %s file missing from storage, and restoring it failed: %w", path, v.Version, kind, err)
	}
	f, err = s.blobs.Open(ctx, path, v.Version, kind)
	if errors.Is(err, fs.ErrNotExist) {
		// Gone again since the restore: another node's delete.
		if now, merr := s.meta.Version(ctx, path, v.Version); merr == nil && !now.Live() {
			return nil, nil, false, gone(now)
		}
	}
	if err != nil {
		return nil, nil, false, err
	}
	if kind != storage.Zip {
		// Into memory as any other small file, an .info with its
		// digest; not kept there, as the forget above moved the stamps.
		return s.small.load(key, f, st), cur, false, nil
	}
	return f, cur, false, nil
}

// timelessInfo returns the .info of a version stored without one: versions
// fetched for their .mod or zip alone, or imported from a module cache that
// had only their zip (go mod tidy downloads the zips of dependencies' test
// dependencies without an .info). The go command needs an .info to list a
// module (go list -m, go list -json), and its Time is optional in the
// protocol, so it gets one that names the version. It is made up for each
// request, not stored: the version's .info may be added later.
func timelessInfo(v *Version) storage.File {
	data, _ := infoFile(v.Version, time.Time{}) // cannot fail
	return (&memFileData{data: data, info: madeFileInfo{v.Version + string(storage.Info), int64(len(data))}}).open()
}

// madeFileInfo describes a file made up in memory.
type madeFileInfo struct {
	name string
	size int64
}

func (fi madeFileInfo) Name() string       { return fi.name }
func (fi madeFileInfo) Size() int64        { return fi.size }
func (fi madeFileInfo) Mode() fs.FileMode  { return 0o444 }
func (fi madeFileInfo) ModTime() time.Time { return time.Time{} }
func (fi madeFileInfo) IsDir() bool        { return false }
func (fi madeFileInfo) Sys() any           { return nil }

// listed returns the live versions among records, in semver order, leaving
// out pseudo-versions unless they are all there is.
func listed(records []*Version) []string {
	var tagged, pseudo []string
	for _, v := range records {
		switch {
		case !v.Live():
		case isPseudo(v.Version):
			pseudo = append(pseudo, v.Version)
		default:
			tagged = append(tagged, v.Version)
		}
	}
	list := tagged
	if len(list) == 0 {
		list = pseudo
	}
	sort.Slice(list, func(i, j int) bool { return semver.Compare(list[i], list[j]) < 0 })
	return list
}

// writeList rewrites path's @v/list file in storage from the database, so
// that the storage tree stays usable as a GOPROXY=file:// directory. The
// file names the versions whose .mod is stored, as the go command's module
// cache does (the go command takes the latest listed version for @latest
// and reads its .mod and zip, which a version fetched for its .info alone
// does not have), but pseudo-versions only when there are no others, as a
// proxy's list does (see listed). It follows a change already committed,
// which the file must show, so it runs to its end whatever becomes of
// ctx: a request whose client hangs up does not leave the file stale.
func (s *Service) writeList(ctx context.Context, path string) {
	if err := s.rewriteList(context.WithoutCancel(ctx), path); err != nil {
		s.log.Error("rewriting @v/list in storage", "module", path, "err", err)
	}
}

// rewriteList is writeList, returning its error.
func (s *Service) rewriteList(ctx context.Context, path string) error {
	mu := stripe(s.listLocks[:], path)
	mu.Lock()
	defer mu.Unlock()

	s.forgetList(path)
	// The lock above serialises this process only. Another node may
	// record a version and write its list between this one's reading the
	// database and writing the file, which the write would then undo; so
	// the database is read again after the write, and the file rewritten
	// until the two agree. A version recorded after that read is written
	// by its own node, after its record.
	written, err := s.listFile(ctx, path)
	for try := 0; err == nil; try++ {
		if err = s.blobs.PutList(ctx, path, written); err != nil {
			break
		}
		var now []string
		if now, err = s.listFile(ctx, path); err != nil || slices.Equal(now, written) {
			break
		}
		if try == 4 {
			err = errors.New("the versions kept changing while the file was written")
			break
		}
		written = now
	}
	return err
}

// listFile returns what path's @v/list file names: the versions whose .mod
// is stored (see writeList), from the database.
func (s *Service) listFile(ctx context.Context, path string) ([]string, error) {
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	return listOf(all), nil
}

// listOf returns what the @v/list file of a module with records names.
func listOf(records []*Version) []string {
	return listed(slices.DeleteFunc(slices.Clone(records), func(v *Version) bool { return !v.Has(storage.Mod) }))
}

// forget drops what memory holds of path@version. What a request read
// before is not kept after (see stamps).
func (s *Service) forget(path, version string) {
	s.stamps.bump()
	s.live.forget(path, version)
	for _, kind := range []storage.Kind{storage.Info, storage.Mod} {
		s.small.forget(fileKey{path, version, kind})
	}
}

// forgetList drops path's list from memory.
func (s *Service) forgetList(path string) {
	s.stamps.bump()
	s.lists.forget(path)
}

// Invalidate drops what this node holds in memory of path@version and of
// path's list, because the version's record changed in the database: in
// the process that changed it, or in another one sharing the database (an
// Agora node, agora import), which the database told this one of. The next
// request reads the record again.
func (s *Service) Invalidate(path, version string) {
	s.forget(path, version)
	s.forgetList(path)
}

// InvalidateAll drops everything this node holds in memory of versions and
// lists: for when changes made by other processes may have gone unnoticed,
// such as after the connection that announces them was lost.
func (s *Service) InvalidateAll() {
	s.stamps.bump()
	s.live.clear()
	s.small.clear()
	s.lists.clear()
}

// stamps counts how often anything was dropped from memory. A request
// that reads a record (or a file, or a list) takes a stamp first, and keeps
// what it read in memory only if the count has not moved since: otherwise a
// record read just before another request changed it could be kept after
// that request dropped it, and be served, stale, for as long as it stayed
// in memory. One count for everything costs the hot path one atomic load;
// a drop of something else only costs a request that overlapped it a read
// next time.
type stamps struct{ dropped atomic.Uint64 }

// stamp is the count of drops when it was taken.
type stamp struct {
	c *atomic.Uint64
	n uint64
}

// current reports whether nothing was dropped since st was taken.
func (st stamp) current() bool { return st.c.Load() == st.n }

func (s *stamps) take() stamp { return stamp{&s.dropped, s.dropped.Load()} }
func (s *stamps) bump()       { s.dropped.Add(1) }

// liveCacheSize bounds the number of live versions remembered by Stat.
const liveCacheSize = 1 << 16

// liveCache remembers live versions so that serving a download needs no
// database query. When full, it forgets an arbitrary half of its entries.
type liveCache struct {
	mu  sync.RWMutex
	m   map[versionKey]*Version
	max int
}

// versionKey is the key of path@version in memory. A struct of the two
// strings, rather than their concatenation, costs a lookup no allocation.
type versionKey struct{ path, version string }

// fileKey is the key of path@version's file of kind in memory.
type fileKey struct {
	path, version string
	kind          storage.Kind
}

func (c *liveCache) init(max int) {
	c.m = make(map[versionKey]*Version)
	c.max = max
}

// get returns a copy of the cached record, or nil.
func (c *liveCache) get(path, version string) *Version {
	c.mu.RLock()
	v := c.m[versionKey{path, version}]
	c.mu.RUnlock()
	if v == nil {
		return nil
	}
	cp := *v
	return &cp
}

// put keeps a copy of v, unless v was dropped since st was taken. The
// stamp is checked under the lock that forget's delete takes, after
// forget's bump, so a put either sees the bump or is undone by the delete.
func (c *liveCache) put(v *Version, st stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.current() {
		return
	}
	if len(c.m) >= c.max {
		n := 0
		for k := range c.m { // map iteration order is random
			delete(c.m, k)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	cp := *v
	c.m[versionKey{v.Path, v.Version}] = &cp
}

func (c *liveCache) forget(path, version string) {
	c.mu.Lock()
	delete(c.m, versionKey{path, version})
	c.mu.Unlock()
}

func (c *liveCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// smallFilesBytes bounds the memory holding .info and .mod files, and
// maxSmallFile the size of one.
const (
	smallFilesBytes = 8 << 20
	maxSmallFile    = 16 << 10
)

// smallFiles holds the content of small files by key: the .mod files of
// live versions, which never change, and their .info files, whose bytes
// may change when storage lost one and it is put back (see Open). When
// full, it forgets an arbitrary half of its entries.
type smallFiles struct {
	mu    sync.RWMutex
	m     map[fileKey]*memFileData
	bytes int
	max   int
}

// memFileData is the content and file information of a file held in memory.
type memFileData struct {
	data   []byte
	info   fs.FileInfo
	digest string // of an .info's data (see Open); empty for other kinds
}

// size returns the bytes that d holds.
func (d *memFileData) size() int { return len(d.data) + len(d.digest) }

// digest returns the digest of an .info file's data: its SHA-256, in
// unpadded URL-safe base64, which an ETag may quote as it is.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (c *smallFiles) init(max int) {
	c.m = make(map[fileKey]*memFileData)
	c.max = max
}

// open returns the file held under key, or nil.
func (c *smallFiles) open(key fileKey) storage.File {
	c.mu.RLock()
	d := c.m[key]
	c.mu.RUnlock()
	if d == nil {
		return nil
	}
	return d.open()
}

// load returns f as a file to serve: in memory, with an .info's digest,
// if it is small, and kept there if its version was not dropped since st
// was taken. It closes f when it reads it.
func (c *smallFiles) load(key fileKey, f storage.File, st stamp) storage.File {
	fi, err := f.Stat()
	if err != nil || fi.Size() > maxSmallFile {
		return f
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil || int64(len(data)) != fi.Size() {
		f.Seek(0, io.SeekStart)
		return f
	}
	f.Close()
	d := &memFileData{data: data, info: fi}
	if key.kind == storage.Info {
		d.digest = digest(data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.current() {
		return d.open()
	}
	if c.bytes+d.size() > c.max {
		for k, old := range c.m { // map iteration order is random
			delete(c.m, k)
			if c.bytes -= old.size(); c.bytes <= c.max/2 {
				break
			}
		}
	}
	if old := c.m[key]; old != nil {
		c.bytes -= old.size()
	}
	c.m[key] = d
	c.bytes += d.size()
	return d.open()
}

func (c *smallFiles) forget(key fileKey) {
	c.mu.Lock()
	if old := c.m[key]; old != nil {
		c.bytes -= old.size()
		delete(c.m, key)
	}
	c.mu.Unlock()
}

func (c *smallFiles) clear() {
	c.mu.Lock()
	clear(c.m)
	c.bytes = 0
	c.mu.Unlock()
}

// open returns a file reading d.
func (d *memFileData) open() *memFile {
	f := &memFile{d: d}
	f.Reset(d.data)
	return f
}

// memFile is a storage.File whose content is in memory.
type memFile struct {
	bytes.Reader
	d *memFileData
}

func (f *memFile) Close() error               { return nil }
func (f *memFile) Bytes() []byte              { return f.d.data }
func (f *memFile) Stat() (fs.FileInfo, error) { return f.d.info, nil }

// Digest returns the digest of an .info's bytes (see Open), empty for a
// file of another kind, or one made up.
func (f *memFile) Digest() string { return f.d.digest }
