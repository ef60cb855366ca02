package modproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/auth"
	"agora/storage"
)

// bodyReader marks errors from reading an upload, so that a client that
// stops sending is told apart from a disk that fails.
type bodyReader struct{ r io.Reader }

// bodyError is an error reading an upload's body.
type bodyError struct{ err error }

func (e bodyError) Error() string { return e.err.Error() }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = bodyError{err}
	}
	return n, err
}

// PublishResult is what Publish reports.
type PublishResult struct {
	*Version
	// Created is false when the upload was identical to the live version
	// already published, and nothing changed.
	Created bool
	// Restored is true when the version was already stored, and files
	// that storage had lost of it were put back (see restoreFiles).
	Restored bool
}

// Publish stores the module zip read from body as path@version on behalf of
// who: PUT /api/v1/modules/{module}/@v/{version}.zip.
//
// The body is streamed to a temporary file of at most modzip.MaxZipFile
// bytes (ErrTooLarge beyond) and checked before anything becomes visible:
// the version must be canonical and fit the path's major version, the zip
// must pass every rule of golang.org/x/mod/zip for path@version, and it must
// hold a go.mod at its root that declares path (ErrInvalid otherwise).
// The version's time, its .info's, is that of the upload, or for a
// pseudo-version the time the pseudo-version names.
//
// A path that versions were fetched of from an upstream is a public
// module's, and nothing can be published under it (ErrConflict, see
// checkNotPublic).
//
// Publishing content identical to a live version changes nothing
// (Created is false). Publishing other content for a version ever recorded,
// even one since deleted, is a *ConflictError. A deleted version may be
// published again with its original content, unless it was blocked
// (ErrGone). Of concurrent uploads of one version exactly one is created;
// the others see it as identical or conflicting.
func (s *Service) Publish(ctx context.Context, who auth.Principal, path, version string, body io.Reader) (*PublishResult, error) {
	if !who.Can(auth.ScopePublish) {
		return nil, errorf(ErrForbidden, path, version, "publishing needs a token with publish scope")
	}
	if err := checkVersion(path, version); err != nil {
		return nil, err
	}
	if err := s.checkNotPublic(ctx, path, version); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	versionTime := now
	if isPseudo(version) {
		// A pseudo-version names its commit's time, which the go
		// command, and an import, give as its .info's.
		t, err := module.PseudoVersionTime(version)
		if err != nil {
			return nil, errorf(ErrInvalid, path, version, "%v", err)
		}
		versionTime = t.UTC()
	}

	tmp, err := s.createTemp("upload-*.zip")
	if err != nil {
		return nil, fmt.Errorf("publish %s@%s: %w", path, version, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, bodyReader{io.LimitReader(body, modzip.MaxZipFile+1)})
	var berr bodyError
	if errors.As(err, &berr) {
		return nil, errorf(ErrInvalid, path, version, "the upload stopped before the zip was complete: %w", berr.err)
	}
	if err != nil {
		return nil, fmt.Errorf("publish %s@%s: storing the upload: %w", path, version, err)
	}
	if n > modzip.MaxZipFile {
		return nil, errorf(ErrTooLarge, path, version, "module zip larger than %d bytes", int64(modzip.MaxZipFile))
	}
	if n == 0 {
		return nil, errorf(ErrInvalid, path, version, "empty body: send the module zip")
	}
	go tmp.Sync() // flushed while it is checked and hashed; storing syncs it again, quickly then
	zc, err := inspectZip(tmp.Name(), path, version)
	if err != nil {
		return nil, err
	}

	v := &Version{
		Path:        path,
		Version:     version,
		Time:        versionTime,
		Size:        n,
		ZipHash:     zc.zipHash,
		ModHash:     zc.modHash,
		Source:      SourceUploaded,
		PublishedBy: who.User,
		PublishedAt: now,
	}
	var res *PublishResult
	err = s.lockVersion(ctx, path, version, func(ctx context.Context) error {
		var err error
		res, err = s.commitVersion(ctx, v, tmp.Name(), zc.goMod, nil)
		return err
	})
	if errors.Is(err, ErrExists) {
		// A concurrent upload of the same version committed first.
		res, err = s.compareRecorded(ctx, v)
	}
	var cerr *ConflictError
	if errors.As(err, &cerr) {
		s.auditRejection(ctx, v, cerr)
	}
	if err != nil {
		return nil, err
	}
	// An identical upload too: it is how a client retries a publish that
	// failed, or got no answer, after its commit, and the @v/list file
	// that publish was to rewrite may not name the version yet.
	s.writeList(ctx, path)
	return res, nil
}

// checkNotPublic refuses, with an error wrapping ErrConflict, a publish of
// path@version if path is a public module's: a version of it, live or
// deleted, was fetched from an upstream. What is published under its path
// would be served as its versions, and the newest as its @latest. The
// refusal depends on the path alone, not on who publishes: administrators
// too give a private module a path of its own.
//
// A publish under a path that no version was fetched of yet is not
// refused (asking the upstream would give a private path away); the
// versions fetched of it later are verified all the same (see lookupSums).
func (s *Service) checkNotPublic(ctx context.Context, path, version string) error {
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return fmt.Errorf("publish %s@%s: %w", path, version, err)
	}
	for _, v := range all {
		if v.Source != SourceUploaded && v.Source != SourceImported {
			return errorf(ErrConflict, path, version, "%s is a public module, served from the upstream %s (%s was fetched from it): "+
				"nothing can be published under its path; a private module needs a module path of its own", path, v.Source, v.Version)
		}
	}
	return nil
}

// commitVersion records v and stores its files in one transaction, or finds
// that v's version is already recorded and compares the content. zip names
// the registry's own temporary file of the zip, synced, which storing moves
// into place (see storage.Store.PutFile): the transaction, which on SQLite
// holds every writer up, copies nothing large. info, if not nil, is the
// .info file an import brings (see storeFiles).
func (s *Service) commitVersion(ctx context.Context, v *Version, zip string, goMod, info []byte) (*PublishResult, error) {
	var (
		res        *PublishResult
		wrote      bool
		completing bool // adding the zip to a fetched version's record
	)
	err := s.meta.Update(ctx, func(tx MetadataTx) error {
		res, wrote, completing = nil, false, false
		recorded, err := tx.Version(v.Path, v.Version)
		switch {
		case errors.Is(err, ErrNotFound):
			if err := tx.InsertVersion(v); err != nil {
				return err
			}
		case err != nil:
			return err
		case recorded.ZipHash == "" && recorded.Live():
			// Fetched from an upstream file by file, the zip not yet.
			if err := completeFetched(tx, recorded, v); err != nil {
				return err
			}
			completing = true
		case recorded.ZipHash != v.ZipHash:
			return conflictError(recorded, v)
		case recorded.Live():
			res = &PublishResult{Version: recorded}
			return nil
		case recorded.Blocked:
			return gone(recorded)
		default:
			// Deleted, and now published again with the same content.
			v.Time = recorded.Time // the .info time is part of what was published
			if err := tx.Restore(v); err != nil {
				return err
			}
		}
		// The row is ours until commit; write the files the row announces.
		wrote = true
		// A fetched .info stays as its upstream served it (completeFetched
		// kept its time).
		keepInfo := completing && !recorded.Time.IsZero()
		if err := s.storeFiles(context.WithoutCancel(ctx), v, zip, goMod, info, keepInfo); err != nil {
			return err
		}
		detail := fmt.Sprintf("zip %s, go.mod %s, %d bytes", v.ZipHash, v.ModHash, v.Size)
		switch {
		case completing && recorded.Source == SourceImported:
			detail += ", completing a version whose go.mod was imported"
		case completing:
			detail += ", completing a version fetched from " + recorded.Source
		case recorded != nil:
			detail += ", restoring a deleted version"
		}
		if err := tx.AppendAudit(&AuditEvent{At: v.PublishedAt, Actor: v.PublishedBy, Action: ActionPublish, Path: v.Path, Version: v.Version, Detail: detail}); err != nil {
			return err
		}
		res = &PublishResult{Version: v, Created: true}
		return nil
	})
	if err != nil {
		if wrote && !completing {
			// The row was rolled back; the files must not outlive it.
			if derr := s.blobs.Delete(context.WithoutCancel(ctx), v.Path, v.Version); derr != nil {
				s.log.Error("removing files of a publish that failed", "module", v.Path, "version", v.Version, "err", derr)
			}
		}
		return nil, err
	}
	switch {
	case completing:
		s.forget(v.Path, v.Version) // the record in memory lacks the zip
	case res.Created:
		// The record just committed is the newest there is.
		s.live.put(res.Version, s.stamps.take())
	case res.Version.ModHash == v.ModHash:
		// The same content again: it puts back what storage lost of it.
		restored, err := s.restoreFiles(ctx, res.Version, zip, goMod)
		if err != nil {
			return nil, err
		}
		res.Restored = restored
	}
	return res, nil
}

// restoreFiles stores the files that storage has lost (see restore) of
// recorded, a live version published or imported again with the same
// content: the zip from the temporary file zip, unless zip is empty, the
// .mod from goMod, whose hash is recorded's, and the .info from the
// record. It reports whether it stored any. The caller holds the version's
// lock.
func (s *Service) restoreFiles(ctx context.Context, recorded *Version, zip string, goMod []byte) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	var restored []string
	for _, kind := range storage.Kinds { // the zip first, as storeFiles
		if !recorded.Has(kind) || kind == storage.Zip && zip == "" {
			continue
		}
		f, err := s.blobs.Open(ctx, recorded.Path, recorded.Version, kind)
		if err == nil {
			f.Close()
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		switch kind {
		case storage.Zip:
			err = s.blobs.PutFile(ctx, recorded.Path, recorded.Version, kind, zip)
		case storage.Mod:
			err = s.blobs.Put(ctx, recorded.Path, recorded.Version, kind, bytes.NewReader(goMod))
		case storage.Info:
			var info []byte
			if info, err = infoFile(recorded.Version, recorded.Time); err == nil {
				err = s.blobs.Put(ctx, recorded.Path, recorded.Version, kind, bytes.NewReader(info))
			}
		}
		if err != nil {
			return false, err
		}
		restored = append(restored, string(kind))
		if s.observer != nil {
			s.observer.StorageRestore(string(kind[1:]), true)
		}
	}
	if len(restored) == 0 {
		return false, nil
	}
	s.forget(recorded.Path, recorded.Version)
	s.log.Warn("restored a live version's files that were missing from storage", "module", recorded.Path, "version", recorded.Version, "files", strings.Join(restored, " "), "from", "the same content, "+recorded.Source+" again")
	return true, nil
}

// completeFetched records v's zip in the record of a version whose .mod or
// .info was fetched from an upstream, but not its zip. Only an import may do
// that, and only with the go.mod recorded: an upload would put content
// nobody checked against the checksum database under a public version.
func completeFetched(tx MetadataTx, recorded, v *Version) error {
	if v.Source != SourceImported {
		if recorded.Source == SourceImported {
			return errorf(ErrConflict, v.Path, v.Version, "this version's go.mod was imported without its zip: import the zip too (agora import), it cannot be uploaded")
		}
		return errorf(ErrConflict, v.Path, v.Version, "this version was fetched from %s: a public module's version cannot be uploaded", recorded.Source)
	}
	if recorded.ModHash != "" && recorded.ModHash != v.ModHash {
		return errorf(ErrConflict, v.Path, v.Version, "go.mod hash %s is recorded for this version (from %s); the import has %s", recorded.ModHash, recorded.Source, v.ModHash)
	}
	if err := tx.FillVersion(v, storage.Zip); err != nil {
		return err
	}
	switch {
	case !recorded.Time.IsZero():
		v.Time = recorded.Time
	case !v.Time.IsZero():
		return tx.FillVersion(v, storage.Info)
	}
	return nil
}

// conflictError returns the *ConflictError for uploaded against recorded.
func conflictError(recorded, uploaded *Version) *ConflictError {
	return &ConflictError{
		Path:         recorded.Path,
		Version:      recorded.Version,
		RecordedHash: recorded.ZipHash,
		UploadedHash: uploaded.ZipHash,
		Deleted:      !recorded.Live(),
	}
}

// auditRejection records a refused conflicting upload in the audit log.
func (s *Service) auditRejection(ctx context.Context, v *Version, cerr *ConflictError) {
	err := s.meta.Update(context.WithoutCancel(ctx), func(tx MetadataTx) error {
		return tx.AppendAudit(&AuditEvent{
			At: v.PublishedAt, Actor: v.PublishedBy, Action: ActionRejected,
			Path: v.Path, Version: v.Version, Detail: cerr.Error(),
		})
	})
	if err != nil {
		s.log.Error("recording a rejected upload in the audit log", "module", v.Path, "version", v.Version, "err", err)
	}
}

// compareRecorded answers an upload that lost a race to a concurrent one.
func (s *Service) compareRecorded(ctx context.Context, v *Version) (*PublishResult, error) {
	recorded, err := s.meta.Version(ctx, v.Path, v.Version)
	if err != nil {
		return nil, err
	}
	if recorded.ZipHash != v.ZipHash {
		return nil, conflictError(recorded, v)
	}
	if !recorded.Live() {
		return nil, gone(recorded)
	}
	return &PublishResult{Version: recorded}, nil
}

// storeFiles writes v's .zip, moved from the temporary file zip, .mod and
// .info (if v has a time) to the blob store, the zip first, so that the
// files announcing the version appear last. The .info is imported as it
// is, with any Origin field, as a fetch stores its upstream's, if it gives
// v's time (a record it completes or restores may keep another); else it
// is made from v.Time. With keepInfo, an .info already stored is left as
// it is.
func (s *Service) storeFiles(ctx context.Context, v *Version, zip string, goMod, imported []byte, keepInfo bool) error {
	info := imported
	if t, err := parseInfo(v.Path, v.Version, imported); imported == nil || err != nil || !t.Equal(v.Time) {
		if info, err = infoFile(v.Version, v.Time); err != nil {
			return err
		}
	}
	if err := s.blobs.PutFile(ctx, v.Path, v.Version, storage.Zip, zip); err != nil {
		return err
	}
	if err := s.blobs.Put(ctx, v.Path, v.Version, storage.Mod, bytes.NewReader(goMod)); err != nil {
		return err
	}
	if v.Time.IsZero() {
		return nil // a fetched version whose .info was never asked for
	}
	if keepInfo {
		f, err := s.blobs.Open(ctx, v.Path, v.Version, storage.Info)
		if err == nil {
			return f.Close()
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return s.blobs.Put(ctx, v.Path, v.Version, storage.Info, bytes.NewReader(info))
}
