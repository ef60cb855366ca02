package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var listVersionsTests = []struct {
	in, want string
}{
	{"v1.2.0\nv1.10.9\nv1.12.3\n", "v1.2.0\nv1.10.9\nv1.12.3\n"},
	{"v1.12.3\nv1.2.0\n\nv1.10.9", "v1.2.0\nv1.10.9\nv1.12.3\n"},
	{"v0.6.0-dev.0.20220419223038-86c51ed26bb4\nv0.42.0\n", "v0.42.0\n"},
	{"v0.0.0-20190308221718-c2843e01d9a2\nv0.58.0\n", "v0.58.0\n"},
	{"v1.0.0 2020-01-01T00:00:00Z\nnot-a-version\nv1.0.0\n", "v1.0.0\n"},
	{"", "\n"},
}

func TestListVersions(t *testing.T) {
	for _, tt := range listVersionsTests {
		if got := string(listVersions([]byte(tt.in))); got != tt.want {
			t.Errorf("listVersions(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	for path, want := range map[string]int{
		"/golang.org/x/mod/@v/v0.42.0.info": kindInfo,
		"/golang.org/x/mod/@v/v0.42.0.mod":  kindMod,
		"/golang.org/x/mod/@v/v0.42.0.zip":  kindZip,
		"/golang.org/x/mod/@v/list":         kindList,
		"/golang.org/x/mod/@latest":         kindLatest,
		"/healthz":                          kindOther,
	} {
		if got := kindOf(path); got != want {
			t.Errorf("kindOf(%q) = %s, want %s", path, kindNames[got], kindNames[want])
		}
	}
}

// files are the fake proxy's bodies; reordered lists are alike.
var files = map[string]string{
	"/example.com/a/@v/v1.0.0.info": `{"Version":"v1.0.0"}`,
	"/example.com/a/@v/v1.0.0.mod":  "module example.com/a\n",
	"/example.com/a/@v/v1.0.0.zip":  strings.Repeat("z", 1000),
	"/example.com/a/@v/list":        "v1.0.0\nv1.1.0\n",
}

// proxy returns a server answering files, with the list reordered and the
// body of change changed, and counting requests in n.
func proxy(t *testing.T, change string, n *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Path {
		case change:
			body = strings.ToUpper(body)
		case "/example.com/a/@v/list":
			body = "v1.1.0\nv1.0.0\n"
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeList(t *testing.T, lines ...string) string {
	name := filepath.Join(t.TempDir(), "requests.txt")
	if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func replay(t *testing.T, cfg config, list, ref string) *runner {
	t.Helper()
	paths, err := readList(list)
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(cfg.conns, cfg.timeout)
	r := &runner{cfg: cfg, client: client, paths: paths}
	if ref != "" {
		if r.want, err = fetchReference(context.Background(), client, ref, paths, cfg.conns); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestOnce(t *testing.T) {
	var nRef, nSrv atomic.Int64
	ref := proxy(t, "", &nRef)
	srv := proxy(t, "/example.com/a/@v/v1.0.0.mod", &nSrv)
	list := writeList(t, "# a comment", "/example.com/a/@v/v1.0.0.info", "/example.com/a/@v/v1.0.0.mod",
		"", "/example.com/a/@v/list", "/example.com/a/@v/v1.0.0.zip", "/example.com/a/@v/v2.0.0.zip")
	cfg := config{base: srv.URL, mode: "once", conns: 3, verify: "full", timeout: 10 * time.Second}

	r := replay(t, cfg, list, "")
	res := r.run(context.Background())
	if n := len(res.all.latencies); n != 5 || nSrv.Load() != 5 {
		t.Errorf("once: %d requests, the server saw %d; want 5 and 5", n, nSrv.Load())
	}
	if res.errors != 1 || !strings.Contains(r.errs[0], "v2.0.0.zip: 404") {
		t.Errorf("once: errors %d %q; want the 404 of v2.0.0.zip", res.errors, r.errs)
	}
	if res.kinds[kindZip].bytes != 1000 || len(res.kinds[kindZip].latencies) != 2 {
		t.Errorf("zip: %d bytes in %d requests, want 1000 in 2", res.kinds[kindZip].bytes, len(res.kinds[kindZip].latencies))
	}

	// Against a reference, the changed .mod differs; the reordered list
	// does not.
	list = writeList(t, "/example.com/a/@v/v1.0.0.info", "/example.com/a/@v/v1.0.0.mod",
		"/example.com/a/@v/list", "/example.com/a/@v/v1.0.0.zip")
	r = replay(t, cfg, list, ref.URL)
	res = r.run(context.Background())
	if res.errors != 1 || !strings.Contains(r.errs[0], "v1.0.0.mod: the body differs") {
		t.Errorf("-ref: errors %d %q; want the .mod's body to differ", res.errors, r.errs)
	}
	cfg.verify = "size"
	r = replay(t, cfg, list, ref.URL)
	if res = r.run(context.Background()); res.errors != 0 {
		t.Errorf("-verify size: errors %q, want none", r.errs)
	}
	if _, err := fetchReference(context.Background(), newClient(1, time.Second), ref.URL, []string{"/nope"}, 1); err == nil {
		t.Error("a reference's 404 is no error")
	}
}

func TestLoop(t *testing.T) {
	var n atomic.Int64
	srv := proxy(t, "", &n)
	list := writeList(t, "/example.com/a/@v/v1.0.0.info", "/example.com/a/@v/v1.0.0.mod")
	cfg := config{base: srv.URL, mode: "loop", duration: 200 * time.Millisecond, conns: 4, verify: "none", timeout: 10 * time.Second}
	res := replay(t, cfg, list, "").run(context.Background())
	if got := len(res.all.latencies); got < 8 || int64(got) != n.Load() || res.errors != 0 {
		t.Errorf("loop: %d requests, the server saw %d, %d errors; want at least 8, as many, none", got, n.Load(), res.errors)
	}
	if res.seconds < 0.2 {
		t.Errorf("loop ran %.3f s, want at least 0.2", res.seconds)
	}
	if s := res.String(); !strings.HasPrefix(s, "RESULT mode=loop requests=") {
		t.Errorf("RESULT line %q", s)
	}
}
