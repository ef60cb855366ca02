package modproxy

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"agora/storage"
)

// Problem is a live version whose stored files do not match its record.
type Problem struct {
	Path    string
	Version string
	Err     error
}

// VerifyStorage checks every live version's stored files against its
// record: the zip and go.mod must hash to the recorded h1: hashes and the
// .info must name the version. It calls report for each version that fails
// and returns how many versions it checked. It reads every zip in full.
//
// It also rewrites each module's @v/list file from the database, which is
// what the file is made from: a server stopped between recording a version
// and rewriting the list (killed, or its disk full) leaves one that lacks
// the version, and later requests, which find the record, do not repair it.
func (s *Service) VerifyStorage(ctx context.Context, report func(Problem)) (int, error) {
	checked := 0
	q := ModuleQuery{Limit: MaxPageSize}
	for {
		page, err := s.meta.Modules(ctx, q)
		if err != nil {
			return checked, err
		}
		for _, m := range page.Items {
			vs, err := s.meta.Versions(ctx, m.Path)
			if err != nil {
				return checked, err
			}
			for _, v := range vs {
				if !v.Live() {
					continue
				}
				if err := ctx.Err(); err != nil {
					return checked, err
				}
				checked++
				if err := s.verifyVersion(ctx, v); err != nil {
					report(Problem{Path: v.Path, Version: v.Version, Err: err})
				}
			}
			s.writeList(ctx, m.Path)
		}
		if page.Next == "" {
			return checked, nil
		}
		q.Cursor = page.Next
	}
}

// verifyVersion checks one version's files against its record. A version
// fetched file by file is checked for the files its record announces.
func (s *Service) verifyVersion(ctx context.Context, v *Version) error {
	if v.Has(storage.Zip) {
		zipHash, err := s.hashStoredZip(ctx, v)
		if err != nil {
			return err
		}
		if zipHash != v.ZipHash {
			return fmt.Errorf("zip hashes to %s, recorded %s", zipHash, v.ZipHash)
		}
	}
	if v.Has(storage.Mod) {
		gomod, err := s.readStored(ctx, v, storage.Mod)
		if err != nil {
			return err
		}
		if h, err := hashGoMod(gomod); err != nil || h != v.ModHash {
			return fmt.Errorf("go.mod hashes to %s, recorded %s", h, v.ModHash)
		}
	}
	if !v.Has(storage.Info) {
		return nil
	}
	info, err := s.readStored(ctx, v, storage.Info)
	if err != nil {
		return err
	}
	var parsed struct{ Version string }
	if err := json.Unmarshal(info, &parsed); err != nil || parsed.Version != v.Version {
		return fmt.Errorf(".info does not name version %s", v.Version)
	}
	return nil
}

// hashStoredZip returns the h1: hash of a version's stored zip.
func (s *Service) hashStoredZip(ctx context.Context, v *Version) (string, error) {
	f, err := s.blobs.Open(ctx, v.Path, v.Version, storage.Zip)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return "", fmt.Errorf("storage returned a %T, which cannot be read as a zip", f)
	}
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	zr, err := zip.NewReader(ra, fi.Size())
	if err != nil {
		return "", fmt.Errorf("zip: %w", err)
	}
	return hashZip(zr)
}

// readStored returns a small stored file of a version, bounded in size.
func (s *Service) readStored(ctx context.Context, v *Version, kind storage.Kind) ([]byte, error) {
	f, err := s.blobs.Open(ctx, v.Path, v.Version, kind)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}
