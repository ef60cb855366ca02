package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	modzip "golang.org/x/mod/zip"

	"agora/models/modelstest"
)

// publicModule is a module the fake upstream serves.
type publicModule struct {
	Path, Version string
	GoMod         string
	Zip           []byte
	Sum           string // its two go.sum lines
}

// newPublicModule zips files (go.mod included) as path@version.
func newPublicModule(t *testing.T, path, version string, files map[string]string) *publicModule {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: path, Version: version}, dir); err != nil {
		t.Fatal(err)
	}
	zipFile := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(zipFile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	zipHash, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(files["go.mod"])), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &publicModule{
		Path: path, Version: version, GoMod: files["go.mod"], Zip: buf.Bytes(),
		Sum: fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, version, zipHash, path, version, modHash),
	}
}

// fakeUpstream is a public GOPROXY with its checksum database under
// /sumdb/<name>/, as proxy.golang.org serves sum.golang.org. It counts
// requests by kind ("proxy" or "sumdb", and "zip" for zips), and answers
// zips after zipDelay.
type fakeUpstream struct {
	*httptest.Server
	name, vkey string
	zipDelay   atomic.Int64 // nanoseconds
	mu         sync.Mutex
	requests   map[string]int
}

func newFakeUpstream(t *testing.T, mods ...*publicModule) *fakeUpstream {
	t.Helper()
	const name = "sum.agora-e2e.test"
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	byKey := make(map[string]*publicModule)
	versions := make(map[string][]string)
	for _, m := range mods {
		byKey[m.Path+"@"+m.Version] = m
		versions[m.Path] = append(versions[m.Path], m.Version)
	}
	db := sumdb.NewServer(sumdb.NewTestServer(skey, func(path, version string) ([]byte, error) {
		if m := byKey[path+"@"+version]; m != nil {
			return []byte(m.Sum), nil
		}
		return nil, fmt.Errorf("%s@%s: not found", path, version)
	}))
	u := &fakeUpstream{name: name, vkey: vkey, requests: make(map[string]int)}
	sumdbPrefix := "/sumdb/" + name
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, sumdbPrefix); ok {
			u.count("sumdb")
			if rest == "/supported" {
				return
			}
			http.StripPrefix(sumdbPrefix, db).ServeHTTP(w, r)
			return
		}
		u.count("proxy")
		esc, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/@v/")
		path, err := module.UnescapePath(esc)
		if !ok || err != nil {
			http.NotFound(w, r)
			return
		}
		if rest == "list" {
			io.WriteString(w, strings.Join(versions[path], "\n"))
			return
		}
		ext := filepath.Ext(rest)
		version, err := module.UnescapeVersion(strings.TrimSuffix(rest, ext))
		m := byKey[path+"@"+version]
		if err != nil || m == nil {
			http.Error(w, "not found: unknown revision", http.StatusNotFound)
			return
		}
		switch ext {
		case ".info":
			fmt.Fprintf(w, `{"Version":%q,"Time":"2026-03-04T05:06:07Z"}`, version)
		case ".mod":
			io.WriteString(w, m.GoMod)
		case ".zip":
			u.count("zip")
			time.Sleep(time.Duration(u.zipDelay.Load()))
			w.Write(m.Zip)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *fakeUpstream) count(kind string) {
	u.mu.Lock()
	u.requests[kind]++
	u.mu.Unlock()
}

func (u *fakeUpstream) total(kind string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests[kind]
}

// TestPullThroughWithChecksumDatabase resolves and builds a consumer of
// public modules with the real go command, GOPROXY=agora only and checksum
// verification on: every module and every checksum-database lookup and
// tile goes through Agora, which fetches them from the fake upstream. Then
// the upstream goes away and a fresh module cache builds again from what
// Agora stored.
func TestPullThroughWithChecksumDatabase(t *testing.T) {
	bin := agoraBinary(t)
	a := newPublicModule(t, "example.org/greet", "v1.0.0", map[string]string{
		"go.mod":       "module example.org/greet\n\ngo 1.21\n",
		"greet.go":     "package greet\n\n// Hello greets.\nfunc Hello() string { return \"hello from greet\" }\n",
		"loud/loud.go": "package loud\n",
	})
	b := newPublicModule(t, "example.org/Shout", "v1.1.0", map[string]string{
		"go.mod":   "module example.org/Shout\n\ngo 1.21\n\nrequire example.org/greet v1.0.0\n",
		"shout.go": "package shout\n\nimport (\n\t\"strings\"\n\n\t\"example.org/greet\"\n)\n\n// Hello shouts.\nfunc Hello() string { return strings.ToUpper(greet.Hello()) }\n",
	})
	old := newPublicModule(t, "example.org/Shout", "v1.0.0", map[string]string{
		"go.mod":   "module example.org/Shout\n\ngo 1.21\n",
		"shout.go": "package shout\n\n// Hello shouts.\nfunc Hello() string { return \"OLD\" }\n",
	})
	// A module without tags, which the upstream lists but has no @latest
	// for, as a module cache has none: the go command resolves @latest to
	// the newest pseudo-version of the list, and so must Agora.
	const nightlyVersion = "v0.0.0-20260304050607-0123456789ab"
	nightly := newPublicModule(t, "example.org/nightly", nightlyVersion, map[string]string{
		"go.mod":     "module example.org/nightly\n\ngo 1.21\n",
		"nightly.go": "package nightly\n",
	})

	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			up := newFakeUpstream(t, a, b, old, nightly)
			s := startAgora(t, bin, dialect, "AGORA_UPSTREAM="+up.URL, "AGORA_SUMDB="+up.vkey)

			build := func(g *goTool) {
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, "go.mod"), "module consumer\n\ngo 1.21\n")
				writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nimport (\n\t\"fmt\"\n\n\tshout \"example.org/Shout\"\n)\n\nfunc main() { fmt.Println(shout.Hello()) }\n")
				g.run(t, dir, "get", "example.org/Shout@v1.1.0")
				checkProgram(t, g, dir, "HELLO FROM GREET\n")
				checkOutput(t, g, dir, "example.org/Shout v1.0.0 v1.1.0\n", "list", "-m", "-versions", "example.org/Shout")
				// A package's path, not its module's: the go command looks
				// up every prefix of it at once, example.org/greet/loud (no
				// module) as well as example.org/greet, and any answer but
				// 404 or 410 stops it, such as a 502 for the first while
				// the upstream is gone.
				g.run(t, dir, "get", "example.org/greet/loud@v1.0.0")
				g.run(t, dir, "get", "example.org/greet/loud@latest")
				g.run(t, dir, "get", "example.org/nightly@latest")
				checkOutput(t, g, dir, "example.org/nightly "+nightlyVersion+"\n", "list", "-m", "example.org/nightly")
				g.run(t, dir, "mod", "verify")
				sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range []*publicModule{a, b, nightly} {
					if !strings.Contains(string(sum), m.Sum) {
						t.Errorf("go.sum lacks the checksum database's lines\n%s", m.Sum)
					}
				}
			}

			g := newGoTool(t, s.URL)
			g.env = append(g.env, "GONOSUMDB=", "GOSUMDB="+up.vkey) // verify everything
			build(g)
			if n := up.total("sumdb"); n == 0 {
				t.Error("the checksum database was never asked through Agora")
			}

			// The upstream is gone: a fresh module cache still builds, the
			// checksum database's answers coming from Agora's cache.
			up.Close()
			g2 := newGoTool(t, s.URL)
			g2.env = append(g2.env, "GONOSUMDB=", "GOSUMDB="+up.vkey)
			build(g2)
		})
	}
}

// TestUpstreamLoop starts Agora with an upstream that leads back to it,
// as the default upstream does when the GOPROXY of the machine it runs on
// is this Agora: a request for what it does not store must be answered at
// once, saying so, not wait on itself until its timeouts.
func TestUpstreamLoop(t *testing.T) {
	bin := agoraBinary(t)
	// The upstream passes requests on to Agora itself, as any proxy in
	// between would, Via headers and all.
	var target atomic.Pointer[url.URL]
	forward := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target.Load())
	}})
	defer forward.Close()
	s := startAgora(t, bin, "sqlite3", "AGORA_UPSTREAM="+forward.URL)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	target.Store(u)

	start := time.Now()
	resp, err := s.client.Get(s.URL + "/example.org/loop/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the answer took %v; want it at once", d)
	}
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "loop detected") {
		t.Errorf("list through a loop: %d %s; want 404 saying that the upstream leads back", resp.StatusCode, body)
	}
	if !strings.Contains(s.log.String(), "AGORA_UPSTREAM leads back to this Agora") {
		t.Error("agora's log does not say that AGORA_UPSTREAM leads back to it")
	}
}

// TestReadWithToken runs the go command against an Agora that needs a
// token to read (AGORA_READ_AUTH=token), behind a TLS terminator as it is
// deployed: the go command sends the credentials of .netrc over HTTPS only,
// to downloads and to checksum-database lookups alike, which both need it.
func TestReadWithToken(t *testing.T) {
	bin := agoraBinary(t)
	greet := newPublicModule(t, "example.org/greet", "v1.0.0", map[string]string{
		"go.mod":   "module example.org/greet\n\ngo 1.21\n",
		"greet.go": "package greet\n",
	})
	up := newFakeUpstream(t, greet)
	s := startAgora(t, bin, "sqlite3", "AGORA_READ_AUTH=token", "AGORA_UPSTREAM="+up.URL, "AGORA_SUMDB="+up.vkey)
	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	tls := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }})
	defer tls.Close()
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw})))

	if status, _, body := s.publish(t, s.createPublisher(t, "alice"), fixtures[0]); status != http.StatusCreated {
		t.Fatalf("publishing %v: %d %s", fixtures[0], status, body)
	}
	reader := s.createUser(t, "ci", "viewer", "read")
	// The machine is the host and, as it is not 443, the port.
	netrc := filepath.Join(t.TempDir(), "netrc")
	writeFile(t, netrc, "machine "+strings.TrimPrefix(tls.URL, "https://")+"\nlogin ci\npassword "+reader+"\n")

	g := newGoTool(t, tls.URL)
	g.env = append(g.env, "SSL_CERT_FILE="+certFile, "NETRC="+netrc, "GONOSUMDB=example.com", "GOSUMDB="+up.vkey)
	dir := t.TempDir()
	g.run(t, dir, "mod", "init", "example.com/reader")
	g.run(t, dir, "get", "example.com/hello@v1.0.0", "example.org/greet@v1.0.0")
	// example.org/greet was verified through Agora's checksum-database
	// proxy, with the token.
	if lookup := "path=/sumdb/" + up.name + "/lookup/example.org/greet@v1.0.0 status=200"; !strings.Contains(s.log.String(), lookup) {
		t.Errorf("agora's log lacks %q", lookup)
	}

	// Without credentials the go command shows why it was refused.
	anon := newGoTool(t, tls.URL)
	anon.env = append(anon.env, "SSL_CERT_FILE="+certFile, "NETRC="+filepath.Join(t.TempDir(), "none"))
	dir = t.TempDir()
	anon.run(t, dir, "mod", "init", "example.com/anonymous")
	_, all, err := runCommand(dir, anon.env, "go", "get", "example.com/hello@v1.0.0")
	if err == nil || !strings.Contains(all, "401 Unauthorized") || !strings.Contains(all, "needs a token with read scope") {
		t.Errorf("go get without a token: %v\n%s\nwant 401 and Agora's reason", err, all)
	}
}
