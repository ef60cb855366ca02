package modproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"agora/auth"
)

// MaxReasonLen bounds the reason given for a delete or purge, in bytes.
const MaxReasonLen = 1000

// DeleteOptions qualify a delete.
type DeleteOptions struct {
	Reason string
	// Block keeps the version from ever being published again, even with
	// identical content. Only administrators may block.
	Block bool
}

// checkDelete validates opts and reports whether who may delete a version
// published by publisher.
func checkDelete(who auth.Principal, publisher string, opts DeleteOptions, path, version string) error {
	if len(opts.Reason) > MaxReasonLen || !utf8.ValidString(opts.Reason) || strings.ContainsRune(opts.Reason, 0) {
		return errorf(ErrInvalid, path, version, "reason must be valid UTF-8 of at most %d bytes, without NUL bytes", MaxReasonLen)
	}
	switch {
	case who.Can(auth.ScopeAdmin):
		return nil
	case opts.Block:
		return errorf(ErrForbidden, path, version, "only administrators may block a version")
	case who.Can(auth.ScopePublish) && who.User == publisher:
		return nil
	}
	return errorf(ErrForbidden, path, version, "only an administrator or the version's publisher may delete it")
}

// Delete tombstones path@version on behalf of who:
// DELETE /api/v1/modules/{module}/@v/{version}. Its files are removed, its
// record and hash stay, and it is served as 410 Gone from then on.
// Administrators may delete any version; publishers the versions they
// published. Deleting a deleted version is ErrGone, unless the delete blocks
// a version that was only deleted; it removes the files a delete cut off
// left behind all the same.
func (s *Service) Delete(ctx context.Context, who auth.Principal, path, version string, opts DeleteOptions) error {
	if err := checkVersion(path, version); err != nil {
		return err
	}
	err := s.meta.Update(ctx, func(tx MetadataTx) error {
		v, err := tx.Version(path, version)
		if err != nil {
			return err
		}
		return s.tombstone(tx, who, v, opts)
	})
	if errors.Is(err, ErrGone) {
		// Deleted before, but perhaps not finished: a delete cut off
		// between its tombstone and the removal of the files (a crash, a
		// storage that failed) left them, and the storage tree, a
		// GOPROXY=file:// directory, would go on serving and listing
		// them. Running the delete again finishes it.
		s.removeFiles(ctx, path, version)
		s.writeList(ctx, path)
	}
	if err != nil {
		return err
	}
	s.removeFiles(ctx, path, version)
	s.writeList(ctx, path)
	return nil
}

// DeleteModule tombstones every live version of path:
// DELETE /api/v1/modules/{module}. It reports how many versions it deleted.
// A publisher may delete a module only if every live version is theirs.
// The files of versions deleted before are removed too, if a delete cut
// off left them behind; a module whose every version is deleted is ErrGone.
func (s *Service) DeleteModule(ctx context.Context, who auth.Principal, path string, opts DeleteOptions) (int, error) {
	if err := checkPath(path); err != nil {
		return 0, err
	}
	var deleted, before []string // before: deleted before this delete
	err := s.meta.Update(ctx, func(tx MetadataTx) error {
		deleted, before = deleted[:0], before[:0]
		all, err := tx.Versions(path)
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return errorf(ErrNotFound, path, "", "no versions")
		}
		for _, v := range all {
			if !v.Live() && (!opts.Block || v.Blocked) {
				before = append(before, v.Version)
				continue
			}
			if err := s.tombstone(tx, who, v, opts); err != nil {
				return err
			}
			deleted = append(deleted, v.Version)
		}
		if len(deleted) == 0 {
			return errorf(ErrGone, path, "", "every version is already deleted")
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrGone) {
		return 0, err
	}
	// The files of versions deleted before go too: a delete cut off
	// before it removed them left them behind (see Delete).
	for _, version := range slices.Concat(deleted, before) {
		s.removeFiles(ctx, path, version)
	}
	s.writeList(ctx, path)
	return len(deleted), err
}

// tombstone marks v deleted (or blocked) within tx and audits it.
func (s *Service) tombstone(tx MetadataTx, who auth.Principal, v *Version, opts DeleteOptions) error {
	if err := checkDelete(who, v.PublishedBy, opts, v.Path, v.Version); err != nil {
		return err
	}
	action := ActionDelete
	switch {
	case v.Live():
	case opts.Block && !v.Blocked:
		// Blocking a version that was only deleted: keep the original
		// deletion's time and author, record the block.
	default:
		return gone(v)
	}
	if opts.Block {
		action = ActionBlock
		v.Blocked = true
	}
	if v.Live() {
		v.DeletedAt = s.now().UTC()
		v.DeletedBy = who.User
	}
	if opts.Reason != "" {
		v.DeleteReason = opts.Reason
	}
	if err := tx.Tombstone(v); err != nil {
		return err
	}
	return tx.AppendAudit(&AuditEvent{
		At: s.now().UTC(), Actor: who.User, Action: action,
		Path: v.Path, Version: v.Version, Detail: opts.Reason,
	})
}

// removeFiles deletes the files of a version whose tombstone (or purge) is
// committed, unless the version was published again meanwhile. A failure
// leaves files that are never served; it is logged rather than returned.
func (s *Service) removeFiles(ctx context.Context, path, version string) {
	// The version's lock keeps out whatever writes its files, on any node:
	// a restore or a fetch that read the record live before the delete
	// wrote its file before this removes them, or sees the delete.
	err := s.lockVersion(context.WithoutCancel(ctx), path, version, func(ctx context.Context) error {
		s.forget(path, version)
		if v, err := s.meta.Version(ctx, path, version); err == nil && v.Live() {
			return nil // restored by an identical upload since the delete committed
		}
		return s.blobs.Delete(ctx, path, version)
	})
	if err != nil {
		s.log.Error("removing a deleted version's files", "module", path, "version", version, "err", err)
	}
}

// Purge forgets path@version entirely, record and hash included, on behalf
// of an administrator, so that it may later be published with other content.
// The purge itself is audited, with the hash it forgot. Purging a version
// with no record is ErrNotFound; it removes the files a purge cut off left
// behind all the same.
func (s *Service) Purge(ctx context.Context, who auth.Principal, path, version, reason string) error {
	if err := checkVersion(path, version); err != nil {
		return err
	}
	if !who.Can(auth.ScopeAdmin) {
		return errorf(ErrForbidden, path, version, "only administrators may purge a version's record")
	}
	if reason == "" {
		return errorf(ErrInvalid, path, version, "purging needs a reason")
	}
	if err := checkDelete(who, "", DeleteOptions{Reason: reason}, path, version); err != nil {
		return err
	}
	err := s.meta.Update(ctx, func(tx MetadataTx) error {
		v, err := tx.Version(path, version)
		if err != nil {
			return err
		}
		if err := tx.PurgeVersion(path, version); err != nil {
			return err
		}
		return tx.AppendAudit(&AuditEvent{
			At: s.now().UTC(), Actor: who.User, Action: ActionPurge, Path: path, Version: version,
			Detail: fmt.Sprintf("%s (forgot zip hash %s)", reason, v.ZipHash),
		})
	})
	if errors.Is(err, ErrNotFound) {
		// Purged before, perhaps cut off between its commit and the
		// removal of the files, which the storage tree, a
		// GOPROXY=file:// directory, would go on serving and listing:
		// running the purge again finishes it, as for a delete.
		s.removeFiles(ctx, path, version)
		s.writeList(ctx, path)
	}
	if err != nil {
		return err
	}
	s.removeFiles(ctx, path, version)
	s.writeList(ctx, path)
	return nil
}
