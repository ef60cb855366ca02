package actions

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"agora/auth"
	"agora/config"
	"agora/modproxy"
	"agora/storage"
)

// proxyHandler serves the GOPROXY download protocol:
//
//	GET /{module}/@v/list
//	GET /{module}/@v/{version}.info
//	GET /{module}/@v/{version}.mod
//	GET /{module}/@v/{version}.zip
//	GET /{module}/@latest
//
// It is a plain http.Handler in front of the Buffalo app, not a Buffalo
// route: these are the hot paths, they need no session, and the zip must be
// written to the connection with sendfile, which buffalo.Response, hiding
// io.ReaderFrom, would prevent.
type proxyHandler struct {
	deps *Deps
}

// isProxyPath reports whether path belongs to the download protocol. Module
// paths have a dot in their first element, so no protocol path collides with
// the app's own routes (/api, /assets, /healthz, ...).
func isProxyPath(path string) bool {
	return strings.Contains(path, "/@v/") || strings.HasSuffix(path, "/@latest")
}

// immutable is the Cache-Control of a canonical version's files.
const immutable = "public, max-age=31536000, immutable"

func (h *proxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if h.deps.Config.ReadAuth == config.ReadToken {
		p, err := h.deps.authenticate(r)
		if err == nil && !p.Can(auth.ScopeRead) {
			err = modproxy.ErrUnauthorized
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", challenge)
			h.fail(w, r, http.StatusUnauthorized, "unauthorized: this proxy needs a token with read scope (use .netrc or GOAUTH)")
			return
		}
	}

	escPath, rest, latest := strings.TrimPrefix(r.URL.Path, "/"), "", false
	if p, ok := strings.CutSuffix(escPath, "/@latest"); ok {
		escPath, latest = p, true
	} else if i := strings.LastIndex(escPath, "/@v/"); i >= 0 {
		escPath, rest = escPath[:i], escPath[i+len("/@v/"):]
	}
	path, err := module.UnescapePath(escPath)
	if err != nil {
		h.fail(w, r, http.StatusNotFound, "not found: invalid module path: "+err.Error())
		return
	}
	switch {
	case latest:
		h.serveLatest(w, r, path)
	case rest == "list":
		h.serveList(w, r, path)
	default:
		h.serveFile(w, r, path, rest)
	}
}

// serveFile serves {version}.info, .mod or .zip from storage.
func (h *proxyHandler) serveFile(w http.ResponseWriter, r *http.Request, path, file string) {
	var kind storage.Kind
	for _, k := range storage.Kinds {
		if strings.HasSuffix(file, string(k)) {
			kind = k
		}
	}
	if kind == "" {
		h.fail(w, r, http.StatusNotFound, "not found: unknown file "+file)
		return
	}
	version, err := module.UnescapeVersion(strings.TrimSuffix(file, string(kind)))
	if err != nil {
		h.fail(w, r, http.StatusNotFound, "not found: invalid version: "+err.Error())
		return
	}
	f, v, err := h.deps.Registry.Open(r.Context(), path, version, kind)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", immutable)
	switch kind {
	case storage.Info:
		hdr.Set("Content-Type", "application/json")
		hdr.Set("ETag", `"info-`+v.ZipHash+`"`)
	case storage.Mod:
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("ETag", `"`+v.ModHash+`"`)
	case storage.Zip:
		hdr.Set("Content-Type", "application/zip")
		hdr.Set("ETag", `"`+v.ZipHash+`"`)
	}
	if kind == storage.Zip {
		defer cork(r)()
	}
	if conditional(r) {
		// ServeContent handles Range and the If- headers, and copies the
		// file with io.Copy, which reaches the connection's ReadFrom:
		// sendfile.
		http.ServeContent(w, r, "", fi.ModTime(), f)
		return
	}
	// Everything else gets the whole file, with the headers ServeContent
	// would send, without its detours: it seeks to find the size Stat
	// gave, and copies through io.CopyN, so that net/http reads the first
	// 512 bytes of a file to sniff a Content-Type set already.
	hdr.Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if m, ok := f.(inMemory); ok {
		// The .info and .mod files are held in memory.
		w.Write(m.Bytes())
		return
	}
	// With the header flushed (still corked), net/http hands the file to
	// the connection's ReadFrom whole: sendfile from its first byte, and
	// of its known size, so that no last call is made to find its end.
	if err := http.NewResponseController(w).Flush(); err != nil {
		return // the client went away
	}
	io.Copy(w, io.LimitReader(f, fi.Size()))
}

// inMemory is a file whose whole content is in memory.
type inMemory interface {
	Bytes() []byte
}

// conditionalHeaders are the request headers that make ServeContent answer
// other than 200 with the whole file.
var conditionalHeaders = []string{"Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"}

// conditional reports whether r has a header of conditionalHeaders.
func conditional(r *http.Request) bool {
	for _, k := range conditionalHeaders {
		if _, ok := r.Header[k]; ok { // the server canonicalized the keys
			return true
		}
	}
	return false
}

// serveList serves @v/list from the database.
func (h *proxyHandler) serveList(w http.ResponseWriter, r *http.Request, path string) {
	list, err := h.deps.Registry.List(r.Context(), path)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	var b strings.Builder
	for _, v := range list {
		b.WriteString(v)
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}

// serveLatest serves @latest: the .info of the latest version.
func (h *proxyHandler) serveLatest(w http.ResponseWriter, r *http.Request, path string) {
	v, err := h.deps.Registry.Latest(r.Context(), path)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	json.NewEncoder(w).Encode(struct {
		Version string
		Time    time.Time
	}{v.Version, v.Time})
}

// failErr answers with the status the error table gives err.
func (h *proxyHandler) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status, _ := statusOf(err)
	h.fail(w, r, status, strings.ToLower(http.StatusText(status))+": "+errorMessage(h.deps.Logger, r, status, err))
}

// fail answers with a plain-text reason, as the go command prints it.
func (h *proxyHandler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}
