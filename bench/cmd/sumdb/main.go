// Command sumdb serves a checksum database of the module versions in a
// GOPROXY file tree, for bench/replay.sh's SUMDB=on: the go.sum hashes of
// every .mod and .zip in the tree, in a Merkle tree signed with a key made
// at start-up, behind the endpoints of a real database (golang.org/x/mod/sumdb's
// server and test server). Agora then verifies every version it fetches,
// as it does against sum.golang.org in production, reaching the database
// through the upstream's /sumdb/<name>/ (bench/replay.sh's nginx passes
// that prefix on to this command).
//
// Every hash is computed and every version entered into the tree before it
// serves, so that the database costs no CPU time during a measured run but
// what serving takes, and its tree does not change meanwhile: the lookups
// and tiles it serves are the same from the first request on.
//
// Usage:
//
//	sumdb -tree DIR -listen 127.0.0.1:9001 -name sum.bench.invalid -key FILE
//
// It writes the database's verifier key (name+hash+key, what GOSUMDB and
// AGORA_SUMDB take) to FILE once it serves, and runs until it gets SIGINT
// or SIGTERM.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	tree := flag.String("tree", "", "the GOPROXY file tree whose versions the database records")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	name := flag.String("name", "sum.bench.invalid", "the database's name")
	keyFile := flag.String("key", "", "file to write the verifier key to once serving")
	flag.Parse()
	if *tree == "" || *keyFile == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*tree, *listen, *name, *keyFile); err != nil {
		log.Fatalf("sumdb: %v", err)
	}
}

func run(tree, listen, name, keyFile string) error {
	sums, err := hashTree(tree)
	if err != nil {
		return err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return err
	}
	db, err := newDatabase(skey, sums)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(name, db)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	log.Printf("sumdb: %s serves %d module versions on %s", name, len(sums), ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// handler serves the database at /sumdb/<name>/, with the supported
// endpoint a proxy answers for a database it passes on.
func handler(name string, db http.Handler) http.Handler {
	prefix := "/sumdb/" + name
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/supported", func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle(prefix+"/", http.StripPrefix(prefix, db))
	return mux
}

// newDatabase returns the database's handler, every version of sums
// entered into its tree already, in sorted order.
func newDatabase(skey string, sums map[string][]byte) (http.Handler, error) {
	ts := sumdb.NewTestServer(skey, func(path, version string) ([]byte, error) {
		if lines, ok := sums[path+"@"+version]; ok {
			return lines, nil
		}
		return nil, fmt.Errorf("%s@%s: %w", path, version, fs.ErrNotExist)
	})
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path, version, _ := strings.Cut(k, "@")
		if _, err := ts.Lookup(context.Background(), module.Version{Path: path, Version: version}); err != nil {
			return nil, err
		}
	}
	return sumdb.NewServer(ts), nil
}

// hashTree returns the go.sum lines of every module version in the GOPROXY
// tree at root, by "path@version": the go.mod line of each .mod, and the
// zip's line of each .zip, hashed on all cores.
func hashTree(root string) (map[string][]byte, error) {
	type file struct{ path, version, name string }
	var files []file
	err := filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, name)
		escPath, base, ok := strings.Cut(filepath.ToSlash(rel), "/@v/")
		ext := filepath.Ext(base)
		if !ok || ext != ".mod" && ext != ".zip" {
			return nil
		}
		path, err := module.UnescapePath(escPath)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		version, err := module.UnescapeVersion(strings.TrimSuffix(base, ext))
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		files = append(files, file{path, version, name})
		return nil
	})
	if err != nil {
		return nil, err
	}

	lines := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				lines[i], errs[i] = sumLine(files[i].path, files[i].version, files[i].name)
			}
		})
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A record of sum.golang.org has the zip's line first, then the
	// go.mod's; Agora checks that a record starts with the zip's line. A
	// version whose zip is not in the tree (the go command read only its
	// go.mod) gets a zip hash that no zip has, which nothing asks for.
	zips := make(map[string]string)
	mods := make(map[string]string)
	for i, f := range files {
		k := f.path + "@" + f.version
		if strings.HasSuffix(f.name, ".zip") {
			zips[k] = lines[i]
		} else {
			mods[k] = lines[i]
		}
	}
	sums := make(map[string][]byte)
	for k, mod := range mods {
		zip, ok := zips[k]
		if !ok {
			path, version, _ := strings.Cut(k, "@")
			zip = fmt.Sprintf("%s %s %s\n", path, version, noZipHash)
		}
		sums[k] = []byte(zip + mod)
	}
	for k := range zips {
		if _, ok := mods[k]; !ok {
			return nil, fmt.Errorf("%s: a zip without its .mod in %s", k, root)
		}
	}
	return sums, nil
}

// noZipHash stands for the zip hash of a version whose zip is not in the
// tree: the hash of no file at all, which no module zip has.
const noZipHash = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

// sumLine returns the go.sum line of path@version's file name, a .mod or a
// .zip.
func sumLine(path, version, name string) (string, error) {
	if strings.HasSuffix(name, ".zip") {
		h, err := dirhash.HashZip(name, dirhash.Hash1)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s %s\n", path, version, h), nil
	}
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) { return os.Open(name) })
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s/go.mod %s\n", path, version, h), nil
}
