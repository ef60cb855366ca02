package modproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/mod/module"

	"agora/checksum"
	"agora/storage"
	"agora/upstream"
)

// Upstream is a GOPROXY that public modules are fetched from: package
// upstream's *Client, which falls through a list of proxies as the go
// command does. Every method returns, besides its result, the URL of the
// proxy that answered, and an error wrapping upstream.ErrNotFound when no
// proxy has what was asked for.
type Upstream interface {
	Info(ctx context.Context, path, query string) (*upstream.Info, string, error)
	Latest(ctx context.Context, path string) (*upstream.Info, string, error)
	List(ctx context.Context, path string) ([]string, string, error)
	Mod(ctx context.Context, path, version string) ([]byte, string, error)
	Zip(ctx context.Context, path, version string) (io.ReadCloser, string, error)
}

// Checker asks a checksum database for the go.sum hashes of a version
// fetched from an upstream, which are checked before it is stored: package
// checksum's *DB. Lookup needs only the module and the version, so a fetch
// asks it while it downloads. It returns nil Sums for a path the database
// does not cover (GONOSUMDB), and an error when it cannot answer: the
// version is not in the database (wrapping checksum.ErrNotFound), or the
// database cannot be asked. The version is refused either way.
type Checker interface {
	Lookup(ctx context.Context, path, version string) (*checksum.Sums, error)
}

// Observer is told whether a download request was answered from what is
// stored (a hit) or not (a miss: it needed the upstream, what it asked for
// is neither stored nor fetched, or storage had lost it), and of every
// file that storage had lost and a request tried to restore (see
// restore): a sign of trouble with storage that an operator wants to hear
// of. Such a request is a miss whether the file was restored or not.
// The kind of a request is "info", "mod", "zip", "list", "latest", or
// "query" for the .info of a branch, a commit or another non-canonical
// version; a restore's is its file's. Package metrics implements it; nil
// is allowed.
type Observer interface {
	CacheRequest(kind string, hit bool)
	StorageRestore(kind string, ok bool)
}

// Fetch timeouts: how long a fetch that a client waits for may run, even
// after that client went away (others may wait for it too).
const (
	fetchSmallTimeout = 2 * time.Minute
	fetchZipTimeout   = 15 * time.Minute
)

// upstreamFor returns path's upstream, or nil when path is served only from
// what is stored (a private path, or offline).
func (s *Service) upstreamFor(path string) Upstream {
	if s.upstreams == nil {
		return nil
	}
	return s.upstreams(path)
}

// fetch makes path@version's file of kind stored, fetching it from up. It
// returns the version's record afterwards. Concurrent fetches of one file
// share one upstream request: in this process through a singleflight group,
// across processes sharing a database through Metadata.Exclusive. A caller
// that gives up does not cancel the fetch others wait for.
func (s *Service) fetch(ctx context.Context, up Upstream, path, version string, kind storage.Kind) (*Version, error) {
	key := path + "@" + version + string(kind)
	r, err := s.shareFileWork(ctx, key, kind, func(ctx context.Context) (any, error) {
		var v *Version
		fetch := func() error {
			return s.meta.Exclusive(ctx, "fetch "+key, func(ctx context.Context) error {
				var err error
				v, err = s.fetchLocked(ctx, up, path, version, kind)
				return err
			})
		}
		err := fetch()
		if errors.Is(err, errModGone) {
			// Purged while the zip was fetched: fetch it again, with its
			// .mod. The first fetch's locks are released first: the
			// version's, which its commit took, is held until the file's
			// is (see Metadata.Exclusive), and must not be through
			// another download.
			err = fetch()
		}
		return v, err
	})
	if err != nil {
		return nil, err
	}
	v := *r.(*Version)
	return &v, nil
}

// shareFileWork runs work on a file of kind (fetching, restoring, or
// resolving a query or @latest to a version's .info) once for all
// concurrent callers with the same key, and returns its result to each.
// The work runs within the time a file of its kind may take, and is not
// cancelled when a caller gives up: the caller gets its context's error,
// and others still wait.
func (s *Service) shareFileWork(ctx context.Context, key string, kind storage.Kind, work func(context.Context) (any, error)) (any, error) {
	s.detached.Start(key)
	ch := s.fetches.DoChan(key, func() (any, error) {
		timeout, pool := fetchSmallTimeout, s.smallWork
		if kind == storage.Zip {
			timeout, pool = fetchZipTimeout, s.zipWork
		}
		wctx, cancel := s.detached.detach(ctx, timeout)
		defer cancel()
		release, err := acquire(wctx, pool)
		if err != nil {
			return nil, err
		}
		defer release()
		return work(wctx)
	})
	select {
	case r := <-ch:
		s.detached.Done(key)
		return r.Val, r.Err
	case <-ctx.Done():
		go func() { <-ch; s.detached.Done(key) }() // for Wait
		return nil, ctx.Err()
	}
}

// liveRecord returns path@version's record: nil if there is none, and an
// error wrapping ErrGone if the version was deleted or blocked.
func (s *Service) liveRecord(ctx context.Context, path, version string) (*Version, error) {
	v, err := s.meta.Version(ctx, path, version)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case !v.Live():
		return nil, gone(v)
	}
	return v, nil
}

// fetchLocked is fetch once this process holds the fetch of key: another
// process may have stored the file meanwhile. A zip checked against the
// recorded .mod, which is purged meanwhile, fails with errModGone.
func (s *Service) fetchLocked(ctx context.Context, up Upstream, path, version string, kind storage.Kind) (*Version, error) {
	recorded, err := s.liveRecord(ctx, path, version)
	switch {
	case err != nil:
		return nil, err
	case recorded != nil && recorded.Has(kind):
		return recorded, nil
	}

	switch kind {
	case storage.Info:
		info, src, err := up.Info(ctx, path, version)
		if err != nil {
			return nil, lookupError(path, version, err)
		}
		if info.Version != version {
			// The go command refuses it, and it must not be stored.
			return nil, errorf(ErrUpstream, path, version, "%s answered with the .info of %s", src, info.Version)
		}
		return s.storeInfo(ctx, path, info, src)
	case storage.Mod:
		return s.fetchMod(ctx, up, path, version, recorded)
	}
	return s.fetchZip(ctx, up, path, version, recorded)
}

// fetchMod fetches, verifies and stores path@version's go.mod. recorded
// is the version's record, nil if it has none (see fetchError).
func (s *Service) fetchMod(ctx context.Context, up Upstream, path, version string, recorded *Version) (*Version, error) {
	sums := s.lookupSums(ctx, path, version)
	gomod, src, err := up.Mod(ctx, path, version)
	if err != nil {
		return nil, fetchError(recorded, path, version, err)
	}
	if err := checkFetchedGoMod(path, version, src, gomod); err != nil {
		return nil, err
	}
	modHash, err := hashGoMod(gomod)
	if err != nil {
		return nil, err
	}
	if err := s.verifyChecksum(ctx, path, version, src, sums, "", modHash); err != nil {
		return nil, err
	}
	v := s.fetchedVersion(path, version, src)
	v.ModHash = modHash
	return s.commitFetched(ctx, v, storage.Mod, func(ctx context.Context) error {
		return s.blobs.Put(ctx, path, version, storage.Mod, bytes.NewReader(gomod))
	})
}

// fetchZip fetches path@version's zip into a temporary file, checks it
// against the rules of module zips, hashes it, verifies the hashes and
// stores it. The go.mod hash checked along is the recorded one, or, for a
// version not recorded yet, that of its .mod, fetched alongside the zip and
// stored with it. A zip checked against the recorded .mod is not stored if
// the record no longer has it (the version was purged meanwhile): the
// error wraps errModGone.
func (s *Service) fetchZip(ctx context.Context, up Upstream, path, version string, recorded *Version) (*Version, error) {
	sums := s.lookupSums(ctx, path, version)
	var gomod []byte
	modHash := ""
	if recorded != nil {
		modHash = recorded.ModHash
	}
	var modFetched <-chan error
	if modHash == "" {
		ch := make(chan error, 1)
		modFetched = ch
		go func() {
			var src string
			var err error
			if gomod, src, err = up.Mod(ctx, path, version); err != nil {
				ch <- fetchError(recorded, path, version, err)
				return
			}
			if err := checkFetchedGoMod(path, version, src, gomod); err != nil {
				ch <- err
				return
			}
			modHash, err = hashGoMod(gomod)
			ch <- err
		}()
	}

	body, src, err := up.Zip(ctx, path, version)
	if modFetched != nil {
		// gomod and modHash are set once the .mod is in.
		if err := <-modFetched; err != nil {
			if body != nil {
				body.Close()
			}
			return nil, err
		}
	}
	if err != nil {
		return nil, fetchError(recorded, path, version, err)
	}
	z, err := s.stageZip(path, version, src, body)
	if re := (*zipReadError)(nil); errors.As(err, &re) {
		return nil, fetchError(recorded, path, version, err)
	}
	if err != nil {
		return nil, err
	}
	defer os.Remove(z.name)
	if z.goMod != nil {
		// The .mod the go command reads must be the zip's own go.mod.
		if h, err := hashGoMod(z.goMod); err != nil || h != modHash {
			err := errorf(ErrUpstream, path, version, "%s served a .mod (%s) that differs from the go.mod in its zip (%s)", src, modHash, h)
			s.auditFetchRejected(ctx, path, version, err.Error())
			return nil, err
		}
	}
	if err := s.verifyChecksum(ctx, path, version, src, sums, z.hash, modHash); err != nil {
		return nil, err
	}

	v := s.fetchedVersion(path, version, src)
	v.ZipHash, v.Size, v.ModHash = z.hash, z.size, modHash
	return s.commitFetchedFile(ctx, v, storage.Zip, gomod != nil, func(ctx context.Context) error {
		if err := s.blobs.PutFile(ctx, path, version, storage.Zip, z.name); err != nil {
			return err
		}
		if gomod != nil {
			return s.blobs.Put(ctx, path, version, storage.Mod, bytes.NewReader(gomod))
		}
		return nil
	})
}

// zipReadError is stageZip's failure to read the zip an upstream began to
// serve.
type zipReadError struct{ err error }

func (e *zipReadError) Error() string { return e.err.Error() }
func (e *zipReadError) Unwrap() error { return e.err }

// stagedUpstreamZip is a zip an upstream served, in a temporary file, with
// what checking it found.
type stagedUpstreamZip struct {
	name  string // the temporary file, which the caller removes
	size  int64
	hash  string // its h1: hash
	goMod []byte // the go.mod at its root; nil if it has none
}

// stageZip reads path@version's zip that the upstream src serves from body
// into a temporary file and checks it against every rule of module zips.
// It closes body once read, which ends the upstream request (and is when
// the upstream client counts it), and removes the file when it fails. A
// failure to read body (the upstream's connection lost, a timeout, a zip
// over the size limit) is a *zipReadError, which the caller makes a
// registry error as it does a failure of Upstream.Zip: the upstream
// failed to give the zip, which is not a refusal of what it gave.
func (s *Service) stageZip(path, version, src string, body io.ReadCloser) (_ *stagedUpstreamZip, err error) {
	tmp, err := s.createTemp("fetch-*.zip")
	if err != nil {
		body.Close()
		return nil, fmt.Errorf("fetch %s@%s: %w", path, version, err)
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	w := &fileWriter{f: tmp}
	n, err := io.Copy(w, body)
	body.Close()
	if w.err != nil {
		// This side's failure (a full disk, say), not the upstream's.
		return nil, fmt.Errorf("fetch %s@%s: storing the zip: %w", path, version, w.err)
	}
	if err != nil {
		return nil, &zipReadError{fmt.Errorf("reading the zip from %s: %w", src, err)}
	}
	go tmp.Sync() // flushed while it is checked and hashed; storing syncs it again, quickly then
	hash, goMod, err := inspectModuleZip(tmp.Name(), path, version)
	if err != nil {
		return nil, errorf(ErrUpstream, path, version, "%s served an invalid module zip: %v", src, cause(err))
	}
	return &stagedUpstreamZip{name: tmp.Name(), size: n, hash: hash, goMod: goMod}, nil
}

// fileWriter writes to f and keeps the first error writing, so that a
// copy's caller can tell it from an error reading. It hides f's ReadFrom,
// which would read and write in one call.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// storeInfo stores the .info an upstream answered for path, which names
// the canonical version: for a query (a branch, a commit) as well as for a
// version. Nothing is stored under a query's name.
//
// An .info without a time is valid (the protocol makes the time optional,
// and an upstream Agora serves one for a version it stores without an
// .info), but is not stored: a record's zero Time says that it has no
// .info, and the upstream may give the time later. The version's record
// is returned if it has one, else a record of it that is not stored; both
// have a zero Time, so the .info is served as one made up (see Open).
func (s *Service) storeInfo(ctx context.Context, path string, info *upstream.Info, src string) (*Version, error) {
	version := info.Version
	if err := checkVersion(path, version); err != nil {
		return nil, errorf(ErrUpstream, path, version, "%s answered with an invalid version: %v", src, cause(err))
	}
	if info.Time.IsZero() {
		recorded, err := s.liveRecord(ctx, path, version)
		if err != nil || recorded != nil {
			return recorded, err
		}
		return s.fetchedVersion(path, version, src), nil
	}
	raw := info.Raw
	if len(raw) == 0 || !json.Valid(raw) {
		var err error
		if raw, err = infoFile(version, info.Time); err != nil {
			return nil, err
		}
	}
	v := s.fetchedVersion(path, version, src)
	v.Time = info.Time.UTC()
	return s.commitFetched(ctx, v, storage.Info, func(ctx context.Context) error {
		return s.blobs.Put(ctx, path, version, storage.Info, bytes.NewReader(raw))
	})
}

// fetchedVersion returns a record for a file of path@version fetched from
// the upstream src.
func (s *Service) fetchedVersion(path, version, src string) *Version {
	now := s.now().UTC().Truncate(time.Second)
	return &Version{Path: path, Version: version, Source: src, PublishedAt: now}
}

// commitFetched stores the file of kind described by v with put, then
// records it: a new version is inserted, a recorded one gets the file added
// to its record. The record never announces a file that is not there.
func (s *Service) commitFetched(ctx context.Context, v *Version, kind storage.Kind, put func(context.Context) error) (*Version, error) {
	return s.commitFetchedFile(ctx, v, kind, true, put)
}

// errModGone is the failure of committing a zip that was checked against
// the recorded .mod, and stored without one, to a version whose record no
// longer has the .mod: it was purged while the zip was fetched, and a
// record of the zip would announce the purged .mod.
var errModGone = errors.New("the recorded .mod the zip was checked against is gone")

// commitFetchedFile is commitFetched. withMod says whether put stores v's
// .mod along with a zip; a zip stored without it is committed only to a
// record that has the .mod, else it fails with errModGone.
func (s *Service) commitFetchedFile(ctx context.Context, v *Version, kind storage.Kind, withMod bool, put func(context.Context) error) (*Version, error) {
	var (
		out         *Version
		listChanged bool
	)
	err := s.lockVersion(ctx, v.Path, v.Version, func(ctx context.Context) error {
		var err error
		out, listChanged, err = s.commitFetchedLocked(ctx, v, kind, withMod, put)
		return err
	})
	if err != nil {
		return nil, err
	}
	if listChanged {
		s.writeList(ctx, v.Path)
	}
	return out, nil
}

// commitFetchedLocked is commitFetchedFile once it holds the version's
// lock. It reports whether the @v/list file is to change: whether the
// version, or its .mod, was recorded.
func (s *Service) commitFetchedLocked(ctx context.Context, v *Version, kind storage.Kind, withMod bool, put func(context.Context) error) (_ *Version, listChanged bool, _ error) {
	modGone := func(recorded *Version) error {
		if kind != storage.Zip || withMod || recorded != nil && recorded.Has(storage.Mod) {
			return nil
		}
		return fmt.Errorf("%s@%s: %w", v.Path, v.Version, errModGone)
	}

	// The file is written before its record, outside the transaction, so
	// that the database (on SQLite, one writer at a time) is held only for
	// the few statements: until the record announces the file, nobody
	// serves it. Nobody else writes it meanwhile, nor records another
	// between the check below and the commit: every writer of the
	// version's files, here and in other processes, holds its lock.
	recorded, err := s.liveRecord(ctx, v.Path, v.Version)
	switch {
	case err != nil:
		return nil, false, err
	case recorded != nil && recorded.Has(kind):
		return recorded, false, nil
	case modGone(recorded) != nil:
		return nil, false, modGone(recorded)
	case recorded == nil:
	case kind == storage.Zip && recorded.ModHash != "" && recorded.ModHash != v.ModHash:
		err := errorf(ErrUpstream, v.Path, v.Version, "%s served a zip whose go.mod has hash %s, but %s was recorded", v.Source, v.ModHash, recorded.ModHash)
		s.auditFetchRejected(ctx, v.Path, v.Version, err.Error())
		return nil, false, err
	}
	if err := put(context.WithoutCancel(ctx)); err != nil {
		s.removeFetched(v.Path, v.Version)
		return nil, false, err
	}

	var (
		out      *Version
		inserted bool
		addedMod bool // to a record without one: the @v/list file changes
	)
	err = s.meta.Update(ctx, func(tx MetadataTx) error {
		out, inserted, addedMod = nil, false, false
		recorded, err := tx.Version(v.Path, v.Version)
		switch {
		case errors.Is(err, ErrNotFound):
			if err := modGone(nil); err != nil {
				return err
			}
			if err := tx.InsertVersion(v); errors.Is(err, ErrExists) {
				// Another node recorded it just now; fill its record.
				if recorded, err = tx.Version(v.Path, v.Version); err != nil {
					return err
				}
			} else if err != nil {
				return err
			} else {
				out, inserted = v, true
			}
		case err != nil:
			return err
		}
		if !inserted {
			switch {
			case !recorded.Live():
				return gone(recorded)
			case recorded.Has(kind):
				out = recorded // stored meanwhile: keep what is there
				return nil
			case modGone(recorded) != nil:
				return modGone(recorded)
			case kind == storage.Zip && recorded.ModHash != "" && recorded.ModHash != v.ModHash:
				return fetchConflict{errorf(ErrUpstream, v.Path, v.Version, "%s served a zip whose go.mod has hash %s, but %s was recorded", v.Source, v.ModHash, recorded.ModHash)}
			}
			if err := tx.FillVersion(v, kind); err != nil {
				return err
			}
			out = mergeFile(recorded, v, kind)
			addedMod = !recorded.Has(storage.Mod) && out.Has(storage.Mod)
		}
		return nil
	})
	if err != nil {
		s.removeFetched(v.Path, v.Version)
		if c := (fetchConflict{}); errors.As(err, &c) {
			s.auditFetchRejected(ctx, v.Path, v.Version, c.Error())
		}
		return nil, false, err
	}
	s.forget(v.Path, v.Version) // the record changed: drop what memory holds
	return out, inserted || addedMod, nil
}

// removeFetched removes the files of a version whose fetched file's record
// was rolled back, if the version has no live record: its first fetched
// file's, or one deleted or blocked (on any node) while the file was
// fetched, after the delete removed the version's files. The caller holds
// the version's lock.
func (s *Service) removeFetched(path, version string) {
	// storage.Store removes whole versions only. A rolled-back file of a
	// live version recorded with other files stays, and is never served:
	// the record does not announce it, and the next fetch overwrites it.
	// A tombstoned version's files are all to go, as removeFiles has it.
	v, err := s.meta.Version(context.Background(), path, version)
	switch {
	case errors.Is(err, ErrNotFound):
	case err == nil && !v.Live():
	default:
		return
	}
	if err := s.blobs.Delete(context.Background(), path, version); err != nil {
		s.log.Error("removing files of a fetch that failed", "module", path, "version", version, "err", err)
	}
}

// mergeFile returns recorded with the fields of kind taken from v.
func mergeFile(recorded, v *Version, kind storage.Kind) *Version {
	out := *recorded
	switch kind {
	case storage.Info:
		out.Time = v.Time
	case storage.Mod:
		out.ModHash = v.ModHash
	case storage.Zip:
		out.ZipHash, out.Size, out.ModHash = v.ZipHash, v.Size, v.ModHash
	}
	return &out
}

// lookupSums starts asking the checksum database for path@version's
// hashes, and returns what waits for the answer. A fetch calls it before
// its upstream requests, so that the two round trips overlap, and calls
// what it returns only once the upstream has served the file. Without a
// Checker the answer is nil Sums, which accept any hash.
//
// A path published here and never served by an upstream (see
// PublishedOnlyHere) may be a private module's, which the database cannot
// know and whose path must not leave (/sumdb/ refuses its lookups for the
// same reason): it is looked up only when the answer is waited for, after
// the upstream served the file, when the module is public anyway. It is
// still looked up then, and verified: anyone who may publish can publish
// under a public module's path, and that must not switch verification off.
func (s *Service) lookupSums(ctx context.Context, path, version string) func() (*checksum.Sums, error) {
	if s.checker == nil {
		return func() (*checksum.Sums, error) { return nil, nil }
	}
	type answer struct {
		sums  *checksum.Sums
		err   error
		later bool // published here: look up once the upstream has served the file
	}
	ch := make(chan answer, 1)
	go func() {
		private, err := s.PublishedOnlyHere(ctx, path)
		if err != nil {
			ch <- answer{err: fmt.Errorf("finding out whether %s is published here: %w", path, err)}
			return
		}
		if private {
			ch <- answer{later: true}
			return
		}
		sums, err := s.checker.Lookup(ctx, path, version)
		ch <- answer{sums: sums, err: err}
	}()
	return func() (*checksum.Sums, error) {
		a := <-ch
		if a.later {
			return s.checker.Lookup(ctx, path, version)
		}
		return a.sums, a.err
	}
}

// verifyChecksum checks fetched hashes against those sums waits for, the
// checksum database's. A mismatch is refused and recorded in the audit log.
func (s *Service) verifyChecksum(ctx context.Context, path, version, src string, sums func() (*checksum.Sums, error), zipHash, modHash string) error {
	recorded, err := sums()
	if err == nil {
		err = recorded.Check(zipHash, modHash)
	}
	if err == nil {
		return nil
	}
	s.log.Warn("refused a fetched version: checksum verification failed", "module", path, "version", version, "upstream", src, "err", err)
	if !errors.Is(err, checksum.ErrMismatch) {
		// The database could not be asked, or does not know the version:
		// refused, but nothing that an audit needs to remember.
		return errorf(ErrUpstream, path, version, "verifying against the checksum database: %v", err)
	}
	s.auditFetchRejected(ctx, path, version, fmt.Sprintf("from %s: %v", src, err))
	return errorf(ErrUpstream, path, version, "verifying against the checksum database: %v", err)
}

// fetchConflict is an upstream's answer that contradicts itself or what
// is recorded: refused, and audited.
type fetchConflict struct{ error }

func (e fetchConflict) Unwrap() error { return e.error }

// auditFetchRejected records a refused fetch in the audit log.
func (s *Service) auditFetchRejected(ctx context.Context, path, version, detail string) {
	err := s.meta.Update(context.WithoutCancel(ctx), func(tx MetadataTx) error {
		return tx.AppendAudit(&AuditEvent{At: s.now().UTC(), Action: ActionFetchRejected, Path: path, Version: version, Detail: detail})
	})
	if err != nil {
		s.log.Error("recording a refused fetch in the audit log", "module", path, "version", version, "err", err)
	}
}

// upstreamError turns an upstream failure into a registry error: not found
// stays not found (404, so that the go command may try its next proxy),
// anything else is a bad gateway.
func upstreamError(path, version string, err error) error {
	// The Error made here names path@version already: not twice.
	if me := (*module.ModuleError)(nil); errors.As(err, &me) && me.Path == path && me.Version == version {
		err = me.Err
	}
	if errors.Is(err, upstream.ErrNotFound) || errors.Is(err, upstream.ErrInvalid) {
		return errorf(ErrNotFound, path, version, "%v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errorf(ErrUpstream, path, version, "upstream did not answer in time: %v", err)
	}
	return errorf(ErrUpstream, path, version, "%v", err)
}

// lookupError is upstreamError for a lookup of something not stored here:
// a module's list or latest version, or a version's .info (which is how
// the go command resolves a query, such as a version of a package's
// path). An upstream that fails to answer makes it not found (404), not a
// bad gateway. The go command looks up every prefix of a package's path
// at once and stops at the first answer that is neither 404 nor 410; a 502
// for a prefix that is no module would make 'go get' and 'go mod tidy'
// fail while the upstream is down, though every module they need is
// stored here. The message still says that the upstream failed. Refusals
// of what an upstream served stay bad gateways, and so, mostly, do
// failures to fetch a .mod or .zip: see fetchError.
func lookupError(path, version string, err error) error {
	err = upstreamError(path, version, err)
	if e := (*Error)(nil); errors.As(err, &e) && e.Kind == ErrUpstream {
		return errorf(ErrNotFound, path, version, "not stored here, and the upstream failed: %w", e.Err)
	}
	return err
}

// fetchError is the error of an upstream that failed to give the .mod or
// zip of path@version, whose record, nil if it has none, is recorded. The
// go command asks for those once it has settled on the version, so a
// failure is a bad gateway (upstreamError), which stops it: unless it
// settled on the version elsewhere. It goes down its GOPROXY list for
// each file anew ("agora,direct"), so after a 404 here for the .info of a
// version that is not stored (see lookupError) it may take the version
// from the next proxy, and then ask here first for the .mod and the zip;
// a 502 for those would stop it, though the next proxy has them. A
// version without a record had no file served here (but for an .info
// without a time, which is not recorded: see storeInfo), so its files are
// not found either (lookupError), as its .info is.
func fetchError(recorded *Version, path, version string, err error) error {
	if recorded == nil {
		return lookupError(path, version, err)
	}
	return upstreamError(path, version, err)
}

// isQuery reports whether version is a query (a branch, a commit, a
// non-canonical version) rather than a canonical version.
func isQuery(version string) bool {
	return module.CanonicalVersion(version) != version
}
