package modproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"

	"agora/auth"
	"agora/storage"
)

// MaxInfoFile bounds the size of an imported .info file, in bytes. An .info
// is a small JSON object: a version, a time and perhaps its VCS origin.
const MaxInfoFile = 64 << 10

// Import stores path@version from the files a module cache or a GOPROXY
// directory holds for it, on behalf of who, who must be an administrator:
// info and mod are the .info and .mod files, zip the open module zip, which
// is read from its start and copied to the temporary directory before it
// is checked and stored.
//
// Everything is checked before anything is stored, and a failure wraps
// ErrInvalid (ErrTooLarge for a file over its limit): the version must be
// canonical and fit the path's major version; info, unless it is nil, must
// be JSON that names version, and its Time becomes the version's time
// (without info, or with an info without a Time, as the go command keeps
// the one an Agora serves for a version stored without a time, the version
// has no .info, as a version fetched without one, until an import with an
// .info or an upstream adds it); the zip must pass every rule of
// golang.org/x/mod/zip, but need not hold a go.mod (public modules from
// before modules have none); if it has one, mod must be identical to it.
// A nil mod is taken from the zip: its go.mod, or else the one the go
// command synthesises for a module without one ("module PATH").
//
// The version is recorded with Source SourceImported. An identical version
// already stored changes nothing (Created is false). Other content for a
// version ever recorded is a *ConflictError, recorded in the audit log. A
// version fetched from an upstream without its zip is completed when its
// go.mod matches. A version deleted on this server is not brought back
// (ErrGone): publish it again to restore it.
func (s *Service) Import(ctx context.Context, who auth.Principal, path, version string, info, mod []byte, zip *os.File) (*PublishResult, error) {
	res, err := s.importVersion(ctx, who, path, version, info, mod, zip, "")
	if err == nil && res.Created {
		s.writeList(ctx, path)
	}
	return res, err
}

// importVersion is Import but for the @v/list file, which its caller
// rewrites. If wantZipHash is not empty, the zip must hash to it: it is the
// .ziphash the go command recorded when it downloaded the zip into its
// module cache.
func (s *Service) importVersion(ctx context.Context, who auth.Principal, path, version string, info, mod []byte, zip *os.File, wantZipHash string) (*PublishResult, error) {
	if !who.Can(auth.ScopeAdmin) {
		return nil, errorf(ErrForbidden, path, version, "importing needs an administrator")
	}
	t, err := checkImportedInfo(path, version, info)
	if err != nil {
		return nil, err
	}
	if t.IsZero() {
		info = nil // it tells nothing the version's record does not
	}
	var modHash string
	if mod != nil {
		if modHash, err = checkImportedMod(path, version, mod); err != nil {
			return nil, err
		}
	}
	// The zip is copied first, and the copy checked, hashed and stored:
	// the transaction then only moves it into place, as a publish's, and
	// holds the database (on SQLite, every writer's) for no copy. And
	// what is stored is what was hashed, whatever the operator's file's
	// name meanwhile names.
	tmp, size, err := s.copyImportedZip(path, version, zip)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	synced := make(chan error, 1)
	go func() { synced <- tmp.Sync() }() // while the copy is checked and hashed
	zipHash, zipGoMod, err := inspectModuleZip(tmp.Name(), path, version)
	if serr := <-synced; err == nil && serr != nil {
		err = fmt.Errorf("import %s@%s: storing the zip: %w", path, version, serr)
	}
	if err != nil {
		return nil, err
	}
	if wantZipHash != "" && zipHash != wantZipHash {
		return nil, errorf(ErrInvalid, path, version, "the zip hashes to %s, but the module cache recorded %s when it downloaded it: the cached copy is corrupt (remove it and download it again)", zipHash, wantZipHash)
	}
	if mod == nil {
		if mod = zipGoMod; mod == nil {
			mod = synthesizedGoMod(path)
		}
		if modHash, err = checkImportedMod(path, version, mod); err != nil {
			return nil, err
		}
	}
	if zipGoMod != nil && !bytes.Equal(zipGoMod, mod) {
		return nil, errorf(ErrInvalid, path, version, "the .mod file differs from the go.mod in the zip: the directory is inconsistent")
	}

	// An import brings in many versions at once: it must not undo a
	// deliberate delete by the way.
	recorded, err := s.meta.Version(ctx, path, version)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	case !recorded.Live() && (recorded.ZipHash == zipHash || recorded.ZipHash == ""):
		return nil, gone(recorded)
	}

	v := &Version{
		Path:        path,
		Version:     version,
		Time:        t,
		Size:        size,
		ZipHash:     zipHash,
		ModHash:     modHash,
		Source:      SourceImported,
		PublishedBy: who.User,
		PublishedAt: s.now().UTC().Truncate(time.Second),
	}
	var res *PublishResult
	err = s.lockVersion(ctx, path, version, func(ctx context.Context) error {
		var err error
		res, err = s.commitVersion(ctx, v, tmp.Name(), mod, info)
		return err
	})
	if errors.Is(err, ErrExists) {
		// A concurrent publish or import of the same version committed first.
		res, err = s.compareRecorded(ctx, v)
	}
	var cerr *ConflictError
	switch {
	case errors.As(err, &cerr):
		s.auditRejection(ctx, v, cerr)
	case errors.Is(err, ErrConflict):
		s.auditImportRejection(ctx, v, err)
	}
	if err != nil {
		return nil, err
	}
	if !res.Created && info != nil && !res.Version.Has(storage.Info) && res.Version.ZipHash == zipHash {
		// Imported before without its .info: add it.
		out, added, err := s.importInfo(ctx, v, t, info)
		if err != nil {
			return nil, err
		}
		res = &PublishResult{Version: out, Created: added, Restored: res.Restored}
	}
	return res, nil
}

// importStoredZip answers the import of path@version from a module cache
// whose .ziphash file records zipHash for the version's zip, without
// reading the zip, when the version is stored live with that very hash,
// with the go.mod of mod, if mod is not nil, and storage holds every file
// its record announces: the zip stored was checked and hashed when it was
// stored, and the go command checked the cached one against its .ziphash
// when it downloaded it. Only an .info the record lacks is added, as
// importVersion adds it. It reports whether it answered; if not, the
// caller imports the version through importVersion, which reads and
// hashes the zip and answers everything else: a conflict, a corrupt
// cached zip, a .mod that is not the zip's go.mod, files to restore.
func (s *Service) importStoredZip(ctx context.Context, who auth.Principal, path, version string, info, mod []byte, zipHash string) (_ *PublishResult, ok bool, _ error) {
	if !who.Can(auth.ScopeAdmin) || zipHash == "" {
		return nil, false, nil
	}
	t, err := checkImportedInfo(path, version, info)
	if err != nil {
		return nil, false, nil
	}
	recorded, err := s.meta.Version(ctx, path, version)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, true, err
	case !recorded.Live() || recorded.ZipHash != zipHash:
		return nil, false, nil
	}
	if mod != nil {
		if modHash, err := checkImportedMod(path, version, mod); err != nil || modHash != recorded.ModHash {
			return nil, false, nil
		}
	}
	for _, kind := range recorded.Files() {
		f, err := s.blobs.Open(ctx, path, version, kind)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, false, nil // restored from the zip, read
		case err != nil:
			return nil, true, err
		}
		f.Close()
	}
	if t.IsZero() || recorded.Has(storage.Info) {
		return &PublishResult{Version: recorded}, true, nil
	}
	// Imported before without its .info: add it.
	v := &Version{Path: path, Version: version, Source: SourceImported, PublishedBy: who.User, PublishedAt: s.now().UTC().Truncate(time.Second)}
	out, added, err := s.importInfo(ctx, v, t, info)
	if err != nil {
		return nil, true, err
	}
	return &PublishResult{Version: out, Created: added}, true, nil
}

// copyImportedZip copies the zip an import of path@version reads from zip,
// from its start, to a temporary file, which the caller closes and
// removes, and returns it and the zip's size. An error reading zip wraps
// a bodyError; a zip over modzip.MaxZipFile is ErrTooLarge.
func (s *Service) copyImportedZip(path, version string, zip *os.File) (_ *os.File, size int64, err error) {
	fi, err := zip.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("import %s@%s: %w", path, version, bodyError{err})
	}
	if fi.Size() > modzip.MaxZipFile {
		return nil, 0, errorf(ErrTooLarge, path, version, "module zip larger than %d bytes", int64(modzip.MaxZipFile))
	}
	tmp, err := s.createTemp("import-*.zip")
	if err != nil {
		return nil, 0, fmt.Errorf("import %s@%s: %w", path, version, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := &fileWriter{f: tmp}
	n, err := io.Copy(w, bodyReader{io.NewSectionReader(zip, 0, modzip.MaxZipFile+1)})
	switch {
	case w.err != nil:
		return nil, 0, fmt.Errorf("import %s@%s: storing the zip: %w", path, version, w.err)
	case err != nil:
		return nil, 0, fmt.Errorf("import %s@%s: reading the zip: %w", path, version, err)
	case n > modzip.MaxZipFile:
		return nil, 0, errorf(ErrTooLarge, path, version, "module zip larger than %d bytes", int64(modzip.MaxZipFile))
	}
	return tmp, n, nil
}

// importGoMod stores path@version's go.mod, and its .info unless info is
// nil, from a directory that has no zip of the version, on behalf of who,
// an administrator (ImportDir checked): what a module cache holds of most
// of a build's dependencies, whose go.mod the go command reads to work out
// the module graph without compiling them.
//
// The files are checked as Import checks them and recorded as a fetch
// records a file, both in one commit (see commitImportedFiles), with Source
// SourceImported; the zip can come later, from an import or an upstream,
// and must then hold the same go.mod. A version recorded with the same
// go.mod is left as it is, its .info added if it had none (Created says
// whether this import recorded anything), and its .mod and .info put back
// if storage lost them (Restored says so). One recorded with another
// go.mod is a conflict, recorded in the audit log. A deleted version is
// not brought back (ErrGone). Like fetched files, and
// unlike a module's source, a go.mod alone is not a publish: it is not
// written to the audit log.
func (s *Service) importGoMod(ctx context.Context, who auth.Principal, path, version string, info, mod []byte) (*PublishResult, error) {
	t, modHash, err := checkImported(path, version, info, mod)
	if err != nil {
		return nil, err
	}
	if t.IsZero() {
		info = nil
	}
	v := &Version{
		Path:        path,
		Version:     version,
		ModHash:     modHash,
		Source:      SourceImported,
		PublishedBy: who.User,
		PublishedAt: s.now().UTC().Truncate(time.Second),
	}
	// conflict reports a recorded go.mod other than mod's, if there is one.
	conflict := func(recorded *Version) error {
		if recorded.ModHash == "" || recorded.ModHash == modHash {
			return nil
		}
		err := errorf(ErrConflict, path, version, "the .mod file has hash %s, but a go.mod with hash %s is recorded for this version (from %s)", modHash, recorded.ModHash, recorded.Source)
		s.auditImportRejection(ctx, v, err)
		return err
	}

	recorded, err := s.liveRecord(ctx, path, version)
	if err != nil {
		return nil, err
	}
	if recorded != nil {
		if err := conflict(recorded); err != nil {
			return nil, err
		}
	}
	restored := false
	if recorded != nil && recorded.Has(storage.Mod) {
		// The same go.mod again: it puts back what storage lost of it,
		// as the answer for a lost file tells the operator to do.
		err := s.lockVersion(ctx, path, version, func(ctx context.Context) error {
			cur, err := s.liveRecord(ctx, path, version) // a delete may have come
			if err == nil && cur != nil && cur.ModHash == modHash {
				restored, err = s.restoreFiles(ctx, cur, "", mod)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	files := make(map[storage.Kind][]byte)
	if recorded == nil || !recorded.Has(storage.Mod) {
		files[storage.Mod] = mod
	}
	if info != nil && (recorded == nil || !recorded.Has(storage.Info)) {
		files[storage.Info] = info
		v.Time = t
	}
	if len(files) == 0 {
		return &PublishResult{Version: recorded, Restored: restored}, nil
	}
	out, added, err := s.commitImportedFiles(ctx, v, files)
	if err != nil {
		return nil, err
	}
	if err := conflict(out); err != nil { // recorded meanwhile
		return nil, err
	}
	return &PublishResult{Version: out, Created: added, Restored: restored}, nil
}

// importInfo adds the .info file info, which gives the time t, to the
// record of v's version, imported before without one, and reports whether
// it did (see commitImportedFiles).
func (s *Service) importInfo(ctx context.Context, v *Version, t time.Time, info []byte) (*Version, bool, error) {
	vi := *v
	vi.Time = t
	return s.commitImportedFiles(ctx, &vi, map[storage.Kind][]byte{storage.Info: info})
}

// commitImportedFiles stores files, the .mod or .info or both (kind →
// content) of an import of v's version that the version's record lacks,
// and records them, as a fetch stores and records a file: the files
// first, then the record, inserted or filled, in one transaction, which
// records what the record still lacks then, and nothing if it lacks
// nothing. v says what the record is to say of them: ModHash for the .mod,
// Time for the .info. It returns the record afterwards and reports whether
// this commit added anything to it. So each version changes in one commit:
// of two imports of one directory at once, one records the files of a
// version and the other finds them recorded, and reports it skipped.
//
// A live record with a go.mod other than v's, when files holds a .mod, is
// returned as it is, with nothing stored, for the caller to report. A
// deleted version is ErrGone.
func (s *Service) commitImportedFiles(ctx context.Context, v *Version, files map[storage.Kind][]byte) (*Version, bool, error) {
	var (
		out             *Version
		added, addedMod bool
	)
	err := s.lockVersion(ctx, v.Path, v.Version, func(ctx context.Context) error {
		var err error
		out, added, addedMod, err = s.commitImportedLocked(ctx, v, files)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if addedMod {
		s.writeList(ctx, v.Path)
	}
	return out, added, nil
}

// commitImportedLocked is commitImportedFiles once it holds the version's
// lock. It also reports whether it recorded the .mod, which the @v/list
// file then names.
func (s *Service) commitImportedLocked(ctx context.Context, v *Version, files map[storage.Kind][]byte) (_ *Version, added, addedMod bool, _ error) {
	_, withMod := files[storage.Mod]
	otherMod := func(recorded *Version) bool {
		return withMod && recorded.ModHash != "" && recorded.ModHash != v.ModHash
	}

	// The files are written before the record, outside the transaction,
	// as commitFetched writes a fetched file, and only those that the
	// record does not announce.
	recorded, err := s.liveRecord(ctx, v.Path, v.Version)
	if err != nil {
		return nil, false, false, err
	}
	if recorded != nil && otherMod(recorded) {
		return recorded, false, false, nil
	}
	var put []storage.Kind
	for _, kind := range storage.Kinds { // the .mod before the .info
		if _, ok := files[kind]; ok && (recorded == nil || !recorded.Has(kind)) {
			put = append(put, kind)
		}
	}
	if len(put) == 0 {
		return recorded, false, false, nil
	}
	for _, kind := range put {
		if err := s.blobs.Put(context.WithoutCancel(ctx), v.Path, v.Version, kind, bytes.NewReader(files[kind])); err != nil {
			s.removeFetched(v.Path, v.Version)
			return nil, false, false, err
		}
	}
	// What a new record says: the files just put, and nothing else.
	rec := Version{Path: v.Path, Version: v.Version, Source: v.Source, PublishedBy: v.PublishedBy, PublishedAt: v.PublishedAt}
	for _, kind := range put {
		rec = *mergeFile(&rec, v, kind)
	}

	var out *Version
	err = s.meta.Update(ctx, func(tx MetadataTx) error {
		out, added, addedMod = nil, false, false
		recorded, err := tx.Version(v.Path, v.Version)
		switch {
		case errors.Is(err, ErrNotFound):
			err := tx.InsertVersion(&rec)
			if err == nil {
				ins := rec
				out, added, addedMod = &ins, true, ins.Has(storage.Mod)
				return nil
			}
			if !errors.Is(err, ErrExists) {
				return err
			}
			// Another process recorded it just now.
			if recorded, err = tx.Version(v.Path, v.Version); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		switch {
		case !recorded.Live():
			return gone(recorded)
		case otherMod(recorded):
			out = recorded
			return nil
		}
		out = recorded
		for _, kind := range put {
			if out.Has(kind) {
				continue // recorded meanwhile: keep what is there
			}
			if err := tx.FillVersion(&rec, kind); err != nil {
				return err
			}
			out, added = mergeFile(out, &rec, kind), true
			addedMod = addedMod || kind == storage.Mod
		}
		return nil
	})
	if err != nil {
		s.removeFetched(v.Path, v.Version)
		return nil, false, false, err
	}
	if added {
		s.forget(v.Path, v.Version) // the record changed: drop what memory holds
	}
	return out, added, addedMod, nil
}

// checkImported checks the version and the .info and .mod files of an
// import, and returns the time the .info gives (see checkImportedInfo) and
// the go.mod's hash.
func checkImported(path, version string, info, mod []byte) (time.Time, string, error) {
	t, err := checkImportedInfo(path, version, info)
	if err != nil {
		return time.Time{}, "", err
	}
	modHash, err := checkImportedMod(path, version, mod)
	return t, modHash, err
}

// checkImportedInfo checks the version and the .info file of an import,
// and returns the time the .info gives: zero when info is nil or has no
// time, and the version is then imported without an .info.
func checkImportedInfo(path, version string, info []byte) (time.Time, error) {
	if err := checkVersion(path, version); err != nil {
		return time.Time{}, err
	}
	if info == nil {
		return time.Time{}, nil
	}
	return parseInfo(path, version, info)
}

// synthesizedGoMod returns the go.mod that the go command synthesises, and
// proxies serve, for a version of path whose zip has none: a module from
// before modules.
func synthesizedGoMod(path string) []byte {
	return []byte("module " + modfile.AutoQuote(path) + "\n")
}

// parseInfo checks an .info file of path@version, imported or stored, as
// the go command reads it, and returns the time it gives the version:
// zero if it gives none, as the .info an Agora serves of a version stored
// without a time, which the go command keeps in its module cache with a
// zero Time.
func parseInfo(path, version string, info []byte) (time.Time, error) {
	if len(info) > MaxInfoFile {
		return time.Time{}, errorf(ErrTooLarge, path, version, ".info file larger than %d bytes", MaxInfoFile)
	}
	var parsed struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(info, &parsed); err != nil {
		return time.Time{}, errorf(ErrInvalid, path, version, ".info file is not valid JSON: %v", err)
	}
	if parsed.Version != version {
		return time.Time{}, errorf(ErrInvalid, path, version, ".info file names version %q", parsed.Version)
	}
	if parsed.Time.IsZero() {
		return time.Time{}, nil
	}
	return parsed.Time.UTC(), nil
}

// checkImportedMod checks an imported .mod file and returns its go.sum hash.
// It does not require the module line to name path: a public module's
// go.mod may declare another path, and proxies serve it as it is.
func checkImportedMod(path, version string, mod []byte) (string, error) {
	if len(mod) > modzip.MaxGoMod {
		return "", errorf(ErrTooLarge, path, version, ".mod file larger than %d bytes", modzip.MaxGoMod)
	}
	if _, err := modfile.ParseLax("go.mod", mod, nil); err != nil {
		return "", errorf(ErrInvalid, path, version, ".mod file: %v", err)
	}
	return hashGoMod(mod)
}

// auditImportRejection records a refused conflicting import that is not a
// *ConflictError (those go through auditRejection): a go.mod that differs
// from the one recorded when the version was fetched.
func (s *Service) auditImportRejection(ctx context.Context, v *Version, rejected error) {
	err := s.meta.Update(context.WithoutCancel(ctx), func(tx MetadataTx) error {
		return tx.AppendAudit(&AuditEvent{
			At: v.PublishedAt, Actor: v.PublishedBy, Action: ActionRejected,
			Path: v.Path, Version: v.Version, Detail: "import: " + rejected.Error(),
		})
	})
	if err != nil {
		s.log.Error("recording a rejected import in the audit log", "module", v.Path, "version", v.Version, "err", err)
	}
}

// ImportOutcome is what importing one version came to.
type ImportOutcome int

// The outcomes of importing one version. Only ImportImported and
// ImportRestored store anything.
const (
	// ImportImported: the import recorded the version, or files of it
	// that its record lacked (an .info, the zip of a version whose go.mod
	// alone was recorded), in one commit. Of imports of one directory at
	// once, only the one whose commit recorded them counts a version as
	// imported; the others find it stored and skip it, so that their
	// counts add up to the versions stored.
	ImportImported ImportOutcome = iota
	// ImportRestored: an identical version was already stored, but
	// storage had lost files of it, which were put back.
	ImportRestored
	// ImportSkipped: an identical version was already stored (perhaps
	// just now, by another import), or the version was deleted on this
	// server.
	ImportSkipped
	// ImportConflict: other content is recorded for the version.
	ImportConflict
	// ImportInvalid: the files are corrupt or inconsistent (a broken zip,
	// a .ziphash that does not match, an .info naming another version).
	ImportInvalid
	// ImportUnreadable: the version's files could not be read from the
	// directory.
	ImportUnreadable
)

var outcomeNames = [...]string{"imported", "restored", "skipped", "conflict", "invalid", "unreadable"}

// String returns the outcome's name as progress lines print it.
func (o ImportOutcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("ImportOutcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// ImportEvent reports the outcome of importing one version of a directory.
type ImportEvent struct {
	N, Total int // the version's position, from 1, among the versions found
	Path     string
	Version  string
	// GoModOnly says the directory has the version's .mod but no zip.
	GoModOnly bool
	// NoInfo says the directory has the version's zip but no .info, nor
	// is it a pseudo-version, which names its time: the version's time is
	// unknown.
	NoInfo  bool
	Outcome ImportOutcome
	// Err says why the version was not imported; nil for ImportImported,
	// and for ImportSkipped when an identical version was stored.
	Err error
}

// String returns a progress line: "[12/340] golang.org/x/mod@v0.42.0
// imported", with "(go.mod only)" after the outcome for a version without
// a zip and "(no .info)" for one without an .info, and followed by the
// reason for any outcome but imported.
func (e ImportEvent) String() string {
	line := fmt.Sprintf("[%d/%d] %s@%s %s", e.N, e.Total, e.Path, e.Version, e.Outcome)
	switch {
	case e.GoModOnly:
		line += " (go.mod only)"
	case e.NoInfo:
		line += " (no .info)"
	}
	switch {
	case e.Err != nil:
		line += ": " + e.reason()
	case e.Outcome == ImportSkipped:
		line += ": already stored"
	case e.Outcome == ImportRestored:
		line += ": storage had lost files of it"
	}
	return line
}

// reason returns e.Err's message without a leading "path@version: ".
func (e ImportEvent) reason() string {
	msg := e.Err.Error()
	if rest, ok := strings.CutPrefix(msg, e.Path+"@"+e.Version+": "); ok {
		return rest
	}
	return msg
}

// ImportSummary counts the outcomes of importing a directory.
type ImportSummary struct {
	// Total counts the versions the directory holds a zip or a .mod of;
	// those not Done when an import stops early were not looked at.
	Total                                                      int
	Imported, Restored, Skipped, Conflict, Invalid, Unreadable int
	// NoZip counts those of the versions done with a .mod but no zip,
	// imported as their go.mod only. A module cache holds many: the go
	// command needs only the go.mod of most of a build's dependencies.
	NoZip int
	// NoInfo counts those of the versions done with a zip but no .info
	// with a time (pseudo-versions aside), imported without one: the go
	// command downloads a zip alone
	// when 'go mod tidy' checks the tests of dependencies. Offline, their
	// .info is not found, so a query that resolves to one of them (such
	// as @latest) fails; a build that names them in go.mod works.
	NoInfo int
}

// count adds one outcome.
func (s *ImportSummary) count(o ImportOutcome) {
	switch o {
	case ImportImported:
		s.Imported++
	case ImportRestored:
		s.Restored++
	case ImportSkipped:
		s.Skipped++
	case ImportConflict:
		s.Conflict++
	case ImportInvalid:
		s.Invalid++
	case ImportUnreadable:
		s.Unreadable++
	}
}

// Done returns the number of versions that were looked at.
func (s ImportSummary) Done() int {
	return s.Imported + s.Restored + s.Skipped + s.Conflict + s.Invalid + s.Unreadable
}

// String returns the summary line printed at the end of an import.
func (s ImportSummary) String() string {
	noun := "versions"
	if s.Total == 1 {
		noun = "version"
	}
	done := fmt.Sprintf("%d %s", s.Done(), noun)
	if s.Done() < s.Total {
		done = fmt.Sprintf("%d of %d %s", s.Done(), s.Total, noun)
	}
	return fmt.Sprintf("%s: %d imported, %d restored, %d skipped, %d conflict, %d invalid, %d unreadable; %d of them a go.mod without a zip, %d a zip without an .info",
		done, s.Imported, s.Restored, s.Skipped, s.Conflict, s.Invalid, s.Unreadable, s.NoZip, s.NoInfo)
}

// Err returns an error if versions were refused (conflicting, invalid or
// unreadable), nil otherwise.
func (s ImportSummary) Err() error {
	if n := s.Conflict + s.Invalid + s.Unreadable; n > 0 {
		return fmt.Errorf("%d versions were not imported (%d conflicting, %d invalid, %d unreadable): see the lines above", n, s.Conflict, s.Invalid, s.Unreadable)
	}
	return nil
}

// ImportDir imports every module version that dir holds a zip or a .mod
// of, on behalf of who, who must be an administrator. dir is a GOPROXY file
// tree (<escaped path>/@v/<escaped version>.info, .mod, .zip), such as the
// module cache's download directory, $GOMODCACHE/cache/download; given
// $GOMODCACHE itself, ImportDir uses its cache/download. Lock files,
// partial downloads, list files, .info files alone and the checksum
// database cache (sumdb/) are ignored. A .ziphash file the go command left
// next to a zip must match the zip's hash, unless the version is already
// stored with that hash: it is then skipped without reading its zip (see
// importStoredZip), which makes importing a module cache again quick. A
// version with a .mod and no zip
// is imported as its go.mod (see importGoMod): without them, a proxy
// filled from a module cache could build the modules it has, but not
// work out their module graph ('go mod tidy', 'go list -m all'). A zip
// without a .mod is imported with the go.mod in it (see Import).
//
// Versions are imported one at a time with Import, in order of module path
// and semantic version, and report is called once for each. Each version is
// stored atomically, and versions already stored are skipped, so an
// interrupted import can simply be run again. After the versions of a
// module, and when it stops, ImportDir rewrites the module's @v/list file
// in storage, whether it stored anything or not: an import killed between
// a version's commit and that rewrite leaves the storage tree, a GOPROXY
// file tree, without the version in the list until it runs again.
//
// When ctx is done ImportDir stops before the next version and returns
// ctx's error with the summary so far. It also stops at a failure of the
// registry itself (database, storage) and returns it; problems with
// versions are only reported.
func (s *Service) ImportDir(ctx context.Context, who auth.Principal, dir string, report func(ImportEvent)) (ImportSummary, error) {
	var sum ImportSummary
	if !who.Can(auth.ScopeAdmin) {
		return sum, errorf(ErrForbidden, "", "", "importing needs an administrator")
	}
	root, err := importRoot(dir)
	if err != nil {
		return sum, err
	}
	found, links, err := scanImportDir(root)
	if err != nil {
		return sum, err
	}
	for _, link := range links {
		s.log.Warn("import: skipped a symbolic link to a directory: links inside the directory imported are not followed (copy what it links to in its place to import it)", "link", link)
	}
	if len(found) == 0 {
		// Most likely the wrong directory: say so rather than succeed.
		return sum, errorf(ErrInvalid, "", "", "import: found no module version under %s: give a module cache ($GOMODCACHE, or its cache/download) or a GOPROXY file tree (<escaped path>/@v/<escaped version>.zip, .mod, .info)", dir)
	}
	sum.Total = len(found)
	listed := "" // the module whose versions are imported, its list not yet rewritten
	rewriteList := func() {
		if listed != "" {
			s.writeList(ctx, listed) // even once ctx is done
		}
	}
	defer rewriteList()
	for i, c := range found {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if c.path != listed {
			rewriteList()
			listed = ""
			if _, err := module.EscapePath(c.path); err == nil {
				listed = c.path
			}
		}
		// A version started is finished: interrupting stops between versions.
		outcome, err := s.importFound(context.WithoutCancel(ctx), who, c)
		if outcome < 0 {
			return sum, fmt.Errorf("import %s@%s: %w", c.path, c.version, err)
		}
		sum.count(outcome)
		if !c.zip {
			sum.NoZip++
		}
		if c.noInfo() { // known once its .info was read
			sum.NoInfo++
		}
		report(ImportEvent{N: i + 1, Total: len(found), Path: c.path, Version: c.version, GoModOnly: !c.zip, NoInfo: c.noInfo(), Outcome: outcome, Err: err})
	}
	return sum, nil
}

// importRoot returns the directory to scan for dir: dir, or the module
// cache's download directory if dir is a module cache or its cache
// directory, with symbolic links resolved.
func importRoot(dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("import: %s is not a directory: give a module cache or a GOPROXY directory", dir)
	}
	downloads := []string{filepath.Join(dir, "cache", "download")}
	if filepath.Base(filepath.Clean(dir)) == "cache" {
		downloads = append(downloads, filepath.Join(dir, "download"))
	}
	root := dir
	for _, download := range downloads {
		if fi, err := os.Stat(download); err == nil && fi.IsDir() {
			root = download
			break
		}
	}
	// The walk follows no link, not even the root's.
	root, err = filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	return root, nil
}

// foundVersion is a version of which an import directory holds a zip or a
// .mod.
type foundVersion struct {
	path, version  string // unescaped; as found if err is set
	dir            string // the @v directory
	file           string // its files' name without extension: the escaped version
	zip, info, mod bool   // whether the .zip, .info and .mod files are there
	zipHash        bool   // whether a .ziphash file is there
	err            error  // the path or version cannot be unescaped
}

// name returns the name of the version's file with extension ext.
func (f *foundVersion) name(ext string) string { return filepath.Join(f.dir, f.file+ext) }

// noInfo reports whether the version has a zip and no .info, and is no
// pseudo-version, which names its time: it is imported without a time.
func (f *foundVersion) noInfo() bool {
	return f.zip && !f.info && f.err == nil && !isPseudo(f.version)
}

// scanImportDir finds the versions under root that have a zip or a .mod,
// sorted by path and version. It follows no symbolic link to a directory,
// and returns those it met.
func scanImportDir(root string) (found []*foundVersion, links []string, err error) {
	err = filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		link := d.Type()&fs.ModeSymlink != 0
		if !d.IsDir() && !link || name == root {
			return nil
		}
		rel, err := filepath.Rel(root, name)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "sumdb" || rel == "cache" || d.Name() != "@v" && strings.Contains(d.Name(), "@"):
			// The checksum database cache of a download directory, the
			// VCS cache of a module cache, or an extracted module
			// (path@version) in a module cache: no escaped module path
			// has an @ in it.
			if link {
				return nil // not a directory to WalkDir: SkipDir would skip its siblings
			}
			return filepath.SkipDir
		case link:
			if fi, err := os.Stat(name); err == nil && fi.IsDir() {
				links = append(links, name)
			}
			return nil
		case d.Name() == "@v":
			vs, err := scanVersionDir(name, strings.TrimSuffix(strings.TrimSuffix(rel, "@v"), "/"))
			found = append(found, vs...)
			if err != nil {
				return err
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("import: reading %s: %w", root, err)
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.path != b.path {
			return a.path < b.path
		}
		if c := semver.Compare(a.version, b.version); c != 0 {
			return c < 0
		}
		return a.version < b.version
	})
	return found, links, nil
}

// scanVersionDir returns the versions with a zip or a .mod in the @v
// directory dir of the module whose escaped path is escPath.
func scanVersionDir(dir, escPath string) ([]*foundVersion, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type files struct{ zip, info, mod, zipHash bool }
	byVersion := make(map[string]*files)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		ext := filepath.Ext(e.Name())
		switch ext {
		case ".zip", ".info", ".mod", ".ziphash":
		default:
			continue // list, .lock, .partial, .tmp files
		}
		file := strings.TrimSuffix(e.Name(), ext)
		f := byVersion[file]
		if f == nil {
			f = new(files)
			byVersion[file] = f
		}
		switch ext {
		case ".zip":
			f.zip = true
		case ".info":
			f.info = true
		case ".mod":
			f.mod = true
		case ".ziphash":
			f.zipHash = true
		}
	}
	path, perr := module.UnescapePath(escPath)
	if perr != nil {
		path = escPath
		perr = fmt.Errorf("directory %s is not an escaped module path: %v", escPath, perr)
	}
	var found []*foundVersion
	for file, f := range byVersion {
		if !f.zip && !f.mod {
			continue // an .info alone: the go command resolved a query
		}
		fv := &foundVersion{path: path, version: file, dir: dir, file: file, zip: f.zip, info: f.info, mod: f.mod, zipHash: f.zipHash, err: perr}
		if fv.err == nil {
			if v, err := module.UnescapeVersion(file); err != nil {
				fv.err = fmt.Errorf("files %s.* are not named after an escaped version: %v", file, err)
			} else {
				fv.version = v
			}
		}
		found = append(found, fv)
	}
	return found, nil
}

// importFound imports one version found in a directory and returns its
// outcome and, unless it was imported, why. A negative outcome is a
// failure of the registry itself, which ends the import.
func (s *Service) importFound(ctx context.Context, who auth.Principal, f *foundVersion) (ImportOutcome, error) {
	if f.err != nil {
		return ImportInvalid, f.err
	}
	var info []byte
	if f.info {
		var err error
		if info, err = readImportFile(f.name(".info"), MaxInfoFile); err != nil {
			return ImportUnreadable, err
		}
		if t, err := parseInfo(f.path, f.version, info); err == nil && t.IsZero() {
			// The .info an Agora serves of a version stored without a
			// time, kept by the go command with a zero Time: as if
			// there were none. (A broken one is refused below.)
			info, f.info = nil, false
		}
	}
	if info == nil && isPseudo(f.version) {
		// A pseudo-version names its commit's time, which its .info gives.
		t, err := module.PseudoVersionTime(f.version)
		if err != nil {
			return ImportInvalid, err
		}
		if info, err = infoFile(f.version, t); err != nil {
			return -1, err
		}
	}
	// Without an .info the version's time is unknown, and it gets none:
	// the go command downloads a zip without its .info when it needs a
	// version's packages only to check them ('go mod tidy' loading the
	// tests of dependencies), and asks for an .info only to resolve a
	// query.
	var mod []byte // nil without a .mod: importVersion takes it from the zip
	if f.mod {
		var err error
		if mod, err = readImportFile(f.name(".mod"), modzip.MaxGoMod); err != nil {
			return ImportUnreadable, err
		}
	}
	if !f.zip {
		return importOutcome(s.importGoMod(ctx, who, f.path, f.version, info, mod))
	}
	wantZipHash := "" // what the module cache's .ziphash says the zip hashes to
	if f.zipHash {
		b, err := readImportFile(f.name(".ziphash"), 1024)
		if err != nil {
			return ImportUnreadable, err
		}
		wantZipHash = strings.TrimSpace(string(b))
	}
	// Known without reading the zip: from the .ziphash, or because the
	// zip is the stored one. Only the .ziphash is what importVersion must
	// find if it reads the zip.
	known := wantZipHash
	if known == "" {
		known = s.storedZipHash(ctx, f.path, f.version, f.name(".zip"))
	}
	if known != "" {
		if res, ok, err := s.importStoredZip(ctx, who, f.path, f.version, info, mod, known); ok {
			return importOutcome(res, err)
		}
	}
	zip, err := os.Open(f.name(".zip"))
	if err != nil {
		return ImportUnreadable, err
	}
	defer zip.Close()
	return importOutcome(s.importVersion(ctx, who, f.path, f.version, info, mod, zip, wantZipHash))
}

// storedZipHash returns the recorded hash of path@version's zip if the
// file name is that very zip, the one storage holds: the import of the
// storage directory itself, as a restore from backups runs it, whose tree
// has no .ziphash files. The stored zip was checked and hashed when it was
// stored (storage:verify checks it again), so importStoredZip need not
// read it. It returns "" otherwise, or if it cannot tell.
func (s *Service) storedZipHash(ctx context.Context, path, version, name string) string {
	v, err := s.meta.Version(ctx, path, version)
	if err != nil || !v.Live() || !v.Has(storage.Zip) {
		return ""
	}
	f, err := s.blobs.Open(ctx, path, version, storage.Zip)
	if err != nil {
		return ""
	}
	defer f.Close()
	stored, err := f.Stat()
	if err != nil {
		return ""
	}
	if fi, err := os.Stat(name); err != nil || !os.SameFile(fi, stored) {
		return ""
	}
	return v.ZipHash
}

// importOutcome returns the outcome of an import that returned res and err.
func importOutcome(res *PublishResult, err error) (ImportOutcome, error) {
	switch {
	case err == nil && res.Created:
		return ImportImported, nil
	case err == nil && res.Restored:
		return ImportRestored, nil
	case err == nil:
		return ImportSkipped, nil
	case errors.Is(err, ErrGone):
		return ImportSkipped, err
	case errors.Is(err, ErrConflict):
		return ImportConflict, err
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrTooLarge):
		return ImportInvalid, err
	case errors.As(err, new(bodyError)):
		return ImportUnreadable, err // the directory's file, not the registry
	}
	return -1, err
}

// readImportFile reads the file name, up to one byte more than max so that
// the checks that follow see a file over its limit.
func readImportFile(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max+1))
}
