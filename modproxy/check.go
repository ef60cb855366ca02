package modproxy

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"agora/storage"
)

// The longest module path and version Agora records, in bytes: the sizes
// of the metadata database's columns (modules.path, versions.version).
// Longer ones are valid, but PostgreSQL would refuse to store them.
const (
	maxPathLen    = 512
	maxVersionLen = 256
)

// checkPath reports whether path is a valid module path, and one short
// enough to record.
func checkPath(path string) error {
	if err := module.CheckPath(path); err != nil {
		return errorf(ErrInvalid, "", "", "%v", err)
	}
	if len(path) > maxPathLen {
		return errorf(ErrInvalid, "", "", "module path %.40q... is %d bytes long; Agora keeps paths of at most %d", path, len(path), maxPathLen)
	}
	if err := storage.CheckNames(path, ""); err != nil {
		return errorf(ErrInvalid, path, "", "%v", err)
	}
	return nil
}

// checkVersion reports whether version is a canonical semantic version that
// path can carry (v2 and up only with a /vN suffix or +incompatible).
func checkVersion(path, version string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if len(version) > maxVersionLen {
		return errorf(ErrInvalid, path, "", "version %.40q... is %d bytes long; Agora keeps versions of at most %d", version, len(version), maxVersionLen)
	}
	if err := storage.CheckNames(path, version); err != nil {
		return errorf(ErrInvalid, path, "", "version %.40q...: %v", version, err)
	}
	if !semver.IsValid(version) {
		return errorf(ErrInvalid, path, version, "version %q is not a semantic version", version)
	}
	if c := module.CanonicalVersion(version); c != version {
		return errorf(ErrInvalid, path, version, "version %q is not canonical (should be %q)", version, c)
	}
	if err := module.Check(path, version); err != nil {
		var me *module.ModuleError
		if errors.As(err, &me) {
			err = me.Err
		}
		return errorf(ErrInvalid, path, version, "%v", err)
	}
	return nil
}

// isPseudo reports whether v is a pseudo-version.
func isPseudo(v string) bool { return module.IsPseudoVersion(v) }

// zipContents is what validating an uploaded module zip yields.
type zipContents struct {
	goMod   []byte
	zipHash string
	modHash string
}

// inspectZip checks the module zip in file name for path@version against
// every rule of golang.org/x/mod/zip, requires a go.mod at the module root
// that declares path, and computes the go.sum hashes. Failures wrap
// ErrInvalid and say which rule was broken. It is the check of an upload.
func inspectZip(name, path, version string) (*zipContents, error) {
	zipHash, gomod, err := inspectModuleZip(name, path, version)
	if err != nil {
		return nil, err
	}
	if gomod == nil {
		return nil, errorf(ErrInvalid, path, version, "the zip has no go.mod at the module root (want %s@%s/go.mod)", path, version)
	}
	f, err := modfile.ParseLax("go.mod", gomod, nil)
	if err != nil {
		return nil, errorf(ErrInvalid, path, version, "go.mod: %v", err)
	}
	if f.Module == nil {
		return nil, errorf(ErrInvalid, path, version, "go.mod has no module line")
	}
	if got := f.Module.Mod.Path; got != path {
		return nil, errorf(ErrInvalid, path, version, "go.mod declares module %q, not %q", got, path)
	}
	modHash, err := hashGoMod(gomod)
	if err != nil {
		return nil, err
	}
	return &zipContents{goMod: gomod, zipHash: zipHash, modHash: modHash}, nil
}

// inspectModuleZip checks the module zip in file name for path@version
// against every rule of golang.org/x/mod/zip and returns its go.sum hash and
// the go.mod at its root, nil if it has none. Unlike inspectZip it accepts a
// zip without go.mod, as public modules from before modules (and
// +incompatible versions) are: their .mod is synthesised by the proxy that
// serves them. It is the check of a fetched or imported zip. Failures wrap
// ErrInvalid.
func inspectModuleZip(name, path, version string) (zipHash string, gomod []byte, err error) {
	m := module.Version{Path: path, Version: version}
	cf, err := modzip.CheckZip(m, name)
	// CheckZip returns cf.Err() as its error too; a list of broken rules
	// comes one per line, which an error message must not.
	if err := cf.Err(); err != nil {
		return "", nil, errorf(ErrInvalid, path, version, "module zip rejected: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if err != nil {
		return "", nil, errorf(ErrInvalid, path, version, "not a valid module zip: %v", err)
	}
	zr, err := zip.OpenReader(name)
	if err != nil {
		return "", nil, errorf(ErrInvalid, path, version, "not a valid module zip: %v", err)
	}
	defer zr.Close()
	if err := checkNoDirEntries(&zr.Reader, m); err != nil {
		return "", nil, err
	}
	if gomod, err = readGoMod(&zr.Reader, m); err != nil {
		return "", nil, err
	}
	if zipHash, err = hashZip(&zr.Reader); err != nil {
		return "", nil, errorf(ErrInvalid, path, version, "hashing zip: %v", err)
	}
	return zipHash, gomod, nil
}

// checkNoDirEntries rejects a zip with directory entries. x/mod/zip allows
// them, but dirhash.HashZip counts them and dirhash.HashDir of the extracted
// tree cannot, so the go command would record a go.sum hash from the zip
// that 'go mod verify' then finds the module cache does not match.
func checkNoDirEntries(zr *zip.Reader, m module.Version) error {
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			return errorf(ErrInvalid, m.Path, m.Version, "module zip rejected: directory entry %q: a module zip lists files only (its hash would not match the extracted module's)", f.Name)
		}
	}
	return nil
}

// readGoMod returns the go.mod at the root of the module zip zr, or nil if
// there is none. CheckZip has already bounded its size by modzip.MaxGoMod.
func readGoMod(zr *zip.Reader, m module.Version) ([]byte, error) {
	want := m.Path + "@" + m.Version + "/go.mod"
	for _, f := range zr.File {
		if f.Name != want {
			continue
		}
		r, err := f.Open()
		if err != nil {
			return nil, errorf(ErrInvalid, m.Path, m.Version, "reading go.mod: %v", err)
		}
		defer r.Close()
		b, err := io.ReadAll(io.LimitReader(r, modzip.MaxGoMod+1))
		if err != nil {
			return nil, errorf(ErrInvalid, m.Path, m.Version, "reading go.mod: %v", err)
		}
		if len(b) > modzip.MaxGoMod {
			return nil, errorf(ErrTooLarge, m.Path, m.Version, "go.mod larger than %d bytes", modzip.MaxGoMod)
		}
		return b, nil
	}
	return nil, nil
}

// checkFetchedGoMod reports whether gomod, the .mod of path@version that
// the upstream src served, is a go.mod the go command can use: one that
// golang.org/x/mod/modfile parses as the go command parses a dependency's
// (ParseLax), with a module line. An empty body, an error page served with
// 200 or a body cut short is not, and once stored it would be the
// version's .mod for good. The path the module line declares is not
// checked: a fork's go.mod declares the path it was forked from, and the
// go command uses it in a replace directive. Failures wrap ErrUpstream.
func checkFetchedGoMod(path, version, src string, gomod []byte) error {
	f, err := modfile.ParseLax("go.mod", gomod, nil)
	if err == nil && f.Module == nil {
		err = errors.New("no module line")
	}
	if err != nil {
		return errorf(ErrUpstream, path, version, "%s served a .mod that is no go.mod: %s", src, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// hashGoMod returns the go.sum hash of a go.mod file, as the go command
// computes it.
func hashGoMod(gomod []byte) (string, error) {
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gomod)), nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing go.mod: %w", err)
	}
	return h, nil
}
