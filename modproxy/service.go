package modproxy

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"agora/storage"
)

// Service is the registry. Its methods are safe for concurrent use.
type Service struct {
	meta    Metadata
	blobs   storage.Store
	tempDir string
	now     func() time.Time
	log     *slog.Logger

	live         liveCache
	small        smallFiles
	listLocks    [64]sync.Mutex  // serialise rewriting one module's @v/list file
	versionLocks [256]sync.Mutex // serialise writing and removing one version's files
}

// stripe returns the mutex of key among locks.
func stripe(locks []sync.Mutex, key string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &locks[h.Sum32()%uint32(len(locks))]
}

// lockVersion locks path@version's files against concurrent writes and
// removals in this process, and returns the unlock function. Publishing
// holds it from the transaction until its files are written; removing files
// after a delete holds it while it checks the record and removes them, so a
// version restored meanwhile keeps its files.
func (s *Service) lockVersion(path, version string) func() {
	mu := stripe(s.versionLocks[:], path+"@"+version)
	mu.Lock()
	return mu.Unlock
}

// Config holds what a Service is made of.
type Config struct {
	Metadata Metadata
	Blobs    storage.Store
	// TempDir receives uploads while they are checked. It should be on the
	// same file system as the blob store so that storing is a cheap copy.
	TempDir string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives what the registry cannot return to a caller, such as a
	// failure to remove a deleted version's files; nil discards it.
	Logger *slog.Logger
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		meta:    cfg.Metadata,
		blobs:   cfg.Blobs,
		tempDir: cfg.TempDir,
		now:     cfg.Now,
		log:     cfg.Logger,
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
	return s
}

// Stat returns the record of a live version. It serves the .info, .mod and
// .zip routes' lookups, so it answers from memory when it can: a live
// version only ever changes by being deleted, which forgets it here.
func (s *Service) Stat(ctx context.Context, path, version string) (*Version, error) {
	if v := s.live.get(path, version); v != nil {
		return v, nil
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if module.CanonicalVersion(version) != version {
		// A branch name, a commit hash, or a non-canonical query: with no
		// upstream to resolve it, nothing here can answer it.
		return nil, errorf(ErrNotFound, path, version, "unknown revision %s", version)
	}
	v, err := s.meta.Version(ctx, path, version)
	if err != nil {
		return nil, err
	}
	if !v.Live() {
		return nil, gone(v)
	}
	s.live.put(v)
	return v, nil
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
// A live version's files never change, so small .info and .mod files are
// served from memory once read.
func (s *Service) Open(ctx context.Context, path, version string, kind storage.Kind) (storage.File, *Version, error) {
	v, err := s.Stat(ctx, path, version)
	if err != nil {
		return nil, nil, err
	}
	key := path + "@" + version + string(kind)
	if kind != storage.Zip {
		if f := s.small.open(key); f != nil {
			return f, v, nil
		}
	}
	f, err := s.blobs.Open(ctx, path, version, kind)
	if err == nil {
		if kind != storage.Zip {
			return s.small.load(key, f), v, nil
		}
		return f, v, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	// The cache said live but the file is gone: another node may have
	// deleted it. Ask the database again.
	s.forget(path, version)
	if v, err := s.meta.Version(ctx, path, version); err == nil && !v.Live() {
		return nil, nil, gone(v)
	}
	s.log.Error("a live version's file is missing from storage", "module", path, "version", version, "kind", string(kind))
	return nil, nil, errorf(ErrNotFound, path, version, "%s file missing from storage", kind)
}

// List returns the live versions of path in semver order: the body of
// GET /{module}/@v/list. Pseudo-versions are listed only when there is
// nothing else. A module with no record at all is ErrNotFound; one whose
// versions were all deleted has an empty list.
func (s *Service) List(ctx context.Context, path string) ([]string, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errorf(ErrNotFound, path, "", "no versions")
	}
	return listed(all), nil
}

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

// Latest returns the version that GET /{module}/@latest reports: the highest
// live release, else pre-release, else pseudo-version.
func (s *Service) Latest(ctx context.Context, path string) (*Version, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	var live []string
	byVersion := make(map[string]*Version, len(all))
	for _, v := range all {
		if v.Live() {
			live = append(live, v.Version)
			byVersion[v.Version] = v
		}
	}
	if len(live) == 0 {
		return nil, errorf(ErrNotFound, path, "", "no versions")
	}
	return byVersion[LatestVersion(live)], nil
}

// writeList rewrites path's @v/list file in storage from the database, so
// that the storage tree stays usable as a GOPROXY=file:// directory.
func (s *Service) writeList(ctx context.Context, path string) {
	mu := stripe(s.listLocks[:], path)
	mu.Lock()
	defer mu.Unlock()

	all, err := s.meta.Versions(ctx, path)
	if err == nil {
		err = s.blobs.PutList(ctx, path, listed(all))
	}
	if err != nil {
		s.log.Error("rewriting @v/list in storage", "module", path, "err", err)
	}
}

// forget drops what memory holds of path@version.
func (s *Service) forget(path, version string) {
	s.live.forget(path, version)
	for _, kind := range []storage.Kind{storage.Info, storage.Mod} {
		s.small.forget(path + "@" + version + string(kind))
	}
}

// liveCacheSize bounds the number of live versions remembered by Stat.
const liveCacheSize = 1 << 16

// liveCache remembers live versions so that serving a download needs no
// database query. When full, it forgets an arbitrary half of its entries.
type liveCache struct {
	mu  sync.RWMutex
	m   map[string]*Version
	max int
}

func (c *liveCache) init(max int) {
	c.m = make(map[string]*Version)
	c.max = max
}

// get returns a copy of the cached record, or nil.
func (c *liveCache) get(path, version string) *Version {
	c.mu.RLock()
	v := c.m[path+"@"+version]
	c.mu.RUnlock()
	if v == nil {
		return nil
	}
	cp := *v
	return &cp
}

func (c *liveCache) put(v *Version) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	c.m[v.Path+"@"+v.Version] = &cp
}

func (c *liveCache) forget(path, version string) {
	c.mu.Lock()
	delete(c.m, path+"@"+version)
	c.mu.Unlock()
}

// smallFilesBytes bounds the memory holding .info and .mod files, and
// maxSmallFile the size of one.
const (
	smallFilesBytes = 8 << 20
	maxSmallFile    = 16 << 10
)

// smallFiles holds the content of small immutable files by key. When full,
// it forgets an arbitrary half of its entries.
type smallFiles struct {
	mu    sync.RWMutex
	m     map[string]*memFileData
	bytes int
	max   int
}

// memFileData is the content and file information of a file held in memory.
type memFileData struct {
	data []byte
	info fs.FileInfo
}

func (c *smallFiles) init(max int) {
	c.m = make(map[string]*memFileData)
	c.max = max
}

// open returns the file held under key, or nil.
func (c *smallFiles) open(key string) storage.File {
	c.mu.RLock()
	d := c.m[key]
	c.mu.RUnlock()
	if d == nil {
		return nil
	}
	return &memFile{Reader: bytes.NewReader(d.data), d: d}
}

// load returns f as a file to serve, holding its content in memory if it is
// small; it closes f when it reads it.
func (c *smallFiles) load(key string, f storage.File) storage.File {
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
	c.mu.Lock()
	if c.bytes+len(data) > c.max {
		for k, old := range c.m { // map iteration order is random
			delete(c.m, k)
			if c.bytes -= len(old.data); c.bytes <= c.max/2 {
				break
			}
		}
	}
	if old := c.m[key]; old != nil {
		c.bytes -= len(old.data)
	}
	c.m[key] = d
	c.bytes += len(data)
	c.mu.Unlock()
	return &memFile{Reader: bytes.NewReader(data), d: d}
}

func (c *smallFiles) forget(key string) {
	c.mu.Lock()
	if old := c.m[key]; old != nil {
		c.bytes -= len(old.data)
		delete(c.m, key)
	}
	c.mu.Unlock()
}

// memFile is a storage.File whose content is in memory.
type memFile struct {
	*bytes.Reader
	d *memFileData
}

func (f *memFile) Close() error               { return nil }
func (f *memFile) Stat() (fs.FileInfo, error) { return f.d.info, nil }
