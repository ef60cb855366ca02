package actions

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"agora/auth"
	"agora/config"
	"agora/cork"
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
	// immutable is the Cache-Control of a canonical version's files (see
	// cacheControl).
	immutable []string
}

// newProxyHandler returns the handler of the download protocol.
func newProxyHandler(d *Deps) *proxyHandler {
	return &proxyHandler{deps: d, immutable: []string{cacheControl(d.Config.ReadAuth == config.ReadToken, immutable)}}
}

// isProxyPath reports whether path belongs to the download protocol. Module
// paths have a dot in their first element, so no protocol path collides with
// the app's own routes (/api, /assets, /healthz, ...).
func isProxyPath(path string) bool {
	return strings.Contains(path, "/@v/") || strings.HasSuffix(path, "/@latest")
}

// immutable is how long caches may keep a canonical version's files,
// which never change: the Cache-Control directives after the first (see
// cacheControl).
const immutable = "max-age=31536000, immutable"

// cacheControl returns the Cache-Control of an answer that caches may keep
// as directives say: any cache, shared ones too ("public"), unless reading
// needs a token (private is true with AGORA_READ_AUTH=token), when only
// the client's own cache may ("private"), since a shared cache in front of
// Agora would give what a token read to anyone (RFC 9111 section 3.5).
func cacheControl(private bool, directives string) string {
	if private {
		return "private, " + directives
	}
	return "public, " + directives
}

// Header values that every download of their kind shares, so that serving
// one allocates nothing for them. Sharing is safe: net/http copies a
// handler's header map and values before it writes them, and Header.Set
// and Add replace a value slice rather than write into it.
var (
	jsonValue  = []string{"application/json"}
	textValue  = []string{"text/plain; charset=utf-8"}
	zipValue   = []string{"application/zip"}
	bytesValue = []string{"bytes"}
)

// readUnauthorized is the answer to a download without a token that may
// read, when AGORA_READ_AUTH=token.
const readUnauthorized = "unauthorized: this proxy needs a token with read scope (use .netrc or GOAUTH)"

// canRead reports whether r may read what the proxy serves: always with
// AGORA_READ_AUTH=public, else with a token of read scope.
func (d *Deps) canRead(r *http.Request) bool {
	if d.Config.ReadAuth != config.ReadToken {
		return true
	}
	p, err := d.authenticate(r)
	return err == nil && p.Can(auth.ScopeRead)
}

func (h *proxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if !h.deps.canRead(r) {
		w.Header().Set("WWW-Authenticate", challenge)
		h.fail(w, r, http.StatusUnauthorized, readUnauthorized)
		return
	}

	escPath, rest, latest := strings.TrimPrefix(r.URL.Path, "/"), "", false
	if p, ok := strings.CutSuffix(escPath, "/@latest"); ok {
		escPath, latest = p, true
	} else if i := strings.LastIndex(escPath, "/@v/"); i >= 0 {
		escPath, rest = escPath[:i], escPath[i+len("/@v/"):]
	}
	path, err := unescapePath(escPath)
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
	version, err := unescapeVersion(strings.TrimSuffix(file, string(kind)))
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
	if kind == storage.Info && (v.Time.IsZero() || v.Version != version) {
		// Made up for a version stored without an .info (see
		// modproxy.Service.Open), whose stored one may come later, or
		// the answer to a query (a branch, a commit), which names
		// another version once the query moves: neither immutable nor
		// tagged, since a validator of the version's .info would match
		// the answer to the query after it moved.
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "no-cache")
		serveContent(w, r, time.Time{}, f)
		return
	}
	hdr["Cache-Control"] = h.immutable
	// A strong ETag (RFC 9110 section 8.8.1) must change whenever the
	// bytes do; a weak one, whenever what they mean does. The .mod's
	// recorded hash is one of its bytes: a strong ETag. No recorded hash
	// is one of the .info's (an upstream's has an Origin field, which one
	// put back from the record after storage lost it has not), so its
	// strong ETag is a digest of its bytes, taken once when they were
	// read into memory, and it has none in the rare case they are not
	// there (over 16 KiB). The zip's recorded hash is one of its files,
	// not of the archive: one put back from the upstream after storage
	// lost it may hold the same files compressed otherwise. So its ETag
	// is weak: If-None-Match still matches it, but If-Range, which
	// compares strongly, never does, and a client never gets the rest of
	// one archive after the start of another.
	var etagOpen, hash string // the ETag is etagOpen+hash+`"`
	switch kind {
	case storage.Info:
		hdr["Content-Type"] = jsonValue
		if d, ok := f.(digested); ok {
			etagOpen, hash = `"info-`, d.Digest()
		}
	case storage.Mod:
		hdr["Content-Type"] = textValue
		etagOpen, hash = `"`, v.ModHash
	case storage.Zip:
		hdr["Content-Type"] = zipValue
		etagOpen, hash = `W/"`, v.ZipHash
	}
	if conditional(r) {
		// ServeContent handles Range and the If- headers, and copies the
		// file with io.Copy, which reaches the connection's ReadFrom:
		// sendfile.
		if hash != "" {
			hdr.Set("ETag", etagOpen+hash+`"`)
		}
		serveContent(w, r, fi.ModTime(), f)
		return
	}
	// Everything else gets the whole file, with the headers ServeContent
	// would send, without its detours: it seeks to find the size Stat
	// gave, and copies through io.CopyN, so that net/http reads the first
	// 512 bytes of a file to sniff a Content-Type set already.
	setFileHeader(hdr, etagOpen, hash, fi)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if m, ok := f.(inMemory); ok {
		// The .info and .mod files are held in memory.
		w.WriteHeader(http.StatusOK)
		w.Write(m.Bytes())
		return
	}
	cork.Send(w, r, f, fi.Size())
}

// serveContent is http.ServeContent with a write deadline for each piece
// of the body (cork.Guard), as cork.Send has, so that a client that asks
// for a range of a zip and stops reading does not hold its handler and
// the file open forever, and without the file's headers on a failed
// precondition (see failureHeaders).
func serveContent(w http.ResponseWriter, r *http.Request, modtime time.Time, f io.ReadSeeker) {
	gw, done := cork.Guard(w)
	defer done()
	http.ServeContent(failureHeaders{gw}, r, "", modtime, f)
}

// failureHeaders is a ResponseWriter that takes the headers set for the
// file being served off a failure. http.ServeContent answers a failed
// If-Match or If-Unmodified-Since with 412 and those headers, so that the
// file's Cache-Control would let a shared cache keep the failure, and give
// it for the file, for as long as it may keep the file (RFC 9111 section
// 3): a year for an immutable one. Its other failure, 416, it strips
// itself.
type failureHeaders struct {
	http.ResponseWriter
}

func (w failureHeaders) WriteHeader(status int) {
	if status >= http.StatusBadRequest {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Del("Etag")
		h.Del("Last-Modified")
		if status == http.StatusPreconditionFailed {
			h.Del("Content-Type") // answered without a body
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

// ReadFrom implements io.ReaderFrom, so that a file still goes out with
// sendfile.
func (w failureHeaders) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(w.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the connection.
func (w failureHeaders) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// setFileHeader sets the ETag (etagOpen+hash+`"`, none if hash is empty),
// Last-Modified, Content-Length and Accept-Ranges of a download of the
// whole file fi, as ServeContent would. Every download runs it, so the
// three values it makes are cut from one string, and their slices from one
// array: two allocations where Header.Set would take six.
func setFileHeader(hdr http.Header, etagOpen, hash string, fi fs.FileInfo) {
	var buf [160]byte
	b := buf[:0]
	if hash != "" {
		b = append(b, etagOpen...)
		b = append(b, hash...)
		b = append(b, '"')
	}
	etagEnd := len(b)
	b = fi.ModTime().UTC().AppendFormat(b, http.TimeFormat)
	modEnd := len(b)
	b = strconv.AppendInt(b, fi.Size(), 10)
	s := string(b)
	values := []string{s[:etagEnd], s[etagEnd:modEnd], s[modEnd:]}
	if etagEnd > 0 {
		hdr["Etag"] = values[0:1:1] // the canonical form of ETag
	}
	hdr["Last-Modified"] = values[1:2:2]
	hdr["Content-Length"] = values[2:3:3]
	hdr["Accept-Ranges"] = bytesValue
}

// inMemory is a file whose whole content is in memory.
type inMemory interface {
	Bytes() []byte
}

// digested is an .info file that knows a digest of its bytes (see
// modproxy.Service.Open).
type digested interface {
	Digest() string
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
		Time    time.Time `json:",omitzero"` // stored without an .info
	}{v.Version, v.Time})
}

// failErr answers with the status the error table gives err, except that
// an invalid path or version is not found, as one this handler cannot
// parse is: the go command looks up every prefix of a package's path, and
// stops at any answer but 404 and 410.
func (h *proxyHandler) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status, _ := statusOf(err)
	if errors.Is(err, modproxy.ErrInvalid) {
		status = http.StatusNotFound
	}
	h.fail(w, r, status, strings.ToLower(statusText(status))+": "+errorMessage(h.deps.Logger, r, status, err))
}

// fail answers with a plain-text reason, as the go command prints it (see
// oneLine).
func (h *proxyHandler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	io.WriteString(w, oneLine(msg)+"\n")
}

// maxReasonLine is the longest line of an error body that the go command
// prints, in bytes (cmd/go/internal/web: 8 lines of 81 bytes in all).
const maxReasonLine = 8 * 81

// oneLine returns msg as a line that the go command prints whole after
// "server response: ". It prints an error body's lines, but a reason of
// several lines reads badly there (an upstream's own "server response"
// indented below Agora's); it prints nothing of a body with a character
// that is neither printable nor space (such as the escape of a delete
// reason given with colours), and only "[Truncated: too long.]" in place
// of a first line longer than maxReasonLine. So lines are joined, with a
// space after a colon, else "; "; such characters are replaced by U+FFFD;
// and a line too long is cut, ending in "...".
func oneLine(msg string) string {
	if len(msg) <= maxReasonLine && printableLine(msg) {
		return msg // the common case, untouched
	}
	var b strings.Builder
	for line := range strings.Lines(strings.ToValidUTF8(msg, "\uFFFD")) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteByte(' ')
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	line := strings.Map(func(r rune) rune {
		switch {
		case unicode.IsGraphic(r):
			return r
		case unicode.IsSpace(r):
			return ' '
		}
		return utf8.RuneError
	}, b.String())
	if len(line) > maxReasonLine {
		cut := maxReasonLine - len("...")
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "..."
	}
	return line
}

// printableLine reports whether s is valid UTF-8 of printable characters
// and spaces, without a line break.
func printableLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) && r != ' ' {
			return false
		}
	}
	return true
}
