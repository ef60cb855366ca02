// Command mkzip writes a module zip for the serving benchmark
// (bench/serve.sh): a valid zip for path@version, as the go command would
// build it, whose size is chosen on the command line.
//
// It lays out a module tree in a temporary directory — a go.mod declaring
// the path, a small Go file, and -size bytes of pseudo-random data split
// evenly across -files files under data/ — and packs it with
// golang.org/x/mod/zip.CreateFromDir, which enforces every limit of the
// module zip format. The data does not compress, so the zip is about -size
// bytes. The same -seed gives the same bytes.
//
// Usage:
//
//	mkzip -path bench.invalid/large -version v1.0.0 -size 10MiB -files 4 -o large.zip
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func main() {
	var (
		path    = flag.String("path", "", "module path (required)")
		version = flag.String("version", "v1.0.0", "module version")
		size    = flag.String("size", "0", "bytes of random data, with an optional KiB, MiB or GiB suffix")
		files   = flag.Int("files", 1, "number of data files the random data is split across")
		seed    = flag.Uint64("seed", 1, "seed of the pseudo-random data")
		out     = flag.String("o", "", "output zip file (required)")
	)
	flag.Parse()
	if *path == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	n, err := parseSize(*size)
	if err == nil && *files < 1 {
		err = errors.New("-files must be at least 1")
	}
	if err == nil {
		err = writeZip(*out, module.Version{Path: *path, Version: *version}, n, *files, *seed)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}

// parseSize parses a byte count such as 1048576, 10MiB or 200MiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if t, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = t, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("-size %q: want a byte count such as 1048576 or 10MiB", s)
	}
	return n * mult, nil
}

// writeZip writes the zip of mod, holding size bytes of random data in
// files files, to out.
func writeZip(out string, mod module.Version, size int64, files int, seed uint64) (err error) {
	dir, err := os.MkdirTemp("", "mkzip-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeTree(dir, mod.Path, size, files, seed); err != nil {
		return fmt.Errorf("module tree for %s: %w", mod, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := modzip.CreateFromDir(w, mod, dir); err != nil {
		return fmt.Errorf("zip of %s: %w", mod, err)
	}
	return w.Flush()
}

// writeTree lays out the module in dir: go.mod, doc.go, and the random
// data in data/blobNN.bin.
func writeTree(dir, path string, size int64, files int, seed uint64) error {
	name := filepath.Base(path)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+path+"\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	doc := fmt.Sprintf("// Package %s is a module made up for Agora's serving benchmark.\npackage %s\n", name, name)
	if err := os.WriteFile(filepath.Join(dir, "doc.go"), []byte(doc), 0o644); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	var seedBytes [32]byte
	binary.LittleEndian.PutUint64(seedBytes[:], seed)
	src := rand.NewChaCha8(seedBytes)
	for i := range files {
		n := size / int64(files)
		if i < int(size%int64(files)) {
			n++
		}
		if err := writeRandom(filepath.Join(dir, "data", fmt.Sprintf("blob%02d.bin", i)), src, n); err != nil {
			return err
		}
	}
	return nil
}

// writeRandom writes n bytes read from src to a new file named name.
func writeRandom(name string, src io.Reader, n int64) (err error) {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.CopyN(f, src, n)
	return err
}
