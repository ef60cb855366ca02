// Command gostatic serves a GOPROXY file tree the way Agora serves its
// storage, with none of Agora's own work: it is the reference that tells,
// in bench/replay.sh's warm replay, how much of the distance between Agora
// and nginx is Go's (net/http and the runtime) and how much is Agora's.
//
// Like Agora it holds .info and .mod files in memory (read at start-up, up
// to 16 KiB each), sends everything else from the open file with sendfile
// through cork.Send, and answers with the same headers:
// Content-Type, Cache-Control, an ETag as long as Agora's h1: hashes (made
// from the path, since nothing here hashes the files), Last-Modified,
// Content-Length and Accept-Ranges. It has no registry, no request log, no
// metrics and no conditional or range requests.
//
// Usage:
//
//	gostatic -root DIR -listen 127.0.0.1:9000
//
// It runs until it gets SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"agora/cork"
)

// maxSmallFile is the size up to which Agora holds a .info or .mod in memory.
const maxSmallFile = 16 << 10

func main() {
	var (
		root   = flag.String("root", "", "GOPROXY file tree to serve (required)")
		listen = flag.String("listen", "127.0.0.1:0", "address to listen on")
	)
	flag.Parse()
	if *root == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	s, err := newServer(*root)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           s,
		ConnContext:       cork.ConnContext,
		ReadHeaderTimeout: 10 * time.Second, // as Agora's server
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// server serves the tree under root.
type server struct {
	root  string
	small map[string]*smallFile // by URL path
}

// smallFile is a .info or .mod held in memory, with its header values.
type smallFile struct {
	data                            []byte
	contentType, etag, lastModified []string
	contentLength                   []string
}

var (
	cacheControl = []string{"public, max-age=31536000, immutable"}
	acceptRanges = []string{"bytes"}
	jsonType     = []string{"application/json"}
	textType     = []string{"text/plain; charset=utf-8"}
	zipType      = []string{"application/zip"}
)

// newServer reads the tree's small .info and .mod files into memory.
func newServer(root string) (*server, error) {
	s := &server{root: root, small: map[string]*smallFile{}}
	err := filepath.WalkDir(root, func(name string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		ct := contentType(name)
		if ct == nil || ct[0] == zipType[0] {
			return nil
		}
		fi, err := e.Info()
		if err != nil || fi.Size() > maxSmallFile {
			return err
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		p := "/" + filepath.ToSlash(strings.TrimPrefix(name, filepath.Clean(root)+string(filepath.Separator)))
		s.small[p] = &smallFile{
			data:          data,
			contentType:   ct,
			etag:          []string{etag(p)},
			lastModified:  []string{fi.ModTime().UTC().Format(http.TimeFormat)},
			contentLength: []string{strconv.Itoa(len(data))},
		}
		return nil
	})
	return s, err
}

// contentType returns the Content-Type of a file by its name, or nil for a
// file that is not a module version's.
func contentType(name string) []string {
	switch {
	case strings.HasSuffix(name, ".info"):
		return jsonType
	case strings.HasSuffix(name, ".mod"):
		return textType
	case strings.HasSuffix(name, ".zip"):
		return zipType
	}
	return nil
}

// etag returns a quoted h1:-sized tag for the path p, weak for a zip, as
// Agora's.
func etag(p string) string {
	sum := sha256.Sum256([]byte(p))
	tag := `"h1:` + base64.StdEncoding.EncodeToString(sum[:]) + `"`
	if strings.HasSuffix(p, ".zip") {
		return "W/" + tag
	}
	return tag
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	if f := s.small[r.URL.Path]; f != nil {
		hdr["Cache-Control"] = cacheControl
		hdr["Content-Type"] = f.contentType
		hdr["Etag"] = f.etag
		hdr["Last-Modified"] = f.lastModified
		hdr["Content-Length"] = f.contentLength
		hdr["Accept-Ranges"] = acceptRanges
		w.WriteHeader(http.StatusOK)
		w.Write(f.data)
		return
	}
	ct := contentType(r.URL.Path)
	if ct == nil || strings.Contains(r.URL.Path, "..") {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.root, filepath.FromSlash(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	hdr["Cache-Control"] = cacheControl
	hdr["Content-Type"] = ct
	hdr["Etag"] = []string{etag(r.URL.Path)}
	hdr["Last-Modified"] = []string{fi.ModTime().UTC().Format(http.TimeFormat)}
	hdr["Content-Length"] = []string{strconv.FormatInt(fi.Size(), 10)}
	hdr["Accept-Ranges"] = acceptRanges
	cork.Send(w, r, f, fi.Size()) // as Agora
}
