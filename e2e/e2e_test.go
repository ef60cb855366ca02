package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/internal/testutil"
	"agora/models/modelstest"
)

// Limits of the test. They are generous: the test must pass on a small,
// busy machine, and it asserts nothing about speed.
const (
	// commandTimeout bounds every subprocess but the server.
	commandTimeout = 2 * time.Minute
	// buildTimeout bounds the build of the agora binary, which on a busy
	// machine with a cold build cache takes more than commandTimeout.
	buildTimeout = 10 * time.Minute
	// startTimeout bounds how long the server may take to answer /healthz.
	startTimeout = time.Minute
	// stopTimeout bounds how long the server may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// pollInterval is how often /healthz is tried while the server starts.
	pollInterval = 100 * time.Millisecond
)

// fixture is a module version the test publishes: one package whose Hello
// function returns Greeting.
type fixture struct {
	Path, Version string
	Package       string
	Greeting      string
}

// fixtures are published in this order. They include a major-version
// suffix that shares a prefix with another module, and an upper-case path,
// which the download protocol and the storage layout must case-encode.
var fixtures = []fixture{
	{Path: "example.com/hello", Version: "v1.0.0", Package: "hello", Greeting: "hello v1.0.0"},
	{Path: "example.com/hello", Version: "v1.1.0", Package: "hello", Greeting: "hello v1.1.0"},
	{Path: "example.com/hello/v2", Version: "v2.0.0", Package: "hello", Greeting: "hello v2.0.0"},
	{Path: "example.com/Upper", Version: "v0.1.0", Package: "upper", Greeting: "Upper v0.1.0"},
}

// consumerMain is the program built against the published modules.
const consumerMain = `package main

import (
	"fmt"

	upper "example.com/Upper"
	"example.com/hello"
	hellov2 "example.com/hello/v2"
)

func main() {
	fmt.Println(hello.Hello())
	fmt.Println(hellov2.Hello())
	fmt.Println(upper.Hello())
}
`

// String returns the fixture as path@version.
func (f fixture) String() string { return f.Path + "@" + f.Version }

// zip returns the fixture's module zip, made by x/mod/zip from a directory
// holding its go.mod and its one source file.
func (f fixture) zip(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module " + f.Path + "\n\ngo 1.21\n",
		f.Package + ".go": fmt.Sprintf("// Package %s greets.\npackage %[1]s\n\n"+
			"// Hello returns a greeting naming this module version.\nfunc Hello() string { return %q }\n",
			f.Package, f.Greeting),
	}
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: f.Path, Version: f.Version}, dir); err != nil {
		t.Fatalf("zipping %v: %v", f, err)
	}
	return buf.Bytes()
}

// TestMain removes the agora binary that the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// build is the agora binary, built once per test process by agoraBinary,
// and the go command's build cache, shared by every go command the tests
// run so that compiling the standard library is done at most once.
var build struct {
	once    sync.Once
	dir     string // removed by TestMain
	bin     string
	gocache string
	err     error
}

// agoraBinary returns the path of the agora binary, building it on first
// use. Every test here needs it, so it is where they are skipped in -short
// mode.
func agoraBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds agora and runs it; skipped in -short mode")
	}
	build.once.Do(func() {
		build.err = func() error {
			root, _, err := runCommand("", os.Environ(), "go", "list", "-m", "-f", "{{.Dir}}")
			if err != nil {
				return fmt.Errorf("finding the module root: %w", err)
			}
			gocache, _, err := runCommand("", os.Environ(), "go", "env", "GOCACHE")
			if err != nil {
				return fmt.Errorf("finding GOCACHE: %w", err)
			}
			build.gocache = strings.TrimSpace(gocache)
			if build.dir, err = os.MkdirTemp("", "agora-e2e-"); err != nil {
				return err
			}
			bin := filepath.Join(build.dir, "agora")
			if runtime.GOOS == "windows" {
				bin += ".exe"
			}
			// Built as deployed (make build): static, without cgo.
			env := append(os.Environ(), "CGO_ENABLED=0")
			if _, out, err := runCommandFor(buildTimeout, strings.TrimSpace(root), env, "go", "build", "-o", bin, "agora"); err != nil {
				return fmt.Errorf("go build agora: %w\n%s", err, out)
			}
			build.bin = bin
			return nil
		}()
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// TestPublishFetchDeleteRecover runs the life of a private module against a
// real agora process on every database: publish over the API, fetch and
// build with the go command, delete, and recover from the storage directory.
func TestPublishFetchDeleteRecover(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			srv := startAgora(t, agoraBinary(t), dialect)
			token := srv.createPublisher(t, "alice")

			// Publish every fixture, keeping the go.sum lines Agora reports.
			gosum := make(map[string][]string) // by path@version
			for _, f := range fixtures {
				status, v, body := srv.publish(t, token, f)
				if status != http.StatusCreated {
					t.Fatalf("publishing %v: status %d, want %d: %s", f, status, http.StatusCreated, body)
				}
				checkPublished(t, f, v)
				gosum[f.String()] = v.GoSum
			}
			if status, _, body := srv.publish(t, token, fixtures[0]); status != http.StatusOK {
				t.Errorf("publishing %v again, identically: status %d, want %d: %s", fixtures[0], status, http.StatusOK, body)
			}

			// Build a program that imports the modules, through the proxy.
			consumer := newGoTool(t, srv.URL)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "main.go"), consumerMain)
			consumer.run(t, dir, "mod", "init", "example.com/consumer")
			consumer.run(t, dir, "get", "example.com/hello@v1.0.0", "example.com/hello/v2@v2.0.0", "example.com/Upper@v0.1.0")
			checkProgram(t, consumer, dir, "hello v1.0.0\nhello v2.0.0\nUpper v0.1.0\n")
			checkOutput(t, consumer, dir, "example.com/hello v1.0.0 v1.1.0\n", "list", "-m", "-versions", "example.com/hello")
			checkOutput(t, consumer, dir, "all modules verified\n", "mod", "verify")
			checkGoSum(t, dir, gosum, "example.com/hello@v1.0.0", "example.com/hello/v2@v2.0.0", "example.com/Upper@v0.1.0")

			// @latest is the highest release.
			consumer.run(t, dir, "get", "example.com/hello@latest")
			checkOutput(t, consumer, dir, "example.com/hello v1.1.0\n", "list", "-m", "example.com/hello")
			checkProgram(t, consumer, dir, "hello v1.1.0\nhello v2.0.0\nUpper v0.1.0\n")
			checkGoSum(t, dir, gosum, "example.com/hello@v1.1.0")

			// A deleted version is gone from the protocol and from the list
			// the go command sees (through a fresh module cache, outside any
			// module, so that nothing cached or required can answer).
			deleteURL := "/api/v1/modules/example.com/hello/@v/v1.1.0?reason=" + url.QueryEscape("end-to-end test")
			if status, body := srv.do(t, http.MethodDelete, deleteURL, token, nil, nil); status != http.StatusNoContent {
				t.Fatalf("DELETE %s: status %d, want %d: %s", deleteURL, status, http.StatusNoContent, body)
			}
			for _, ext := range []string{".info", ".mod", ".zip"} {
				file := "/example.com/hello/@v/v1.1.0" + ext
				if status, body := srv.do(t, http.MethodGet, file, "", nil, nil); status != http.StatusGone {
					t.Errorf("GET %s after deleting the version: status %d, want %d: %s", file, status, http.StatusGone, body)
				}
			}
			afterDelete := newGoTool(t, srv.URL)
			checkOutput(t, afterDelete, t.TempDir(), "example.com/hello v1.0.0\n", "list", "-m", "-versions", "example.com/hello")

			// Disaster recovery: the storage directory is itself a proxy.
			recovery := newGoTool(t, fileProxyURL(srv.StorageDir))
			empty := t.TempDir()
			checkOutput(t, recovery, empty, "example.com/hello v1.0.0\n", "list", "-m", "-versions", "example.com/hello")
			checkDownload(t, recovery, empty, gosum, "example.com/hello@v1.0.0", "example.com/hello/v2@v2.0.0", "example.com/Upper@v0.1.0")
		})
	}
}

// server is a running agora process.
type server struct {
	// URL is the server's base URL, http://127.0.0.1:port.
	URL string
	// DataDir is its AGORA_DATA_DIR; StorageDir the storage directory, in
	// it unless AGORA_STORAGE_DIR says otherwise.
	DataDir, StorageDir string
	// DatabaseURL is its DATABASE_URL, empty for the embedded SQLite.
	DatabaseURL string

	bin     string   // the agora binary
	env     []string // the environment of the server and its commands
	workDir string   // the working directory of every agora process
	client  *http.Client
	log     *testutil.Buffer // the server's standard output and error
	proc    *os.Process      // the running server
	done    chan struct{}    // closed when the process has exited
	mu      sync.Mutex       // guards waitErr
	waitErr error            // the process's exit error, once done is closed
	// terminated is set when the test itself stopped the server.
	terminated bool
}

// startAgora starts agora on a free loopback port with a fresh data
// directory and a fresh database of the dialect, and waits until it is
// healthy. SQLite is the embedded default, so for it DATABASE_URL is left
// unset. When the test ends the server gets SIGTERM and must exit with
// status 0; its log is shown if the test failed. extraEnv adds settings;
// a DATABASE_URL, AGORA_DATA_DIR or AGORA_STORAGE_DIR in it replaces the
// fresh one.
func startAgora(t *testing.T, bin, dialect string, extraEnv ...string) *server {
	t.Helper()
	s := newServer(t, bin, dialect, extraEnv...)
	s.start(t, dialect)
	if dialect == "sqlite3" {
		if _, err := os.Stat(filepath.Join(s.DataDir, "agora.db")); err != nil {
			t.Errorf("with DATABASE_URL unset, agora should keep its SQLite database in AGORA_DATA_DIR: %v", err)
		}
	}
	return s
}

// newServer returns the server that startAgora starts, not yet started,
// so that its commands (s.agora) can run on its data first.
func newServer(t *testing.T, bin, dialect string, extraEnv ...string) *server {
	t.Helper()
	dataDir := ""
	for _, kv := range extraEnv {
		if dir, ok := strings.CutPrefix(kv, "AGORA_DATA_DIR="); ok {
			dataDir = dir
		}
	}
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{
		DataDir:    dataDir,
		bin:        bin,
		StorageDir: filepath.Join(dataDir, "storage"),
		workDir:    t.TempDir(), // no .env file for envy to find
		client:     &http.Client{Timeout: time.Minute},
		env: append([]string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + os.Getenv("HOME"),
			"GO_ENV=development",
			"AGORA_DATA_DIR=" + dataDir,
			// Tests never reach the internet: no upstream unless a test
			// brings its fake one (a later setting wins).
			"AGORA_UPSTREAM=off",
			"AGORA_SUMDB=off",
		}, extraEnv...),
	}
	for _, kv := range extraEnv {
		if dir, ok := strings.CutPrefix(kv, "AGORA_STORAGE_DIR="); ok {
			s.StorageDir = dir
		}
		if url, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			s.DatabaseURL = url
		}
	}
	if dialect != "sqlite3" && s.DatabaseURL == "" {
		s.DatabaseURL = modelstest.URL(t, dialect)
		s.env = append(s.env, "DATABASE_URL="+s.DatabaseURL)
	}
	return s
}

// start starts the server process on a free port with s's data directory
// and database, and waits until it is healthy and ready. It is called again
// after terminate to restart the server on the same data, at a new URL.
//
// The server picks its port itself (ADDR=127.0.0.1:0) and the test reads
// it from the server's log: a port found free and closed by the test
// could be taken by another process before the server binds it.
func (s *server) start(t *testing.T, dialect string) {
	t.Helper()
	s.URL = ""
	s.log = new(testutil.Buffer)
	s.done = make(chan struct{})
	s.terminated = false

	cmd := exec.Command(s.bin)
	cmd.Dir = s.workDir
	cmd.Env = append(slices.Clone(s.env), "ADDR=127.0.0.1:0")
	listening := &listenWatcher{url: make(chan string, 1)}
	out := io.MultiWriter(s.log, listening)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting agora: %v", err)
	}
	s.proc = cmd.Process
	done, log := s.done, s.log
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()
	t.Cleanup(func() {
		if s.proc == cmd.Process && !s.terminated { // not restarted, not stopped by the test
			s.stop(t, cmd.Process)
		}
		if t.Failed() {
			t.Logf("agora's log (%s):\n%s", dialect, log)
		}
	})

	select {
	case s.URL = <-listening.url:
	case <-done:
		t.Fatalf("agora exited before listening: %v", s.exited(t))
	case <-time.After(startTimeout):
		t.Fatalf("agora did not say where it listens within %v", startTimeout)
	}
	s.waitHealthy(t)
	if status, body := s.do(t, http.MethodGet, "/readyz", "", nil, nil); status != http.StatusOK {
		t.Fatalf("GET /readyz: status %d, want %d: %s", status, http.StatusOK, body)
	}
}

// terminate sends the server SIGTERM now; wait for its exit with exited.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	s.terminated = true
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM to agora: %v", err)
	}
}

// exited waits for the server process to exit and returns its exit error.
func (s *server) exited(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(stopTimeout + time.Minute):
		s.proc.Kill()
		t.Fatalf("agora did not exit")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// waitHealthy polls /healthz until it answers 200 ok, the process exits, or
// startTimeout passes.
func (s *server) waitHealthy(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		var last string
		resp, err := client.Get(s.URL + "/healthz")
		if err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return
			}
			last = fmt.Sprintf("status %d: %q", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora did not become healthy within %v; last GET /healthz: %s", startTimeout, last)
		}
		select {
		case <-s.done:
			t.Fatalf("agora exited before becoming healthy: %v", s.exited(t))
		case <-time.After(pollInterval):
		}
	}
}

// stop sends SIGTERM to the server and checks that it exits with status 0
// within stopTimeout, killing it otherwise.
func (s *server) stop(t *testing.T, p *os.Process) {
	select {
	case <-s.done:
		t.Errorf("agora exited before the test ended: %v", s.exited(t))
		return
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("sending SIGTERM to agora: %v", err)
	}
	select {
	case <-s.done:
		if err := s.exited(t); err != nil {
			t.Errorf("agora exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("agora did not exit within %v of SIGTERM; killing it", stopTimeout)
		p.Kill()
		<-s.done
	}
}

// agora runs the agora binary with args in the server's environment and
// returns its standard output.
func (s *server) agora(t *testing.T, args ...string) string {
	t.Helper()
	out, all, err := runCommand(s.workDir, s.env, s.bin, args...)
	if err != nil {
		t.Fatalf("agora %s: %v\n%s", strings.Join(args, " "), err, all)
	}
	return out
}

// createPublisher creates a user with the publisher role through the
// binary's own commands and returns a new token of theirs with publish
// scope.
func (s *server) createPublisher(t *testing.T, name string) string {
	t.Helper()
	return s.createUser(t, name, "publisher", "publish")
}

// createUser creates a user with role through the binary's own commands
// and returns a new token of theirs with scope.
func (s *server) createUser(t *testing.T, name, role, scope string) string {
	t.Helper()
	s.agora(t, "user", "create", name, "--role", role)
	out := s.agora(t, "token", "create", name, "--name", "e2e", "--scope", scope)
	token, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.ContainsAny(token, "\r\n \t") || !strings.HasPrefix(token, "agora_") {
		t.Fatalf("agora token create printed %q on standard output, want one line starting agora_", out)
	}
	if list := s.agora(t, "token", "list", name); !strings.Contains(list, "e2e") {
		t.Errorf("agora token list %s does not show the token named e2e:\n%s", name, list)
	}
	return token
}

// publishedVersion is the part of the API's version JSON the test checks.
type publishedVersion struct {
	Path        string   `json:"path"`
	Version     string   `json:"version"`
	GoSum       []string `json:"gosum"`
	PublishedBy string   `json:"published_by"`
	Status      string   `json:"status"`
}

// publish uploads f's zip over the REST API and returns the status, the
// version Agora reports, and the response body.
func (s *server) publish(t *testing.T, token string, f fixture) (int, publishedVersion, []byte) {
	t.Helper()
	escPath, err := module.EscapePath(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	escVersion, err := module.EscapeVersion(f.Version)
	if err != nil {
		t.Fatal(err)
	}
	var v publishedVersion
	status, body := s.do(t, http.MethodPut, "/api/v1/modules/"+escPath+"/@v/"+escVersion+".zip", token, f.zip(t), &v)
	return status, v, body
}

// do sends a request with body (if not nil) and the bearer token (if not
// empty). It returns the status and the response body, and decodes a 2xx
// answer as JSON into out, if not nil.
func (s *server) do(t *testing.T, method, path, token string, body []byte, out any) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/zip")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, path, err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, bytes.TrimSpace(data)
}

// checkPublished checks what the API reported about publishing f.
func checkPublished(t *testing.T, f fixture, v publishedVersion) {
	t.Helper()
	if v.Path != f.Path || v.Version != f.Version || v.PublishedBy != "alice" || v.Status != "live" {
		t.Errorf("publishing %v reported %s@%s published by %q, status %q; want it published by alice, live",
			f, v.Path, v.Version, v.PublishedBy, v.Status)
	}
	if len(v.GoSum) != 2 ||
		!strings.HasPrefix(v.GoSum[0], f.Path+" "+f.Version+" h1:") ||
		!strings.HasPrefix(v.GoSum[1], f.Path+" "+f.Version+"/go.mod h1:") {
		t.Fatalf("publishing %v reported go.sum lines %q, want the zip's and the go.mod's h1: lines", f, v.GoSum)
	}
}

// goTool runs the go command in an environment of its own: only PATH and
// HOME are inherited, the module cache is fresh and empty, and modules come
// from one proxy. Only example.com skips the checksum database.
type goTool struct {
	env      []string
	modcache string // its GOMODCACHE
}

// newGoTool returns a goTool using proxy as its only GOPROXY. It empties
// its module cache (read-only files) before the test's temporary
// directories are removed.
func newGoTool(t *testing.T, proxy string) *goTool {
	t.Helper()
	gopath, modcache := t.TempDir(), t.TempDir()
	g := &goTool{env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"GOENV=off", // no settings from the user's go env file
		"GOCACHE=" + build.gocache,
		"GOPATH=" + gopath,
		"GOMODCACHE=" + modcache,
		"GOPROXY=" + proxy,
		"GONOSUMDB=example.com",
		"GOPRIVATE=",
		"GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local",
		"GOWORK=off",
	}, modcache: modcache}
	t.Cleanup(func() {
		if _, all, err := runCommand(gopath, g.env, "go", "clean", "-modcache"); err != nil {
			t.Errorf("go clean -modcache: %v\n%s", err, all)
		}
	})
	return g
}

// run runs the go command with args in dir and returns its standard output.
func (g *goTool) run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, all, err := runCommand(dir, g.env, "go", args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, all)
	}
	return out
}

// checkOutput runs the go command with args in dir and checks its standard
// output.
func checkOutput(t *testing.T, g *goTool, dir, want string, args ...string) {
	t.Helper()
	if got := g.run(t, dir, args...); got != want {
		t.Errorf("go %s printed %q, want %q", strings.Join(args, " "), got, want)
	}
}

// checkProgram builds the program in dir and checks what it prints.
func checkProgram(t *testing.T, g *goTool, dir, want string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consumer")
	g.run(t, dir, "build", "-o", bin, ".")
	got, all, err := runCommand(dir, g.env, bin)
	if err != nil {
		t.Fatalf("running the consumer: %v\n%s", err, all)
	}
	if got != want {
		t.Errorf("the consumer printed %q, want %q", got, want)
	}
}

// checkGoSum checks that the go.sum file in dir holds, verbatim, each line
// Agora reported for the versions named (path@version).
func checkGoSum(t *testing.T, dir string, reported map[string][]string, versions ...string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool)
	for _, line := range strings.Split(string(data), "\n") {
		have[line] = true
	}
	for _, v := range versions {
		for _, line := range reported[v] {
			if !have[line] {
				t.Errorf("go.sum lacks the line Agora reported for %s: %q\ngo.sum:\n%s", v, line, data)
			}
		}
	}
}

// checkDownload runs go mod download -json for the versions named
// (path@version) and checks that each is downloaded with the hashes Agora
// reported.
func checkDownload(t *testing.T, g *goTool, dir string, reported map[string][]string, versions ...string) {
	t.Helper()
	out := g.run(t, dir, append([]string{"mod", "download", "-json"}, versions...)...)
	got := make(map[string]string) // go.sum lines, by path@version
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var d struct {
			Path, Version, Error, Sum, GoModSum, Zip string
		}
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go mod download -json output: %v\n%s", err, out)
		}
		if d.Error != "" || d.Zip == "" {
			t.Errorf("go mod download %s@%s: error %q, zip %q", d.Path, d.Version, d.Error, d.Zip)
			continue
		}
		got[d.Path+"@"+d.Version] = fmt.Sprintf("%s %s %s\n%[1]s %[2]s/go.mod %[4]s", d.Path, d.Version, d.Sum, d.GoModSum)
	}
	for _, v := range versions {
		if want := strings.Join(reported[v], "\n"); got[v] != want {
			t.Errorf("go mod download %s gave hashes\n%s\nwant those Agora reported\n%s", v, got[v], want)
		}
	}
}

// runCommand runs name with args in dir (the current directory if empty)
// and environment env, killing it after commandTimeout. It returns its
// standard output, and its standard output and error interleaved, for
// error messages.
func runCommand(dir string, env []string, name string, args ...string) (stdout, combined string, err error) {
	return runCommandFor(commandTimeout, dir, env, name, args...)
}

// runCommandFor is runCommand, killing the command after timeout.
func runCommandFor(timeout time.Duration, dir string, env []string, name string, args ...string) (stdout, combined string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	all := new(testutil.Buffer)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, all), all
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (killed after %v)", err, timeout)
	}
	return out.String(), all.String(), err
}

// listenWatcher is written a server's output, and sends on url the URL
// of the first "agora listening" line.
type listenWatcher struct {
	url  chan string // buffered: the one URL
	line []byte      // the line written so far
	sent bool
}

// listeningLine matches the log line in which agora says where it listens.
var listeningLine = regexp.MustCompile(`msg="agora listening" url=(http://\S+)`)

func (w *listenWatcher) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		if m := listeningLine.FindSubmatch(w.line[:i]); m != nil {
			w.url <- string(m[1])
			w.sent, w.line = true, nil
			return len(p), nil
		}
		w.line = w.line[i+1:]
	}
}

// fileProxyURL returns the GOPROXY URL of a proxy tree on disk.
func fileProxyURL(dir string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}).String()
}

// writeFile writes content to the file name, creating its directory.
func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
