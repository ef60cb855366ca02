package modproxy

import (
	"archive/zip"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"agora/storage"
)

// Problem is something stored that does not match the records: the files
// of a version, or a module's @v/list file, when Version is empty.
type Problem struct {
	Path    string
	Version string
	Err     error
	// Fixed reports whether VerifyStorage repaired it: it rewrites a
	// @v/list file that does not name what the records list, and with
	// VerifyOptions.Repair removes the files of a deleted version.
	Fixed bool
}

// String returns the problem as "path@version: error", or as
// "path/@v/list: error" for a @v/list file.
func (p Problem) String() string {
	if p.Version == "" {
		return p.Path + "/@v/list: " + p.Err.Error()
	}
	return p.Path + "@" + p.Version + ": " + p.Err.Error()
}

// VerifyOptions qualify VerifyStorage.
type VerifyOptions struct {
	// Repair removes the files of deleted and blocked versions, as a
	// delete run again does. The files of a version without a record are
	// only reported: the database may have lost the record (restored from
	// a backup older than the storage), and they are then the version's
	// only copy. Neither is a file of a live version removed that its
	// record does not announce: the next fetch of the file replaces it.
	Repair bool
}

// VerifyStorage checks the storage tree against the records. Every live
// version's zip and go.mod must hash to the recorded h1: hashes, and its
// .info be JSON that gives the version and the recorded time. A file that
// no live record announces is a problem too: the files of a deleted or
// blocked version, or of one without a record (purged, or never
// recorded), and a file of a live version that its record does not list.
// Agora serves none of them, but the storage tree, a GOPROXY=file://
// directory, does. VerifyStorage calls report for each problem and returns
// how many live versions it checked. It walks the tree once, reads every
// zip in full, and asks the database for the records of each module once;
// only before it reports files that no record announces does it look
// again, holding the version's lock, which a publish, fetch or delete in
// progress holds until its files and its record agree, and before it
// rewrites a @v/list file (see verifyList).
//
// It also rewrites each @v/list file that does not name what the records
// list, and reports it, fixed: a server stopped between recording a
// version and rewriting the list (killed, or its disk full) leaves one
// that lacks the version, and later requests, which find the record, do
// not repair it; a delete or purge cut off alike leaves one that names the
// version. The list of a module without records is removed.
func (s *Service) VerifyStorage(ctx context.Context, opts VerifyOptions, report func(Problem)) (int, error) {
	stored := make(map[string]storage.StoredModule)
	err := s.blobs.Walk(ctx, func(m storage.StoredModule) error {
		stored[m.Path] = m
		return nil
	})
	if err != nil {
		return 0, err
	}
	checked := 0
	q := ModuleQuery{Limit: MaxPageSize}
	for {
		page, err := s.meta.Modules(ctx, q)
		if err != nil {
			return checked, err
		}
		for _, m := range page.Items {
			n, err := s.verifyModule(ctx, m.Path, stored[m.Path], opts, report)
			checked += n
			if err != nil {
				return checked, err
			}
			delete(stored, m.Path)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	// Modules with files and no record: purged, or recorded since the
	// listing went past them.
	for _, path := range slices.Sorted(maps.Keys(stored)) {
		n, err := s.verifyModule(ctx, path, stored[path], opts, report)
		checked += n
		if err != nil {
			return checked, err
		}
	}
	return checked, nil
}

// verifyModule checks what is stored of path, as the walk of the tree
// found it, against its records, and rewrites its @v/list file if it
// differs from them. It returns how many live versions it checked.
func (s *Service) verifyModule(ctx context.Context, path string, stored storage.StoredModule, opts VerifyOptions, report func(Problem)) (int, error) {
	files := stored.Files
	records, err := s.meta.Versions(ctx, path)
	if err != nil {
		return 0, err
	}
	sortVersions(records)
	checked := 0
	unrecorded := maps.Clone(files)
	for _, v := range records {
		if err := ctx.Err(); err != nil {
			return checked, err
		}
		delete(unrecorded, v.Version)
		kinds := files[v.Version]
		if v.Live() {
			checked++
			if err := s.verifyVersion(ctx, v); err != nil {
				report(Problem{Path: v.Path, Version: v.Version, Err: err})
			}
		}
		if slices.ContainsFunc(kinds, func(k storage.Kind) bool { return !v.Live() || !v.Has(k) }) {
			if err := s.verifyUnannounced(ctx, path, v.Version, opts, report); err != nil {
				return checked, err
			}
		}
	}
	versions := slices.Collect(maps.Keys(unrecorded))
	slices.SortFunc(versions, func(a, b string) int { return cmp.Or(semver.Compare(a, b), strings.Compare(a, b)) })
	for _, version := range versions {
		if err := s.verifyUnannounced(ctx, path, version, opts, report); err != nil {
			return checked, err
		}
	}
	s.verifyList(ctx, path, stored.List, listOf(records), report)
	return checked, nil
}

// verifyList compares path's @v/list file, as the walk of the tree found
// it (nil if there was none), with want, what the records list, and
// rewrites the file from the records if they differ, reporting it. Both
// may be out of date by then, a version recorded or deleted since, so
// that they are read again first.
func (s *Service) verifyList(ctx context.Context, path string, found, want []string, report func(Problem)) {
	if listMatches(found, want) {
		return
	}
	var err error
	if found, err = s.blobs.ReadList(ctx, path); err == nil {
		want, err = s.listFile(ctx, path)
	}
	if err != nil {
		report(Problem{Path: path, Err: fmt.Errorf("differs from the records, and reading both again failed: %w", err)})
		return
	}
	if listMatches(found, want) {
		return
	}
	var what []string
	if lacked := missingFrom(found, want); lacked != "" {
		what = append(what, "lacked "+lacked)
	}
	if extra := missingFrom(want, found); extra != "" {
		what = append(what, "should not name "+extra)
	}
	if len(what) == 0 {
		what = append(what, "not as Agora writes it")
	}
	p := Problem{Path: path, Err: errors.New(strings.Join(what, " and "))}
	verb, done := "rewritten", "rewritten from the records"
	if len(want) == 0 {
		verb, done = "removed", "removed"
	}
	if err := s.rewriteList(ctx, path); err != nil {
		p.Err = fmt.Errorf("%w, and could not be %s: %w", p.Err, verb, err)
	} else {
		p.Err, p.Fixed = fmt.Errorf("%w: %s", p.Err, done), true
	}
	report(p)
}

// listMatches reports whether found, what a @v/list file names (nil if
// there is none), is what PutList writes of want.
func listMatches(found, want []string) bool {
	return slices.Equal(found, want) && (found == nil) == (len(want) == 0)
}

// maxNamed bounds the versions a problem with a @v/list file names.
const maxNamed = 5

// missingFrom returns the versions in want and not in list, the first
// maxNamed of them and how many more, or "" if there are none.
func missingFrom(list, want []string) string {
	in := make(map[string]bool, len(list))
	for _, v := range list {
		in[v] = true
	}
	var missing []string
	for _, v := range want {
		if !in[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > maxNamed {
		return fmt.Sprintf("%s and %d more", strings.Join(missing[:maxNamed], " "), len(missing)-maxNamed)
	}
	return strings.Join(missing, " ")
}

// verifyUnannounced reports the files of path@version stored without a
// live record that announces them. The walk of the tree, and the records,
// may be out of date by now, so it reads both again, holding the
// version's lock: whatever writes or removes the version's files holds it
// until its files and its record agree. A delete in progress, whose
// tombstone is committed and which waits for the lock to remove the
// files, is reported all the same (or finished, with opts.Repair).
func (s *Service) verifyUnannounced(ctx context.Context, path, version string, opts VerifyOptions, report func(Problem)) error {
	// Reported once the lock is released: report may take its time (its
	// reader may stop reading), and the writers of the version's files, on
	// every node, would wait for it.
	var p *Problem
	err := s.lockVersion(ctx, path, version, func(ctx context.Context) error {
		v, err := s.meta.Version(ctx, path, version)
		switch {
		case errors.Is(err, ErrNotFound):
			v = nil
		case err != nil:
			return err
		}
		var stray []string
		for _, kind := range []storage.Kind{storage.Info, storage.Mod, storage.Zip} {
			if v != nil && v.Live() && v.Has(kind) {
				continue
			}
			f, err := s.blobs.Open(ctx, path, version, kind)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil {
				f.Close()
			}
			stray = append(stray, string(kind)) // or there, and unreadable
		}
		if len(stray) == 0 {
			return nil
		}
		var what string
		switch {
		case v == nil:
			what = "without a version record"
		case v.Blocked:
			what = "of a blocked version"
		case !v.Live():
			what = "of a deleted version"
		default:
			what = "its record does not announce"
		}
		p = &Problem{Path: path, Version: version, Err: fmt.Errorf("stored files %s: %s", what, strings.Join(stray, " "))}
		if opts.Repair && v != nil && !v.Live() {
			// As removeFiles does, holding the lock already.
			s.forget(path, version)
			if err := s.blobs.Delete(ctx, path, version); err != nil {
				p.Err = fmt.Errorf("%w, and could not be removed: %w", p.Err, err)
			} else {
				p.Err, p.Fixed = fmt.Errorf("%w: removed", p.Err), true
			}
		}
		return nil
	})
	if err == nil && p != nil {
		report(*p)
	}
	return err
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
	return checkInfo(info, v)
}

// checkInfo checks a stored .info against v's record, reading it as the
// go command does: JSON whose Version is the version, and whose Time is
// the recorded time. The record keeps the time to the microsecond (or, of
// a version recorded by an older build, as the database kept it; see
// Version.givesTime), and an upstream's .info, stored as it came, may give
// it to the nanosecond. What else the .info holds (an upstream's Origin)
// does not matter.
func checkInfo(info []byte, v *Version) error {
	t, err := parseInfo(v.Path, v.Version, info)
	if e := (*Error)(nil); errors.As(err, &e) {
		return e.Err // the report names the version
	} else if err != nil {
		return err
	}
	switch {
	case t.IsZero():
		return fmt.Errorf(".info gives no time, recorded %s", v.Time.Format(time.RFC3339Nano))
	case !v.givesTime(t):
		return fmt.Errorf(".info gives the time %s, recorded %s", t.Format(time.RFC3339Nano), v.Time.Format(time.RFC3339Nano))
	}
	return nil
}

// hashStoredZip returns the h1: hash of a version's stored zip.
func (s *Service) hashStoredZip(ctx context.Context, v *Version) (string, error) {
	f, err := s.openStored(ctx, v, storage.Zip)
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
	f, err := s.openStored(ctx, v, kind)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// openStored opens the stored file of kind of v. A file missing is said
// plainly, as an operator reading storage:verify's report wants it, not
// as the error of an open, with the storage's whole path.
func (s *Service) openStored(ctx context.Context, v *Version, kind storage.Kind) (storage.File, error) {
	f, err := s.blobs.Open(ctx, v.Path, v.Version, kind)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s missing from storage", kind)
	}
	return f, err
}
