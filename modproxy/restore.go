package modproxy

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/mod/module"

	"agora/storage"
)

// restore puts back the file of kind of v, a live version whose record
// announces the file but whose storage has lost it: storage restored from
// a backup older than the database's, a file removed by hand, a disk fault.
//
// The .mod is restored from the go.mod in the stored zip when its hash is
// the recorded one, without asking anyone. The files of a version fetched
// from an upstream are otherwise fetched again from the path's upstream:
// the .mod and zip kept only if they hash to the recorded hashes, the
// .info as served, Origin field and all, if it gives the recorded version
// and time, and else made from the record (see restoreInfo), as an
// upload's or an import's is. Theirs are never asked of an upstream: their
// path may be private, and no public proxy is asked for it. Concurrent
// restores of one file share one; a caller that gives up does not cancel
// it for the others. Each restore is told to the Observer, and logged if
// it fails (but for a version deleted meanwhile), once, whoever waits.
func (s *Service) restore(ctx context.Context, v *Version, kind storage.Kind) error {
	_, err := s.shareFileWork(ctx, "restore "+v.Path+"@"+v.Version+string(kind), kind, func(ctx context.Context) (any, error) {
		err := s.restoreFile(ctx, v, kind)
		if s.observer != nil {
			s.observer.StorageRestore(string(kind[1:]), err == nil)
		}
		if err != nil && !errors.Is(err, ErrGone) {
			s.log.Error("a live version's file is missing from storage and could not be restored", "module", v.Path, "version", v.Version, "kind", string(kind), "err", err)
		}
		return nil, err
	})
	return err
}

// restoreFile is restore, once this process holds the restore of the file.
func (s *Service) restoreFile(ctx context.Context, v *Version, kind storage.Kind) error {
	var (
		content []byte // the .info or .mod
		zipFile string // the zip, in a temporary file
		from    string // where the file came from, for the log
	)
	switch kind {
	case storage.Info:
		b, src, err := s.restoreInfo(ctx, v)
		if err != nil {
			return err
		}
		content, from = b, src
	case storage.Mod:
		if gomod := s.storedGoMod(ctx, v); gomod != nil {
			content, from = gomod, "the stored zip"
			break
		}
		up, err := s.restoreUpstream(v)
		if err != nil {
			return err
		}
		gomod, src, err := up.Mod(ctx, v.Path, v.Version)
		if err != nil {
			return upstreamError(v.Path, v.Version, err)
		}
		if h, err := hashGoMod(gomod); err != nil || h != v.ModHash {
			return errorf(ErrUpstream, v.Path, v.Version, "%s now serves a go.mod with hash %s, not the recorded %s", src, h, v.ModHash)
		}
		content, from = gomod, src
	case storage.Zip:
		up, err := s.restoreUpstream(v)
		if err != nil {
			return err
		}
		name, src, err := s.fetchRecordedZip(ctx, up, v)
		if err != nil {
			return err
		}
		defer os.Remove(name)
		zipFile, from = name, src
	}

	// A delete may have come meanwhile, on any node: it removes the
	// version's files holding the version's lock too, so this file is
	// written either before that (and removed with the rest) or after
	// the version is seen deleted (and not written).
	err := s.lockVersion(ctx, v.Path, v.Version, func(ctx context.Context) error {
		cur, err := s.meta.Version(ctx, v.Path, v.Version)
		switch {
		case err != nil:
			return err
		case !cur.Live():
			return gone(cur)
		case cur.ZipHash != v.ZipHash || cur.ModHash != v.ModHash || !cur.Time.Equal(v.Time):
			// Purged and published again meanwhile, perhaps with the
			// same content but another time, which an .info gives.
			return errorf(ErrNotFound, v.Path, v.Version, "the version's record changed while its %s file was restored", kind)
		}
		if zipFile != "" {
			return s.blobs.PutFile(ctx, v.Path, v.Version, kind, zipFile)
		}
		return s.blobs.Put(ctx, v.Path, v.Version, kind, bytes.NewReader(content))
	})
	if err != nil {
		return err
	}
	s.log.Warn("restored a live version's file that was missing from storage", "module", v.Path, "version", v.Version, "kind", string(kind), "from", from)
	return nil
}

// restoreInfo returns the .info to put back for v, and where it came
// from. A fetched version's is asked of its upstream again, so that it
// keeps what the record does not, such as the Origin field; kept if it
// gives the recorded version and time (see Version.givesTime), else, or
// if the upstream fails, it is made from the record, which is what the go
// command needs of it. The upstream is given restoreInfoWait to answer,
// not the full time of a fetch: the record's .info is at hand, and the go
// command waits.
func (s *Service) restoreInfo(ctx context.Context, v *Version) ([]byte, string, error) {
	if up, err := s.restoreUpstream(v); err == nil {
		ictx, cancel := context.WithTimeout(ctx, s.restoreInfoWait)
		info, src, err := up.Info(ictx, v.Path, v.Version)
		cancel()
		switch {
		case err != nil:
			s.log.Debug("restoring a lost .info from the version's record: the upstream failed", "module", v.Path, "version", v.Version, "err", err)
		case info.Version != v.Version || !v.givesTime(info.Time) || !json.Valid(info.Raw):
			s.log.Debug("restoring a lost .info from the version's record: the upstream's is another", "module", v.Path, "version", v.Version, "upstream", src, "upstream_version", info.Version, "upstream_time", info.Time)
		default:
			return info.Raw, src, nil
		}
	}
	b, err := infoFile(v.Version, v.Time)
	return b, "the version's record", err
}

// restoreInfoWait is how long a restore of a fetched version's lost .info
// waits for its upstream's before it makes one from the record: an .info
// is a small answer, which a proxy that is up gives well within it.
const restoreInfoWait = 5 * time.Second

// restoreUpstream returns the upstream to fetch a lost file of v from
// again: its path's, if v was fetched from an upstream.
func (s *Service) restoreUpstream(v *Version) (Upstream, error) {
	switch v.Source {
	case SourceUploaded:
		return nil, errorf(ErrNotFound, v.Path, v.Version, "it was uploaded here: publish the same zip again to restore it")
	case SourceImported:
		return nil, errorf(ErrNotFound, v.Path, v.Version, "it was imported: import it again to restore it")
	}
	up := s.upstreamFor(v.Path)
	if up == nil {
		return nil, errorf(ErrNotFound, v.Path, v.Version, "no upstream to fetch it from again")
	}
	return up, nil
}

// storedGoMod returns the go.mod in v's stored zip if its hash is v's
// recorded go.mod hash, else nil.
func (s *Service) storedGoMod(ctx context.Context, v *Version) []byte {
	if v.ZipHash == "" {
		return nil
	}
	f, err := s.blobs.Open(ctx, v.Path, v.Version, storage.Zip)
	if err != nil {
		return nil
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	fi, err := f.Stat()
	if !ok || err != nil {
		return nil
	}
	zr, err := zip.NewReader(ra, fi.Size())
	if err != nil {
		return nil
	}
	gomod, err := readGoMod(zr, module.Version{Path: v.Path, Version: v.Version})
	if err != nil || gomod == nil {
		return nil
	}
	if h, err := hashGoMod(gomod); err != nil || h != v.ModHash {
		return nil
	}
	return gomod
}

// fetchRecordedZip fetches v's zip from up into a temporary file, which the
// caller removes, and checks that it is a valid module zip with v's
// recorded hash. It returns the file's name and the proxy that served it.
func (s *Service) fetchRecordedZip(ctx context.Context, up Upstream, v *Version) (name, src string, err error) {
	body, src, err := up.Zip(ctx, v.Path, v.Version)
	if err != nil {
		return "", "", upstreamError(v.Path, v.Version, err)
	}
	z, err := s.stageZip(v.Path, v.Version, src, body)
	if re := (*zipReadError)(nil); errors.As(err, &re) {
		return "", "", upstreamError(v.Path, v.Version, err)
	}
	if err != nil {
		return "", "", err
	}
	if z.hash != v.ZipHash {
		os.Remove(z.name)
		return "", "", errorf(ErrUpstream, v.Path, v.Version, "%s now serves a zip with hash %s, not the recorded %s", src, z.hash, v.ZipHash)
	}
	return z.name, src, nil
}
