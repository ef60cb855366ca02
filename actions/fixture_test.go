package actions_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gobuffalo/pop/v6"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"agora/actions"
	"agora/auth"
	"agora/config"
	"agora/cork"
	"agora/models"
	"agora/modproxy"
	"agora/storage"
)

// server is Agora's whole HTTP surface, wired as command/serve.go wires it,
// on a fresh database of one dialect and a storage directory of its own,
// listening on a loopback port.
type server struct {
	URL     string
	conn    *pop.Connection
	client  *http.Client
	disk    *storage.Disk
	tempDir string // where uploads wait while they are checked
	// root is the token of "root", an administrator every server starts with.
	root string
	// registry is the server's registry, for a test to do to it what the
	// rest of the system would (a restart empties its memory: InvalidateAll).
	registry *modproxy.Service
}

// serverSetup is what a server starts with.
type serverSetup struct {
	cfg      *config.Config
	registry *modproxy.Config
	deps     *actions.Deps
	// connState, if not nil, is the http.Server's ConnState hook.
	connState func(net.Conn, http.ConnState)
}

// serverOption changes what a server starts with.
type serverOption func(*serverSetup)

// readAuthToken makes downloads need a token with read scope
// (AGORA_READ_AUTH=token).
func readAuthToken(s *serverSetup) { s.cfg.ReadAuth = config.ReadToken }

// logTo makes the server log at every level, request lines included, to
// w, and not to the test's log.
func logTo(w *lockedBuffer) serverOption {
	return func(s *serverSetup) {
		log := slog.New(slog.NewTextHandler(w, nil))
		s.registry.Logger, s.deps.Logger = log, log
	}
}

// lockedBuffer is a bytes.Buffer that a server's goroutines may write to
// while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newServer starts a server on conn, stopped when the test ends.
func newServer(t *testing.T, conn *pop.Connection, opts ...serverOption) *server {
	t.Helper()
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Errors the server logs (internal errors above all) go to the test's
	// log, so that a failing test says why.
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	tempDir := t.TempDir()
	rc := &modproxy.Config{
		Metadata: models.NewRegistry(conn),
		Blobs:    disk,
		TempDir:  tempDir,
		Logger:   log,
	}
	cfg := &config.Config{
		Data:            config.Data{DataDir: t.TempDir(), StorageDir: disk.Root(), DatabaseURL: conn.URL()},
		Addr:            "127.0.0.1:0",
		Env:             "test",
		ReadAuth:        config.ReadPublic,
		ShutdownTimeout: 5 * time.Second,
	}
	setup := &serverSetup{cfg: cfg, registry: rc, deps: &actions.Deps{Config: cfg, DB: conn, Logger: log}}
	for _, o := range opts {
		o(setup)
	}
	setup.deps.Registry = modproxy.New(*rc)
	h, err := actions.Handler(setup.deps)
	if err != nil {
		t.Fatalf("actions.Handler: %v", err)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnContext = cork.ConnContext
	ts.Config.ConnState = setup.connState
	ts.Start()
	// Run after ts.Close (cleanups run last first), and before the
	// database and directories the fetches use are removed.
	t.Cleanup(func() { waitDetached(t, setup.deps.Registry) })
	t.Cleanup(ts.Close)
	s := &server{URL: ts.URL, conn: conn, client: ts.Client(), disk: disk, registry: setup.deps.Registry, tempDir: tempDir}
	// Several servers may share conn: the first one creates root.
	if _, err := models.CreateUser(context.Background(), conn, "test", "root", auth.RoleAdmin, ""); err != nil && !errors.Is(err, modproxy.ErrConflict) {
		t.Fatal(err)
	}
	s.root, _ = s.tokenFor(t, "root", auth.RoleAdmin.MaxScope())
	return s
}

// waitDetached waits for the fetches and lists that outlived the requests
// of a server whose test ended, as serve does at shutdown: such work
// records, and then writes a module's @v/list file, after its answer was
// served, and must not use the test's database or directories once they
// are gone. It fails the test if any is still running after a while, and
// cancels it then, or at once if the test failed already.
func waitDetached(t *testing.T, r *modproxy.Service) {
	t.Helper()
	if !t.Failed() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := r.Wait(ctx)
		cancel()
		if err == nil {
			return
		}
		t.Errorf("fetches outlived the test: %v", err)
	}
	r.Abandon()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Errorf("abandoned fetches still running: %v", err)
	}
}

// testLogWriter writes a server's log lines to the test's log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("server log: %s", bytes.TrimSpace(p))
	return len(p), nil
}

// user creates a user with role and no password.
func (s *server) user(t *testing.T, name string, role auth.Role) {
	t.Helper()
	if _, err := models.CreateUser(context.Background(), s.conn, "test", name, role, ""); err != nil {
		t.Fatal(err)
	}
}

// tokenFor creates a token with scope for the existing user name.
func (s *server) tokenFor(t *testing.T, name string, scope auth.Scope) (string, *models.Token) {
	t.Helper()
	plain, tok, err := models.CreateToken(context.Background(), s.conn, "test", name, "", scope)
	if err != nil {
		t.Fatal(err)
	}
	return plain, tok
}

// token creates a user with role and returns a token with the highest
// scope the role allows.
func (s *server) token(t *testing.T, name string, role auth.Role) string {
	t.Helper()
	s.user(t, name, role)
	plain, _ := s.tokenFor(t, name, role.MaxScope())
	return plain
}

// requestOption changes a request before it is sent.
type requestOption func(*http.Request)

// bearer sends token as "Authorization: Bearer <token>".
func bearer(token string) requestOption {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// basicAuth sends HTTP basic auth, as the go command does from .netrc.
func basicAuth(user, password string) requestOption {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

// withHeader sets a request header.
func withHeader(name, value string) requestOption {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

// response is a response read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// String describes the response for failure messages.
func (r *response) String() string {
	body := bytes.TrimSpace(r.body)
	if len(body) > 300 {
		body = append(body[:300:300], "..."...)
	}
	return fmt.Sprintf("%d %s", r.status, body)
}

// do sends a request to path (which includes any query) and reads the whole
// response.
func (s *server) do(t *testing.T, method, path string, body io.Reader, opts ...requestOption) *response {
	t.Helper()
	r, err := s.send(method, path, body, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is do for any goroutine: it returns its error.
func (s *server) send(method, path string, body io.Reader, opts ...requestOption) (*response, error) {
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the response: %w", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// raw sends request, a whole HTTP/1.1 request written by hand, on a
// connection of its own, closes the sending half, and reads the response.
// It sends what http.Client will not: truncated or malformed bodies.
func (s *server) raw(t *testing.T, request string) *response {
	t.Helper()
	c := s.dialWrite(t, request, 30*time.Second)
	defer c.Close()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// dialWrite writes request on a connection of its own to s, which it returns
// with a deadline timeout away for everything after.
func (s *server) dialWrite(t *testing.T, request string, timeout time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, request); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// stalled sends request, an HTTP/1.1 request's header and the start of
// its body, on a connection of its own, and then sends nothing more, as a
// client that stalls does, without closing its sending half. It returns
// the response, and fails the test if none comes within 10 seconds or if
// the server does not close the connection after it: what the client
// sends next must not be read as a request.
func (s *server) stalled(t *testing.T, request string) *response {
	t.Helper()
	c := s.dialWrite(t, request, 10*time.Second)
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to a request whose body stalled: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the response to a request whose body stalled: %v, want the connection closed (EOF)", err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// get sends a GET.
func (s *server) get(t *testing.T, path string, opts ...requestOption) *response {
	t.Helper()
	return s.do(t, http.MethodGet, path, nil, opts...)
}

// delete sends a DELETE with token.
func (s *server) delete(t *testing.T, token, path string) *response {
	t.Helper()
	return s.do(t, http.MethodDelete, path, nil, bearer(token))
}

// uploadPath is the URL path that publishes path@version.
func uploadPath(path, version string) string {
	return "/api/v1/modules/" + escapePath(path) + "/@v/" + escapeVersion(version) + ".zip"
}

// versionPath is the API path of path@version, for DELETE.
func versionPath(path, version string) string {
	return "/api/v1/modules/" + escapePath(path) + "/@v/" + escapeVersion(version)
}

// escapePath case-encodes path, or leaves it as it is if it is invalid.
func escapePath(path string) string {
	if esc, err := module.EscapePath(path); err == nil {
		return esc
	}
	return path
}

// escapeVersion case-encodes version, or leaves it as it is if it is
// invalid.
func escapeVersion(version string) string {
	if esc, err := module.EscapeVersion(version); err == nil {
		return esc
	}
	return version
}

// upload sends body as path@version's zip.
func (s *server) upload(t *testing.T, token, path, version string, body io.Reader, opts ...requestOption) *response {
	t.Helper()
	return s.do(t, http.MethodPut, uploadPath(path, version), body, append([]requestOption{bearer(token)}, opts...)...)
}

// publish uploads m with token.
func (s *server) publish(t *testing.T, token string, m *testModule, opts ...requestOption) *response {
	t.Helper()
	return s.upload(t, token, m.Path, m.Version, bytes.NewReader(m.Zip), opts...)
}

// mustPublish uploads m with token and fails the test unless it is created.
func (s *server) mustPublish(t *testing.T, token string, m *testModule) versionJSON {
	t.Helper()
	resp := s.publish(t, token, m)
	if resp.status != http.StatusCreated {
		t.Fatalf("publishing %s@%s: %v, want 201", m.Path, m.Version, resp)
	}
	var v versionJSON
	decodeJSON(t, resp, &v)
	return v
}

// publishAtOnce uploads every module of uploads at the same moment, each on
// a request of its own, and returns the responses in the same order.
func (s *server) publishAtOnce(t *testing.T, token string, uploads []*testModule) []*response {
	t.Helper()
	responses := make([]*response, len(uploads))
	errs := make([]error, len(uploads))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, m := range uploads {
		wg.Go(func() {
			<-start
			responses[i], errs[i] = s.send(http.MethodPut, uploadPath(m.Path, m.Version), bytes.NewReader(m.Zip), bearer(token))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	return responses
}

// versionJSON is a version as the API shows it.
type versionJSON struct {
	Path         string     `json:"path"`
	Version      string     `json:"version"`
	Files        []string   `json:"files"`
	Time         time.Time  `json:"time"`
	Size         int64      `json:"size"`
	ZipHash      string     `json:"zip_hash"`
	GoModHash    string     `json:"gomod_hash"`
	GoSum        []string   `json:"gosum"`
	Source       string     `json:"source"`
	PublishedBy  string     `json:"published_by"`
	PublishedAt  time.Time  `json:"published_at"`
	Status       string     `json:"status"`
	DeletedAt    *time.Time `json:"deleted_at"`
	DeletedBy    string     `json:"deleted_by"`
	DeleteReason string     `json:"delete_reason"`
}

// moduleJSON is GET /api/v1/modules/{module}.
type moduleJSON struct {
	Path     string        `json:"path"`
	Versions []versionJSON `json:"versions"`
}

// apiError is the body of every API error.
type apiError struct {
	Error        string `json:"error"`
	Code         string `json:"code"`
	RecordedHash string `json:"recorded_hash"`
	UploadedHash string `json:"uploaded_hash"`
}

// decodeJSON decodes a JSON response into v.
func decodeJSON(t *testing.T, r *response, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json (response %v)", ct, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %v: %v", r, err)
	}
}

// wantStatus fails the test unless r has status.
func wantStatus(t *testing.T, r *response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %v, want %d", r, status)
	}
}

// wantError fails the test unless r is a JSON API error with status and
// code, and returns it.
func wantError(t *testing.T, r *response, status int, code string) apiError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %v, want %d %s", r, status, code)
	}
	var e apiError
	decodeJSON(t, r, &e)
	if e.Code != code || e.Error == "" {
		t.Fatalf("error body %s, want code %q and a message", r.body, code)
	}
	return e
}

// wantUnauthorized fails the test unless r is a 401 that tells the client
// how to authenticate.
func wantUnauthorized(t *testing.T, r *response) {
	t.Helper()
	wantError(t, r, http.StatusUnauthorized, "unauthorized")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
}

// wantProtocolError fails the test unless r is a plain-text protocol error
// with status, whose body the go command prints whole: one line (it
// prints "server response: " and the line), of printable characters (it
// prints nothing of a body with any other), of at most 648 bytes (it
// prints "[Truncated: too long.]" instead of a longer first line).
func wantProtocolError(t *testing.T, r *response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %v, want %d", r, status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if len(bytes.TrimSpace(r.body)) == 0 {
		t.Errorf("empty error body")
	}
	line, ok := bytes.CutSuffix(r.body, []byte("\n"))
	if !ok || bytes.ContainsRune(line, '\n') {
		t.Errorf("error body %q is not one line", r.body)
	}
	if len(line) > 8*81 {
		t.Errorf("error body is %d bytes long; the go command shows a line of at most %d", len(line), 8*81)
	}
	if !utf8.Valid(line) || bytes.ContainsFunc(line, func(r rune) bool { return !unicode.IsGraphic(r) && !unicode.IsSpace(r) }) {
		t.Errorf("error body %q has characters the go command does not print", line)
	}
}

// moduleState is what the server shows of one module version: the basis of
// checking that a rejected request changed nothing.
type moduleState struct {
	Files      []string // "name sha256" of the version's files in storage
	ListStatus int      // GET /{module}/@v/list
	List       string
	APIStatus  int // GET /api/v1/modules/{module}
	API        string
	Listing    string // the module's entry in GET /api/v1/modules, if any
}

// state returns what the server shows of path@version now.
func (s *server) state(t *testing.T, path, version string) moduleState {
	t.Helper()
	var st moduleState
	st.Files = s.storedFiles(t, path, version)
	list := s.get(t, "/"+escapePath(path)+"/@v/list", bearer(s.root))
	st.ListStatus, st.List = list.status, string(list.body)
	api := s.get(t, "/api/v1/modules/"+escapePath(path), bearer(s.root))
	st.APIStatus, st.API = api.status, string(api.body)
	listing := s.get(t, "/api/v1/modules?limit=500&q="+url.QueryEscape(path), bearer(s.root))
	var page struct {
		Modules []json.RawMessage `json:"modules"`
	}
	decodeJSON(t, listing, &page)
	for _, m := range page.Modules {
		var entry struct{ Path string }
		if err := json.Unmarshal(m, &entry); err != nil {
			t.Fatal(err)
		}
		if entry.Path == path {
			st.Listing = string(m)
		}
	}
	return st
}

// storedFiles lists path@version's files in storage with their SHA-256.
func (s *server) storedFiles(t *testing.T, path, version string) []string {
	t.Helper()
	dir := filepath.Join(s.disk.Root(), filepath.FromSlash(escapePath(path)), "@v")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), escapeVersion(version)+".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		files = append(files, e.Name()+" "+hex.EncodeToString(sum[:]))
	}
	return files
}

// wantUnchanged fails the test if path@version now looks different from
// before, or if an upload left a temporary file behind.
func (s *server) wantUnchanged(t *testing.T, before moduleState, path, version string) {
	t.Helper()
	after := s.state(t, path, version)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("%s@%s changed:\nbefore %+v\nafter  %+v", path, version, before, after)
	}
	s.wantNoUploadsLeft(t)
}

// wantNothingStored fails the test if path@version has files in storage,
// or if it looks different from before.
func (s *server) wantNothingStored(t *testing.T, before moduleState, path, version string) {
	t.Helper()
	if files := s.storedFiles(t, path, version); len(files) > 0 {
		t.Errorf("%s@%s has files in storage: %v", path, version, files)
	}
	s.wantUnchanged(t, before, path, version)
}

// wantNoUploadsLeft fails the test if the upload directory holds a file.
func (s *server) wantNoUploadsLeft(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(s.tempDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("upload left behind: %s", e.Name())
	}
}

// testModule is a module version to publish: its zip, made by
// golang.org/x/mod/zip as the go command makes one, and the go.sum hashes
// the go command would record for it, computed here, not by Agora.
type testModule struct {
	Path, Version string
	GoMod         string
	Zip           []byte
	ZipHash       string // h1: of the zip
	ModHash       string // h1: of go.mod
	// Info is the .info a fake upstream serves, when it is not the
	// version at a fixed time (see fakeGOPROXY).
	Info string
}

// newModule builds path@version: a go.mod declaring path and a Go file that
// says note, so that different notes make different zips.
func newModule(t testing.TB, path, version, note string) *testModule {
	t.Helper()
	dir := t.TempDir()
	gomod := "module " + path + "\n\ngo 1.22\n"
	writeFile(t, filepath.Join(dir, "go.mod"), gomod)
	writeFile(t, filepath.Join(dir, "m.go"), "// Package m says "+note+".\npackage m\n")
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: path, Version: version}, dir); err != nil {
		t.Fatalf("zipping %s@%s: %v", path, version, err)
	}
	return &testModule{
		Path: path, Version: version, GoMod: gomod, Zip: buf.Bytes(),
		ZipHash: hashZip(t, buf.Bytes()),
		ModHash: hashGoMod(t, gomod),
	}
}

// hashZip returns the go.sum hash of a module zip.
func hashZip(t testing.TB, b []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(name, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// hashGoMod returns the go.sum hash of a go.mod.
func hashGoMod(t testing.TB, gomod string) string {
	t.Helper()
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(gomod)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeFile writes a file or fails the test.
func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// zipFixture returns the zip that testdata/zips/<name>.txtar describes: one
// entry per file of the archive, named exactly as there and in that order.
// Fixtures hold what golang.org/x/mod/zip would refuse to create.
func zipFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "zips", name+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range parseTxtar(data) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate})
		if err != nil {
			t.Fatalf("%s: entry %q: %v", name, f.name, err)
		}
		if _, err := io.WriteString(w, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// txtarFile is one file of a txtar archive.
type txtarFile struct{ name, data string }

// parseTxtar returns the files of a txtar archive, ignoring its comment: a
// file starts at a line "-- name --" and runs to the next such line.
func parseTxtar(data []byte) []txtarFile {
	var files []txtarFile
	for line := range strings.Lines(string(data)) {
		trimmed := strings.TrimSuffix(line, "\n")
		if name, ok := strings.CutPrefix(trimmed, "-- "); ok && strings.HasSuffix(name, " --") {
			files = append(files, txtarFile{name: strings.TrimSpace(strings.TrimSuffix(name, " --"))})
			continue
		}
		if len(files) > 0 {
			files[len(files)-1].data += line
		}
	}
	return files
}

// storageTree lists every regular file below the storage root, with slash
// separators, sorted.
func (s *server) storageTree(t *testing.T) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(s.disk.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(s.disk.Root(), p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
