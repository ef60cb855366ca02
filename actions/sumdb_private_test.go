package actions_test

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gobuffalo/pop/v6"

	"agora/actions"
	"agora/checksum"
	"agora/models/modelstest"
	"agora/upstream"
)

// TestSumDBKeepsPrivatePathsHere checks that lookups of private modules
// are answered 404, saying what to set, without reaching the checksum
// database, and that lookups of public ones still do.
func TestSumDBKeepsPrivatePathsHere(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		const name = "sum.example.com"
		url, vkey, requests := actions.NewCountingSumDB(t, name)
		db, err := checksum.New(checksum.Options{
			Name: name, Key: vkey, Proxies: []upstream.Proxy{{URL: url}}, CacheDir: t.TempDir(),
			NoSumDB: "nosum.example.com",
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		up := newFakeGOPROXY(t)
		s := newServer(t, conn, withUpstream(up.URL, "corp.example.com  none\n", nil), func(s *serverSetup) { s.deps.SumDB = db })
		published := newModule(t, "example.com/hello", "v1.0.0", "hello")
		s.mustPublish(t, s.root, published)

		p := "/sumdb/" + name + "/lookup/"
		for _, tt := range []struct{ path, why string }{
			{"corp.example.com/secret@v1.0.0", "AGORA_RULES line 1 (corp.example.com) fetches it from no upstream"},
			{"nosum.example.com/x@v1.0.0", "AGORA_NOSUMDB matches it"},
			{"example.com/hello@v1.0.0", "it is published here"},
			{"example.com/hello@v1.1.0", "it is published here"},
		} {
			r := s.get(t, p+tt.path)
			if r.status != http.StatusNotFound || !strings.Contains(string(r.body), tt.why) || !strings.Contains(string(r.body), "set GONOSUMDB") || !strings.Contains(string(r.body), "GONOPROXY=none") {
				t.Errorf("lookup of %s: %s; want 404 saying %q and what to set", tt.path, r, tt.why)
			}
		}
		// With a long path, the answer is still one the go command prints,
		// and it still says what to set.
		long := "nosum.example.com/" + strings.Repeat("abcdefghi/", 20) + "x"
		r := s.get(t, p+long+"@v1.0.0")
		wantProtocolError(t, r, http.StatusNotFound)
		if want := "not found: " + long + " is a private module of this proxy (AGORA_NOSUMDB matches it)"; !strings.HasPrefix(string(r.body), want) {
			t.Errorf("lookup of a private module with a long path: %s; want it to start %q", r, want)
		}
		if !strings.Contains(string(r.body), "set GONOSUMDB") || !strings.Contains(string(r.body), "GONOPROXY=none") {
			t.Errorf("lookup of a private module with a long path: %s; want it to say what to set", r)
		}
		for _, req := range requests() {
			if strings.Contains(req, "/lookup/") {
				t.Errorf("the checksum database was asked %s", req)
			}
		}

		// Deleted, a published module stays private.
		if r := s.do(t, http.MethodDelete, "/api/v1/modules/example.com/hello/@v/v1.0.0?reason=test", nil, bearer(s.root)); r.status != http.StatusNoContent {
			t.Fatalf("delete: %s", r)
		}
		if r := s.get(t, p+"example.com/hello@v1.0.0"); r.status != http.StatusNotFound {
			t.Errorf("lookup of a deleted private module: %s; want 404", r)
		}

		// Published here before the upstream served it, a public module
		// is private only until the upstream has served it.
		pub := newModule(t, "example.com/a", "v1.0.0", "a")
		up.add(pub)
		s.mustPublish(t, s.root, newModule(t, pub.Path, "v1.9.0", "not example.com/a"))
		if r := s.get(t, p+"example.com/a@v1.0.0"); r.status != http.StatusNotFound {
			t.Errorf("lookup of a module published here only: %s; want 404", r)
		}
		wantStatus(t, s.get(t, protoPath(pub.Path, pub.Version)+".info"), http.StatusOK)

		// A public module is looked up.
		if r := s.get(t, p+"example.com/a@v1.0.0"); r.status != http.StatusOK {
			t.Errorf("lookup of a public module: %s; want 200", r)
		}
		if !slices.Contains(requests(), "/sumdb/"+name+"/lookup/example.com/a@v1.0.0") {
			t.Errorf("the public lookup did not reach the checksum database: %q", requests())
		}
	})
}

// TestCacheControlUnderReadAuth checks who may keep what never changes (a
// version's files, a checksum-database lookup or tile): any cache, shared
// ones too, when anyone may read, but only the client's own when reading
// needs a token, since a shared cache would give what a token read to
// anyone (RFC 9111 section 3.5).
func TestCacheControlUnderReadAuth(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		for _, tt := range []struct {
			readAuth string
			opts     []serverOption
			want     string // how Cache-Control starts
		}{
			{"public", nil, "public, "},
			{"token", []serverOption{readAuthToken}, "private, "},
		} {
			t.Run(tt.readAuth, func(t *testing.T) {
				const name = "sum.example.com"
				url, vkey, _ := actions.NewCountingSumDB(t, name)
				db, err := checksum.New(checksum.Options{
					Name: name, Key: vkey, Proxies: []upstream.Proxy{{URL: url}}, CacheDir: t.TempDir(),
					Logger: slog.New(slog.DiscardHandler),
				})
				if err != nil {
					t.Fatal(err)
				}
				s := newServer(t, conn, append(tt.opts, func(s *serverSetup) { s.deps.SumDB = db })...)
				m := newModule(t, "example.com/cached-"+tt.readAuth, "v1.0.0", "x")
				s.mustPublish(t, s.root, m)

				for _, p := range []string{
					protoPath(m.Path, m.Version) + ".info",
					protoPath(m.Path, m.Version) + ".mod",
					protoPath(m.Path, m.Version) + ".zip",
					"/sumdb/" + name + "/lookup/example.com/a@v1.0.0",
					"/sumdb/" + name + "/tile/8/0/000.p/1",
				} {
					r := s.get(t, p, basicAuth("root", s.root))
					wantStatus(t, r, http.StatusOK)
					cc := r.header.Get("Cache-Control")
					if !strings.HasPrefix(cc, tt.want) || !strings.Contains(cc, "max-age=") {
						t.Errorf("GET %s: Cache-Control %q; want it to start %q, with a max-age", p, cc, tt.want)
					}
					if strings.HasSuffix(p, ".zip") && !strings.HasSuffix(cc, ", immutable") {
						t.Errorf("GET %s: Cache-Control %q; want immutable", p, cc)
					}
				}
			})
		}
	})
}
