package actions_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models/modelstest"
)

// infoJSON is the body of .info and @latest.
type infoJSON struct {
	Version string
	Time    time.Time
}

// decodeInfo decodes an .info or @latest response.
func decodeInfo(t *testing.T, r *response) infoJSON {
	t.Helper()
	var info infoJSON
	decodeJSON(t, r, &info)
	return info
}

func TestDownloadProtocol(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path = "example.com/dl"
		published := map[string]versionJSON{}
		mods := map[string]*testModule{}
		// Published out of order; the pre-release is the highest version.
		for _, v := range []string{"v1.10.0", "v1.0.0", "v1.11.0-beta.1", "v1.2.0"} {
			mods[v] = newModule(t, path, v, v)
			published[v] = s.mustPublish(t, alice, mods[v])
		}

		t.Run("list", func(t *testing.T) {
			r := s.get(t, "/example.com/dl/@v/list")
			wantStatus(t, r, http.StatusOK)
			if want := "v1.0.0\nv1.2.0\nv1.10.0\nv1.11.0-beta.1\n"; string(r.body) != want {
				t.Errorf("list = %q, want %q", r.body, want)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
			wantMutable(t, r)
		})

		t.Run("latest prefers a release to a higher pre-release", func(t *testing.T) {
			r := s.get(t, "/example.com/dl/@latest")
			wantStatus(t, r, http.StatusOK)
			info := decodeInfo(t, r)
			if info.Version != "v1.10.0" || !info.Time.Equal(published["v1.10.0"].Time) {
				t.Errorf("@latest = %+v, want v1.10.0 at %v", info, published["v1.10.0"].Time)
			}
			wantMutable(t, r)
		})

		m := mods["v1.2.0"]
		for _, tc := range []struct {
			file        string
			contentType string
			check       func(t *testing.T, r *response)
		}{
			{".info", "application/json", func(t *testing.T, r *response) {
				info := decodeInfo(t, r)
				if info.Version != "v1.2.0" || !info.Time.Equal(published["v1.2.0"].Time) {
					t.Errorf(".info = %+v, want v1.2.0 at %v", info, published["v1.2.0"].Time)
				}
			}},
			{".mod", "text/plain", func(t *testing.T, r *response) {
				if string(r.body) != m.GoMod {
					t.Errorf(".mod = %q, want %q", r.body, m.GoMod)
				}
			}},
			{".zip", "application/zip", func(t *testing.T, r *response) {
				if !bytes.Equal(r.body, m.Zip) {
					t.Errorf(".zip differs from the upload")
				}
				if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(m.Zip)) {
					t.Errorf("Content-Length = %q, want %d", got, len(m.Zip))
				}
			}},
		} {
			t.Run(tc.file, func(t *testing.T) {
				url := "/example.com/dl/@v/v1.2.0" + tc.file
				r := s.get(t, url)
				wantStatus(t, r, http.StatusOK)
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
					t.Errorf("Content-Type = %q, want %s", ct, tc.contentType)
				}
				tc.check(t, r)
				if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
					t.Errorf("Cache-Control = %q, want immutable", cc)
				}
				etag := r.header.Get("ETag")
				if etag == "" {
					t.Fatal("no ETag")
				}
				// The zip's hash pins its files, not its bytes: its
				// ETag is weak (see proxyHandler.serveFile).
				weak := tc.file == ".zip"
				if got := strings.HasPrefix(etag, `W/"`); got != weak {
					t.Errorf("ETag %s: weak %v, want %v", etag, got, weak)
				}
				again := s.get(t, url, withHeader("If-None-Match", etag))
				wantStatus(t, again, http.StatusNotModified)
				if len(again.body) != 0 {
					t.Errorf("304 with a body of %d bytes", len(again.body))
				}
				if other := s.get(t, url, withHeader("If-None-Match", `"something-else"`)); other.status != http.StatusOK {
					t.Errorf("If-None-Match of another ETag: %v, want 200", other)
				}

				// Files are answered without ServeContent when the
				// request has no conditions; If-Range without Range
				// sends the request through ServeContent, which must
				// answer with the same headers and body.
				plain, head := s.get(t, url), s.do(t, http.MethodHead, url, nil)
				viaServeContent := s.get(t, url, withHeader("If-Range", etag))
				wantStatus(t, viaServeContent, http.StatusOK)
				for _, h := range []http.Header{plain.header, head.header, viaServeContent.header} {
					h.Del("Date")
				}
				if !reflect.DeepEqual(plain.header, viaServeContent.header) || !bytes.Equal(plain.body, viaServeContent.body) {
					t.Errorf("plain GET: %v %v\nwant as ServeContent: %v %v", plain.header, plain, viaServeContent.header, viaServeContent)
				}
				if !reflect.DeepEqual(head.header, plain.header) || len(head.body) != 0 {
					t.Errorf("HEAD: %v, %d bytes of body\nwant %v and none", head.header, len(head.body), plain.header)
				}
				part := s.get(t, url, withHeader("Range", "bytes=1-"))
				wantStatus(t, part, http.StatusPartialContent)
				if !bytes.Equal(part.body, plain.body[1:]) {
					t.Errorf("bytes=1-: %q, want %q", part.body, plain.body[1:])
				}
				// If-Range compares strongly (RFC 9110 section 13.1.5):
				// the rest of the file for a strong ETag, the whole of
				// it for the zip's weak one.
				resumed := s.get(t, url, withHeader("Range", "bytes=1-"), withHeader("If-Range", etag))
				if want := plain.body[1:]; weak {
					wantStatus(t, resumed, http.StatusOK)
					if !bytes.Equal(resumed.body, plain.body) {
						t.Errorf("bytes=1- if %s: %d bytes, want the whole file's %d", etag, len(resumed.body), len(plain.body))
					}
				} else {
					wantStatus(t, resumed, http.StatusPartialContent)
					if !bytes.Equal(resumed.body, want) {
						t.Errorf("bytes=1- if %s: %q, want %q", etag, resumed.body, want)
					}
				}

				// A failed precondition is an answer about the request,
				// not the file: no cache may keep it as the file's.
				for _, failed := range []requestOption{
					withHeader("If-Match", `"something-else"`),
					withHeader("If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"),
				} {
					r := s.get(t, url, failed)
					wantStatus(t, r, http.StatusPreconditionFailed)
					wantUncachedFailure(t, r)
				}
				wantUncachedFailure(t, s.get(t, url, withHeader("Range", "bytes=100000-")))
			})
		}

		t.Run("ETags differ between versions", func(t *testing.T) {
			a := s.get(t, "/example.com/dl/@v/v1.0.0.zip").header.Get("ETag")
			b := s.get(t, "/example.com/dl/@v/v1.2.0.zip").header.Get("ETag")
			if a == b {
				t.Errorf("two versions share the ETag %s", a)
			}
		})

		t.Run("HEAD .zip", func(t *testing.T) {
			r := s.do(t, http.MethodHead, "/example.com/dl/@v/v1.2.0.zip", nil)
			wantStatus(t, r, http.StatusOK)
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(m.Zip)) {
				t.Errorf("Content-Length = %q, want %d", got, len(m.Zip))
			}
			if len(r.body) != 0 {
				t.Errorf("HEAD answered with a body of %d bytes", len(r.body))
			}
		})
	})
}

// wantUncachedFailure fails the test if the failure r carries headers of
// the file it failed to serve that would let caches keep it, or match it.
func wantUncachedFailure(t *testing.T, r *response) {
	t.Helper()
	if r.status < 400 {
		t.Errorf("status %v; want a failure", r)
	}
	for _, h := range []string{"Cache-Control", "ETag", "Last-Modified"} {
		if v := r.header.Get(h); v != "" && !(h == "Cache-Control" && v == "no-cache") {
			t.Errorf("%d with %s: %s", r.status, h, v)
		}
	}
	if ct := r.header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%d with Content-Type %q; want text/plain, or none", r.status, ct)
	}
}

// wantMutable fails the test if r may be cached as immutable.
func wantMutable(t *testing.T, r *response) {
	t.Helper()
	if cc := r.header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
		t.Errorf("Cache-Control = %q: list and @latest change", cc)
	}
}

// TestDownloadNotFound checks that what is not here is a plain-text 404,
// which sends the go command to the next proxy, and never a 500.
func TestDownloadNotFound(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		s.mustPublish(t, alice, newModule(t, "example.com/x", "v1.0.0", "x"))

		for _, path := range []string{
			"/example.com/unknown/@v/list",
			"/example.com/unknown/@v/v1.0.0.info",
			"/example.com/unknown/@v/v1.0.0.zip",
			"/example.com/unknown/@latest",
			"/example.com/x/@v/v9.9.9.info",
			"/example.com/x/@v/v9.9.9.mod",
			"/example.com/x/@v/v9.9.9.zip",
			"/example.com/x/@v/master.info",
			"/example.com/x/@v/v1.0.info",
			"/example.com/x/@v/v1.0.0.exe",
			"/example.com/x/@v/v1.0.0",
			"/example.com/x/@v/",
			"/example.com/x/@v/.info",
			"/example.com/x/@v/v1.0.0.info/extra",
			"/example.com/x/@v/V1.0.0.info",
			"/example.com/x/@v/v1.0.0.mod.zip",
			"/example.com/x/@v/..%2F..%2Fx.info",
			"/example.com/x/@v/v1.0.0%00.info",
			"/Example.com/x/@v/list",
			"/Example.com/x/@v/v1.0.0.info",
			"/example.com/!x/@v/list",
			"/@v/list",
			"/@latest",
			"/example.com/x/../x/@v/list",
			"/notamodule/@v/list",
			// Valid, but longer than Agora keeps (see checkPath): as
			// unknown as any path here, for the go command's prefix search.
			"/example.com/" + strings.Repeat("a", 300) + "/@v/list",
			"/example.com/" + strings.Repeat("a", 300) + "/@latest",
			"/example.com/x" + strings.Repeat("/abcdefghi", 52) + "/@v/list",
			"/example.com/x/@v/v1.0.0-" + strings.Repeat("a", 240) + ".info",
			"/example.com/x/@v/v2.0.0.mod", // no /v2 in the path
		} {
			t.Run(path, func(t *testing.T) {
				wantProtocolError(t, s.get(t, path), http.StatusNotFound)
			})
		}
	})
}

// TestDownloadGone checks that a deleted version is 410 Gone, also when it
// was served (and so remembered) before.
func TestDownloadGone(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
			s.mustPublish(t, alice, newModule(t, "example.com/g", v, v))
		}
		for _, f := range []string{".info", ".mod", ".zip"} {
			wantStatus(t, s.get(t, "/example.com/g/@v/v1.1.0"+f), http.StatusOK)
		}
		wantStatus(t, s.delete(t, alice, versionPath("example.com/g", "v1.1.0")+"?reason=leaked+a+secret"), http.StatusNoContent)
		wantStatus(t, s.delete(t, s.root, versionPath("example.com/g", "v1.2.0")+"?block=true"), http.StatusNoContent)
		// A reason of several lines, with a character that is not
		// printable, and longer than the go command prints of a line.
		longReason := "leaked\r\n\ta \x1b[31msecret\n" + strings.Repeat("and more ", 100)
		s.mustPublish(t, alice, newModule(t, "example.com/g", "v1.3.0", "v1.3.0"))
		wantStatus(t, s.delete(t, alice, versionPath("example.com/g", "v1.3.0")+"?reason="+url.QueryEscape(longReason)), http.StatusNoContent)
		long := s.get(t, "/example.com/g/@v/v1.3.0.info")
		wantProtocolError(t, long, http.StatusGone)
		if want := "gone: example.com/g@v1.3.0: deleted: leaked; a \uFFFD[31msecret; and more and more "; !strings.HasPrefix(string(long.body), want) {
			t.Errorf("410 with a long reason of several lines = %q; want it to start %q", long.body, want)
		}

		for _, v := range []string{"v1.1.0", "v1.2.0"} {
			for _, f := range []string{".info", ".mod", ".zip"} {
				t.Run(v+f, func(t *testing.T) {
					r := s.get(t, "/example.com/g/@v/"+v+f)
					wantProtocolError(t, r, http.StatusGone)
					if cc := r.header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
						t.Errorf("410 cached as immutable: %q", cc)
					}
					if v == "v1.1.0" && !strings.Contains(string(r.body), "leaked a secret") {
						t.Errorf("410 does not give the reason: %q", r.body)
					}
				})
			}
		}
		r := s.do(t, http.MethodHead, "/example.com/g/@v/v1.1.0.zip", nil)
		wantStatus(t, r, http.StatusGone)
		if got := s.get(t, "/example.com/g/@v/list"); string(got.body) != "v1.0.0\n" {
			t.Errorf("list = %q, want only v1.0.0", got.body)
		}
		if info := decodeInfo(t, s.get(t, "/example.com/g/@latest")); info.Version != "v1.0.0" {
			t.Errorf("@latest = %s, want v1.0.0", info.Version)
		}
		for _, v := range []string{"v1.1.0", "v1.2.0"} {
			if files := s.storedFiles(t, "example.com/g", v); len(files) > 0 {
				t.Errorf("a deleted version's files are still stored: %v", files)
			}
		}
		// Storage stays usable as GOPROXY=file://.
		list, err := os.ReadFile(filepath.Join(s.disk.Root(), "example.com", "g", "@v", "list"))
		if err != nil || string(list) != "v1.0.0\n" {
			t.Errorf("@v/list in storage = %q, %v; want v1.0.0", list, err)
		}
	})
}

// TestDownloadCaseEncoded round-trips a module path and a version with upper
// case letters, which the protocol and storage case-encode with '!'.
func TestDownloadCaseEncoded(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path = "example.com/Upper"
		release := newModule(t, path, "v1.0.0", "release")
		rc := newModule(t, path, "v1.0.0-RC1", "rc")

		resp := s.do(t, http.MethodPut, "/api/v1/modules/example.com/!upper/@v/v1.0.0-!r!c1.zip", bytes.NewReader(rc.Zip), bearer(alice))
		wantStatus(t, resp, http.StatusCreated)
		var v versionJSON
		decodeJSON(t, resp, &v)
		if v.Path != path || v.Version != "v1.0.0-RC1" {
			t.Errorf("published %s@%s, want %s@v1.0.0-RC1", v.Path, v.Version, path)
		}
		if got := resp.header.Get("Location"); got != "/api/v1/modules/example.com/!upper" {
			t.Errorf("Location = %q, want the case-encoded path", got)
		}
		// The path may also be written plainly in the API.
		resp = s.do(t, http.MethodPut, "/api/v1/modules/example.com/Upper/@v/v1.0.0.zip", bytes.NewReader(release.Zip), bearer(alice))
		wantStatus(t, resp, http.StatusCreated)

		if got := s.get(t, "/example.com/!upper/@v/list"); string(got.body) != "v1.0.0-RC1\nv1.0.0\n" {
			t.Errorf("list = %v", got)
		}
		if info := decodeInfo(t, s.get(t, "/example.com/!upper/@v/v1.0.0-!r!c1.info")); info.Version != "v1.0.0-RC1" {
			t.Errorf(".info Version = %q", info.Version)
		}
		if got := s.get(t, "/example.com/!upper/@v/v1.0.0-!r!c1.mod"); string(got.body) != rc.GoMod {
			t.Errorf(".mod = %v", got)
		}
		if got := s.get(t, "/example.com/!upper/@v/v1.0.0.zip"); !bytes.Equal(got.body, release.Zip) {
			t.Errorf(".zip = %d, %d bytes; want the upload", got.status, len(got.body))
		}
		if info := decodeInfo(t, s.get(t, "/example.com/!upper/@latest")); info.Version != "v1.0.0" {
			t.Errorf("@latest = %q", info.Version)
		}
		wantProtocolError(t, s.get(t, "/example.com/Upper/@v/list"), http.StatusNotFound)
		wantProtocolError(t, s.get(t, "/example.com/upper/@v/list"), http.StatusNotFound)

		var mod moduleJSON
		decodeJSON(t, s.get(t, "/api/v1/modules/example.com/!upper", bearer(alice)), &mod)
		if mod.Path != path || len(mod.Versions) != 2 {
			t.Errorf("API shows %+v", mod)
		}

		tree := s.storageTree(t)
		for _, want := range []string{
			"example.com/!upper/@v/list",
			"example.com/!upper/@v/v1.0.0-!r!c1.info",
			"example.com/!upper/@v/v1.0.0-!r!c1.mod",
			"example.com/!upper/@v/v1.0.0-!r!c1.zip",
			"example.com/!upper/@v/v1.0.0.zip",
		} {
			if !slices.Contains(tree, want) {
				t.Errorf("storage lacks %s; it holds %v", want, tree)
			}
		}
	})
}

func TestDownloadMethodNotAllowed(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		s.mustPublish(t, alice, newModule(t, "example.com/x", "v1.0.0", "x"))
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			for _, path := range []string{"/example.com/x/@v/list", "/example.com/x/@v/v1.0.0.zip", "/example.com/x/@latest"} {
				t.Run(method+" "+path, func(t *testing.T) {
					r := s.do(t, method, path, strings.NewReader("x"), bearer(alice))
					wantProtocolError(t, r, http.StatusMethodNotAllowed)
					if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
						t.Errorf("Allow = %q", allow)
					}
				})
			}
		}
		if got := s.get(t, "/example.com/x/@v/list"); string(got.body) != "v1.0.0\n" {
			t.Errorf("list = %v after refused methods", got)
		}
	})
}

// TestDownloadReadAuth checks AGORA_READ_AUTH=token: downloads need a token
// with read scope, which the go command sends as basic auth from .netrc.
func TestDownloadReadAuth(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn, readAuthToken)
		alice := s.token(t, "alice", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)
		s.mustPublish(t, alice, newModule(t, "example.com/private", "v1.0.0", "secret"))

		for _, path := range []string{
			"/example.com/private/@v/list",
			"/example.com/private/@v/v1.0.0.info",
			"/example.com/private/@v/v1.0.0.mod",
			"/example.com/private/@v/v1.0.0.zip",
			"/example.com/private/@latest",
			"/example.com/unknown/@v/list",
			// The checksum-database proxy too: its answers say which
			// modules are private. (None is proxied here: 404.)
			"/sumdb/sum.golang.org/supported",
			"/sumdb/sum.golang.org/lookup/example.com/private@v1.0.0",
		} {
			t.Run(path, func(t *testing.T) {
				for _, tc := range []struct {
					name string
					opts []requestOption
				}{
					{"no credentials", nil},
					{"malformed token", []requestOption{bearer("agora_nope")}},
					{"password instead of token", []requestOption{basicAuth("vera", "correct horse battery")}},
				} {
					r := s.get(t, path, tc.opts...)
					wantProtocolError(t, r, http.StatusUnauthorized)
					if r.header.Get("WWW-Authenticate") == "" {
						t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
					}
					if bytes.Contains(r.body, []byte("secret")) || bytes.Contains(r.body, []byte("v1.0.0")) {
						t.Errorf("%s: 401 reveals content: %q", tc.name, r.body)
					}
				}
				want := http.StatusOK
				if strings.Contains(path, "unknown") || strings.HasPrefix(path, "/sumdb/") {
					want = http.StatusNotFound
				}
				for _, opt := range []requestOption{basicAuth("vera", viewer), basicAuth("", viewer), bearer(viewer), bearer(alice)} {
					if r := s.get(t, path, opt); r.status != want {
						t.Errorf("with a token: %v, want %d", r, want)
					}
				}
			})
		}
	})
}

// TestDownloadPseudoVersions checks that pseudo-versions are listed only
// while a module has nothing else, and that @latest falls back to them.
func TestDownloadPseudoVersions(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const pseudo = "v0.0.0-20260101120000-abcdefabcdef"
		s.mustPublish(t, alice, newModule(t, "example.com/ps", pseudo, "pseudo"))
		if got := s.get(t, "/example.com/ps/@v/list"); string(got.body) != pseudo+"\n" {
			t.Errorf("list of pseudo-versions only = %v", got)
		}
		if info := decodeInfo(t, s.get(t, "/example.com/ps/@latest")); info.Version != pseudo {
			t.Errorf("@latest = %q, want %s", info.Version, pseudo)
		}
		s.mustPublish(t, alice, newModule(t, "example.com/ps", "v0.1.0-alpha", "alpha"))
		if got := s.get(t, "/example.com/ps/@v/list"); string(got.body) != "v0.1.0-alpha\n" {
			t.Errorf("list with a pre-release = %v", got)
		}
		if info := decodeInfo(t, s.get(t, "/example.com/ps/@latest")); info.Version != "v0.1.0-alpha" {
			t.Errorf("@latest = %q, want v0.1.0-alpha", info.Version)
		}
		wantStatus(t, s.get(t, "/example.com/ps/@v/"+pseudo+".info"), http.StatusOK)
	})
}

// TestDownloadInfoIsJSON checks that .info is the JSON the go command
// parses, with nothing but Version and Time (and no Origin for uploads).
func TestDownloadInfoIsJSON(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		s.mustPublish(t, alice, newModule(t, "example.com/j", "v0.1.0", "j"))
		for _, path := range []string{"/example.com/j/@v/v0.1.0.info", "/example.com/j/@latest"} {
			var fields map[string]any
			if err := json.Unmarshal(s.get(t, path).body, &fields); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, []string{"Time", "Version"}) {
				t.Errorf("%s has fields %v, want Time and Version", path, keys)
			}
		}
	})
}

// TestDownloadFileReplacedByDirectory checks a stored file that a
// directory took the place of (a restore gone wrong, a hand at work in
// the storage tree): an internal error, logged with the file's name, not a
// 200 whose Content-Length promises the directory's size and whose body
// never comes, which the go command reports as a truncated download and
// the server's log as a download served.
func TestDownloadFileReplacedByDirectory(t *testing.T) {
	var log lockedBuffer
	s := newServer(t, modelstest.Open(t, "sqlite3"), logTo(&log))
	alice := s.token(t, "alice", auth.RolePublisher)
	s.mustPublish(t, alice, newModule(t, "example.com/d", "v1.0.0", "a"))
	for _, f := range []string{".mod", ".zip"} {
		name := filepath.Join(s.disk.Root(), "example.com", "d", "@v", "v1.0.0"+f)
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		r := s.get(t, "/example.com/d/@v/v1.0.0"+f)
		wantProtocolError(t, r, http.StatusInternalServerError)
		if !strings.Contains(log.String(), name) {
			t.Errorf("GET %s: the log does not name %s:\n%s", f, name, log.String())
		}
	}
}
