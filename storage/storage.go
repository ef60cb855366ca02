// Package storage keeps module sources on disk in the GOPROXY layout:
//
//	<root>/<escaped module path>/@v/<escaped version>.info
//	<root>/<escaped module path>/@v/<escaped version>.mod
//	<root>/<escaped module path>/@v/<escaped version>.zip
//	<root>/<escaped module path>/@v/list
//
// which is also the layout of $GOMODCACHE/cache/download. The storage
// directory is therefore itself a valid GOPROXY=file:///<root> for disaster
// recovery, and a module cache can be imported by walking it.
//
// Every write is atomic: the content goes to a temporary file in the
// destination directory, is synced, renamed over the final name, and the
// directory is synced ([Disk.PutFile] syncs and renames the caller's own
// temporary file instead, when it is on the same file system). A reader sees either the old file or the whole new one,
// never a part. A crash leaves at most temporary files behind, which
// [Disk.RemoveTemp] deletes at start-up once they are old enough.
//
// The package knows nothing of HTTP or SQL; it stores bytes under names.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// Kind names one of the three files stored for a module version. Its value is
// the file name extension used in the GOPROXY protocol.
type Kind string

// The kinds of file stored for a module version.
const (
	Info Kind = ".info"
	Mod  Kind = ".mod"
	Zip  Kind = ".zip"
)

// Kinds lists every kind, in the order a version's files are best written:
// the zip first, so that the .info and .mod, which announce the version to
// GOPROXY=file:// readers, appear last.
var Kinds = []Kind{Zip, Mod, Info}

// valid reports whether k is one of the three kinds.
func (k Kind) valid() bool { return k == Info || k == Mod || k == Zip }

// File is an open stored file. *os.File satisfies it, and the disk store
// returns exactly that, so HTTP servers can send it with sendfile.
type File interface {
	io.ReadSeekCloser
	Stat() (fs.FileInfo, error)
}

// Store is the blob store for module sources. Implementations must be safe
// for concurrent use; the conformance suite in package storagetest states the
// contract in tests.
type Store interface {
	// Open opens the file of the given kind for path@version. It returns an
	// error wrapping fs.ErrNotExist when the file is not stored.
	Open(ctx context.Context, path, version string, kind Kind) (File, error)

	// Put stores content as the file of the given kind for path@version,
	// replacing any previous file atomically.
	Put(ctx context.Context, path, version string, kind Kind, content io.Reader) error

	// PutFile stores the file named src as the file of the given kind for
	// path@version, replacing any previous file atomically, as Put does
	// with its content. It may move src rather than copy it (a large zip
	// then costs no second write), so src must be the caller's own
	// temporary file, which the caller removes afterwards if it is still
	// there. Syncing src beforehand, beside other work, shortens the call.
	PutFile(ctx context.Context, path, version string, kind Kind, src string) error

	// Delete removes every file stored for path@version. Files that are not
	// there are not an error.
	Delete(ctx context.Context, path, version string) error

	// PutList replaces the @v/list file of path with versions, one per line,
	// so that the storage tree answers "list" queries as a file:// proxy.
	// An empty list removes the file.
	PutList(ctx context.Context, path string, versions []string) error

	// ReadList returns what the @v/list file of path names, a line each:
	// nil when there is no such file, empty when it is empty.
	ReadList(ctx context.Context, path string) ([]string, error)

	// Walk calls fn with what is stored of each module that has a file
	// stored, a version's or its @v/list, in no particular order. It
	// stops at fn's first error and returns it. Names that are no stored
	// file's are left out: temporary files, and names that do not unescape
	// to a module path, or to a version with a kind's extension.
	Walk(ctx context.Context, fn func(StoredModule) error) error
}

// StoredModule is what a store holds of one module, as Walk finds it.
type StoredModule struct {
	Path string
	// Files maps each version with a file stored to the kinds stored.
	Files map[string][]Kind
	// List is what the @v/list file names, as ReadList returns it.
	List []string
}

// tempSuffix ends the name of every temporary file, so that RemoveTemp can
// recognise leftovers and never touch anything else.
const tempSuffix = ".agora-tmp"

// MaxNameLen is the longest file name the file systems Agora stores on
// hold (NAME_MAX on Linux, macOS and the BSDs), in bytes.
const MaxNameLen = 255

// tempNameExtra is what the name of a temporary file adds to that of the
// file it becomes: "." before it, then "." and up to 10 digits of
// os.CreateTemp, then tempSuffix.
const tempNameExtra = 1 + 1 + 10 + len(tempSuffix)

// CheckNames reports whether the files of path@version (of path alone,
// if version is empty) have names short enough for the disk: every
// element of the escaped path, and the escaped version with the longest
// kind's extension while it is written, at most MaxNameLen bytes. A module
// path element may be up to 255 characters of the path itself, and a
// version has no limit, so valid modules can fail it.
func CheckNames(path, version string) error {
	escaped, err := module.EscapePath(path)
	if err != nil {
		return err
	}
	for elem := range strings.SplitSeq(escaped, "/") {
		if len(elem) > MaxNameLen {
			return fmt.Errorf("path element %.20q... is %d bytes long as stored; file names hold at most %d", elem, len(elem), MaxNameLen)
		}
	}
	if version == "" {
		return nil
	}
	ev, err := module.EscapeVersion(version)
	if err != nil {
		return err
	}
	if max := MaxNameLen - len(Info) - tempNameExtra; len(ev) > max {
		return fmt.Errorf("version is %d bytes long as stored; file names hold versions of at most %d", len(ev), max)
	}
	return nil
}

// ProbeSize is how much Probe writes: enough to need a block of the file
// system, which a full one does not have.
const ProbeSize = 4 << 10

// Probe writes ProbeSize bytes to f, a new file, syncs and closes it, and
// removes it. It fails where the file system under f takes no data, as on
// a full disk, which creating an empty file does not show.
func Probe(f *os.File) error {
	defer os.Remove(f.Name())
	_, err := f.Write(make([]byte, ProbeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Disk is a Store on a local file system.
type Disk struct {
	root string
}

var _ Store = (*Disk)(nil)

// NewDisk returns a Disk rooted at dir, creating the directory if needed.
func NewDisk(dir string) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &Disk{root: abs}, nil
}

// Root returns the absolute directory the store lives in.
func (d *Disk) Root() string { return d.root }

// dir returns the @v directory of path, validating and escaping the path.
func (d *Disk) dir(path string) (string, error) {
	escaped, err := module.EscapePath(path)
	if err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(escaped), "@v"), nil
}

// name returns the file name of path@version's file of kind.
func (d *Disk) name(path, version string, kind Kind) (string, error) {
	if !kind.valid() {
		return "", fmt.Errorf("storage: unknown kind %q", kind)
	}
	dir, err := d.dir(path)
	if err != nil {
		return "", err
	}
	ev, err := module.EscapeVersion(version)
	if err != nil {
		return "", &module.ModuleError{Path: path, Version: version, Err: err}
	}
	return filepath.Join(dir, ev+string(kind)), nil
}

// Open implements Store.
func (d *Disk) Open(ctx context.Context, path, version string, kind Kind) (File, error) {
	name, err := d.name(path, version, kind)
	if err != nil {
		return nil, err
	}
	f, err := openFile(name)
	if err == nil {
		// A directory opens too (and one where the file should be would
		// be served with its size, and without content).
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			err = &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s@%s%s: %w", path, version, kind, err)
	}
	return f, nil
}

// errNotRegular is the error of opening a stored file's name that is
// something else: a directory, say.
var errNotRegular = errors.New("not a regular file")

// Put implements Store.
func (d *Disk) Put(ctx context.Context, path, version string, kind Kind, content io.Reader) error {
	return d.put(ctx, path, version, kind, func(name string) error {
		return writeAtomic(d.root, name, content)
	})
}

// PutFile implements Store. It renames src into place when src is on the
// store's file system, and copies it otherwise.
func (d *Disk) PutFile(ctx context.Context, path, version string, kind Kind, src string) error {
	return d.put(ctx, path, version, kind, func(name string) error {
		return moveAtomic(d.root, name, src)
	})
}

// put makes the file of kind of path@version with write, given its name.
func (d *Disk) put(ctx context.Context, path, version string, kind Kind, write func(name string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := d.name(path, version, kind)
	if err != nil {
		return err
	}
	if err := write(name); err != nil {
		return fmt.Errorf("storage: put %s@%s%s: %w", path, version, kind, err)
	}
	return nil
}

// Delete implements Store. It removes the files in the reverse of the
// order they are best written (see Kinds): the .info and .mod, which
// announce the version to GOPROXY=file:// readers, first, so that a delete
// stopped part way (a crash, an I/O error) never leaves a version visible
// without its zip.
func (d *Disk) Delete(ctx context.Context, path, version string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var dir string
	for _, kind := range []Kind{Info, Mod, Zip} {
		name, err := d.name(path, version, kind)
		if err != nil {
			return err
		}
		dir = filepath.Dir(name)
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: delete %s@%s: %w", path, version, err)
		}
	}
	if err := Sync(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: delete %s@%s: %w", path, version, err)
	}
	return nil
}

// PutList implements Store. A list file that already names versions is
// left as it is.
func (d *Disk) PutList(ctx context.Context, path string, versions []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := d.dir(path)
	if err != nil {
		return err
	}
	name := filepath.Join(dir, "list")
	if len(versions) == 0 {
		err := os.Remove(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			err = Sync(dir) // as durable as a rewrite of the list
		}
		if err != nil {
			return fmt.Errorf("storage: list %s: %w", path, err)
		}
		return nil
	}
	body := strings.Join(versions, "\n") + "\n"
	if sameContent(name, body) {
		return nil // as most lists an import rewrites: no write, no sync
	}
	if err := writeAtomic(d.root, name, strings.NewReader(body)); err != nil {
		return fmt.Errorf("storage: list %s: %w", path, err)
	}
	return nil
}

// ReadList implements Store.
func (d *Disk) ReadList(ctx context.Context, path string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := d.dir(path)
	if err != nil {
		return nil, err
	}
	list, err := readList(filepath.Join(dir, "list"))
	if err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", path, err)
	}
	return list, nil
}

// MaxListFile bounds what ReadList and Walk read of a @v/list file, in bytes: the
// lines beyond it are left out.
const MaxListFile = 16 << 20

// Walk implements Store. It reads the tree once, and each @v/list file.
func (d *Disk) Walk(ctx context.Context, fn func(StoredModule) error) error {
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil && e != nil && e.IsDir() && errors.Is(err, fs.ErrPermission) {
			return fs.SkipDir // not Agora's: see RemoveTemp
		}
		if err != nil {
			return err
		}
		if !e.IsDir() || e.Name() != "@v" {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// A module path holds no "@", so this is a module's @v directory,
		// and nothing below it is another's.
		rel, err := filepath.Rel(d.root, filepath.Dir(p))
		if err != nil {
			return err
		}
		path, err := module.UnescapePath(filepath.ToSlash(rel))
		if err != nil {
			return fs.SkipDir // no module's: the go command never asks for it
		}
		m, err := readModuleDir(path, p)
		if err != nil {
			return err
		}
		if len(m.Files) > 0 || m.List != nil {
			if err := fn(m); err != nil {
				return err
			}
		}
		return fs.SkipDir
	})
	if err != nil {
		return fmt.Errorf("storage: walking %s: %w", d.root, err)
	}
	return nil
}

// readModuleDir returns what the @v directory dir holds of path.
func readModuleDir(path, dir string) (StoredModule, error) {
	m := StoredModule{Path: path, Files: make(map[string][]Kind)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return m, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, tempSuffix) {
			continue
		}
		if name == "list" {
			if m.List, err = readList(filepath.Join(dir, name)); err != nil {
				return m, err
			}
			continue
		}
		kind := Kind(filepath.Ext(name))
		if !kind.valid() {
			continue
		}
		version, err := module.UnescapeVersion(strings.TrimSuffix(name, string(kind)))
		if err != nil {
			continue
		}
		m.Files[version] = append(m.Files[version], kind)
	}
	return m, nil
}

// readList returns the lines of the @v/list file name, an empty slice for
// an empty file and nil for none.
func readList(name string) ([]string, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // removed since the directory was read
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxListFile))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines, nil
}

// RemoveTemp deletes the temporary files that an interrupted write left in
// the tree, unmodified for longer than olderThan, and reports how many it
// removed. Call it at start-up, before the store is used. Several nodes may
// share the tree: the age spares the files another one is writing, whose
// modification time moves as it writes and which it renames within moments
// of its last write.
func (d *Disk) RemoveTemp(olderThan time.Duration) (int, error) {
	removed := 0
	cutoff := time.Now().Add(-olderThan)
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil && e != nil && e.IsDir() && errors.Is(err, fs.ErrPermission) {
			// Not Agora's, which writes nothing it cannot read back:
			// lost+found, say, at the root of a file system of its own.
			return fs.SkipDir
		}
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), tempSuffix) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed by its writer meanwhile
		}
		if err != nil {
			return err
		}
		if fi.ModTime().After(cutoff) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("storage: removing temporary files: %w", err)
	}
	return removed, nil
}

// writeAtomic writes content to name through a temporary file in the same
// directory: write, fsync, rename, fsync the directory. Directories that do
// not exist yet are created below root, and each is synced into its parent.
func writeAtomic(root, name string, content io.Reader) (err error) {
	dir := filepath.Dir(name)
	if err := mkdirAllSync(root, dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*"+tempSuffix)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, content); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	return Sync(dir)
}

// sameContent reports whether the file name holds exactly body: its size
// is compared first, and its bytes only if the size is body's.
func sameContent(name, body string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(body)) {
		return false
	}
	b := make([]byte, len(body)+1) // a byte more: the file may have grown
	n, err := io.ReadFull(f, b)
	return errors.Is(err, io.ErrUnexpectedEOF) && string(b[:n]) == body
}

// moveAtomic makes src the file name, as writeAtomic would with its
// content: src is synced and made readable, renamed over name, and the
// directory synced. When the rename fails, as it does across file systems,
// src is copied through writeAtomic instead and left in place.
func moveAtomic(root, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	dir := filepath.Dir(name)
	if err := mkdirAllSync(root, dir); err != nil {
		return err
	}
	if err := os.Rename(src, name); err != nil {
		return writeAtomic(root, name, f)
	}
	return Sync(dir)
}

// mkdirAllSync creates dir and any missing parents below root, syncing the
// parent of each directory it creates so the new entries survive a crash.
func mkdirAllSync(root, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && strings.HasPrefix(parent, root) {
		if err := mkdirAllSync(root, parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return Sync(parent)
}

// Sync flushes the file or directory name to disk: for a directory, it
// makes the renames and creations in it durable.
func Sync(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
