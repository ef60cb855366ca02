package actions_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models/modelstest"
)

// modulesPage is GET /api/v1/modules.
type modulesPage struct {
	Modules []struct {
		Path     string `json:"path"`
		Latest   string `json:"latest"`
		Versions int    `json:"versions"`
	} `json:"modules"`
	NextCursor string `json:"next_cursor"`
}

// paths returns the module paths of the page.
func (p modulesPage) paths() []string {
	var paths []string
	for _, m := range p.Modules {
		paths = append(paths, m.Path)
	}
	return paths
}

func TestDeleteVersion(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		m := newModule(t, "example.com/del", "v1.0.0", "del")
		s.mustPublish(t, alice, m)

		wantStatus(t, s.delete(t, alice, versionPath(m.Path, m.Version)), http.StatusNoContent)
		for _, f := range []string{".info", ".mod", ".zip"} {
			wantProtocolError(t, s.get(t, "/example.com/del/@v/v1.0.0"+f), http.StatusGone)
		}
		before := s.state(t, m.Path, m.Version)
		wantError(t, s.delete(t, alice, versionPath(m.Path, m.Version)), http.StatusGone, "gone")
		s.wantUnchanged(t, before, m.Path, m.Version)

		wantError(t, s.delete(t, alice, versionPath(m.Path, "v1.9.9")), http.StatusNotFound, "not_found")
		wantError(t, s.delete(t, alice, versionPath("example.com/unknown", "v1.0.0")), http.StatusNotFound, "not_found")
		wantError(t, s.delete(t, alice, versionPath(m.Path, "latest")), http.StatusBadRequest, "invalid")
		wantError(t, s.delete(t, alice, versionPath(m.Path, "v1.0.0")+"?block=maybe"), http.StatusBadRequest, "invalid")

		// Reasons are bounded and must be text.
		live := newModule(t, "example.com/del", "v1.1.0", "live")
		s.mustPublish(t, alice, live)
		for _, reason := range []string{strings.Repeat("x", 1001), "%ff%fe"} {
			before := s.state(t, live.Path, live.Version)
			wantError(t, s.delete(t, alice, versionPath(live.Path, live.Version)+"?reason="+reason), http.StatusBadRequest, "invalid")
			s.wantUnchanged(t, before, live.Path, live.Version)
		}
		wantStatus(t, s.delete(t, alice, versionPath(live.Path, live.Version)+"?reason="+strings.Repeat("x", 1000)), http.StatusNoContent)
		wantUnauthorized(t, s.do(t, http.MethodDelete, versionPath(m.Path, m.Version), nil))
	})
}

// TestDeleteForbidden checks who may not delete, block or purge, and that
// a refusal changes nothing.
func TestDeleteForbidden(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		bob := s.token(t, "bob", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)
		m := newModule(t, "example.com/owned", "v1.0.0", "alice's")
		s.mustPublish(t, alice, m)

		for _, tc := range []struct {
			name, token, query string
		}{
			{"another publisher deletes", bob, ""},
			{"another publisher deletes the module", bob, "module"},
			{"a viewer deletes", viewer, ""},
			{"the publisher blocks", alice, "?block=true"},
			{"the publisher purges", alice, "?purge=true&reason=mine"},
			{"another publisher purges", bob, "?purge=true&reason=mine"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.state(t, m.Path, m.Version)
				target := versionPath(m.Path, m.Version) + tc.query
				if tc.query == "module" {
					target = "/api/v1/modules/" + m.Path
				}
				wantError(t, s.delete(t, tc.token, target), http.StatusForbidden, "forbidden")
				s.wantUnchanged(t, before, m.Path, m.Version)
			})
		}
		// The version is still served.
		wantStatus(t, s.get(t, "/example.com/owned/@v/v1.0.0.zip"), http.StatusOK)
	})
}

func TestDeleteModule(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path = "example.com/whole"
		versions := []string{"v1.0.0", "v1.1.0", "v1.2.0-pre"}
		for _, v := range versions {
			s.mustPublish(t, alice, newModule(t, path, v, v))
		}
		// A module sharing the prefix is not touched.
		s.mustPublish(t, alice, newModule(t, "example.com/whole-other", "v1.0.0", "other"))

		wantStatus(t, s.delete(t, alice, "/api/v1/modules/"+path+"?reason=retired"), http.StatusNoContent)
		list := s.get(t, "/example.com/whole/@v/list")
		wantStatus(t, list, http.StatusOK)
		if len(list.body) != 0 {
			t.Errorf("list after deleting the module = %q, want empty", list.body)
		}
		for _, v := range versions {
			wantProtocolError(t, s.get(t, "/"+path+"/@v/"+escapeVersion(v)+".info"), http.StatusGone)
			if files := s.storedFiles(t, path, v); len(files) > 0 {
				t.Errorf("%s: files still stored: %v", v, files)
			}
		}
		wantProtocolError(t, s.get(t, "/example.com/whole/@latest"), http.StatusNotFound)
		if tree := s.storageTree(t); slices.Contains(tree, "example.com/whole/@v/list") {
			t.Errorf("storage still lists the deleted module: %v", tree)
		}

		var mod moduleJSON
		decodeJSON(t, s.get(t, "/api/v1/modules/"+path, bearer(alice)), &mod)
		for _, v := range mod.Versions {
			if v.Status != "deleted" || v.DeletedBy != "alice" || v.DeleteReason != "retired" {
				t.Errorf("after deleting the module: %+v", v)
			}
		}
		wantError(t, s.delete(t, alice, "/api/v1/modules/"+path), http.StatusGone, "gone")
		wantError(t, s.delete(t, alice, "/api/v1/modules/example.com/never"), http.StatusNotFound, "not_found")

		if got := s.get(t, "/example.com/whole-other/@v/list"); string(got.body) != "v1.0.0\n" {
			t.Errorf("a module sharing the prefix: list = %v", got)
		}
	})
}

func TestPurge(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path, version = "example.com/purged", "v1.0.0"
		first := newModule(t, path, version, "leaked credentials")
		second := newModule(t, path, version, "clean")
		s.mustPublish(t, alice, first)

		for _, tc := range []struct {
			name, query string
		}{
			{"block and purge", "?block=true&purge=true&reason=x"},
			{"purge without a reason", "?purge=true"},
			{"purge=maybe", "?purge=maybe&reason=x"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.state(t, path, version)
				wantError(t, s.delete(t, s.root, versionPath(path, version)+tc.query), http.StatusBadRequest, "invalid")
				s.wantUnchanged(t, before, path, version)
			})
		}
		wantError(t, s.delete(t, s.root, "/api/v1/modules/"+path+"?purge=true&reason=x"), http.StatusBadRequest, "invalid")

		q := url.Values{"purge": {"true"}, "reason": {"it held credentials"}}
		wantStatus(t, s.delete(t, s.root, versionPath(path, version)+"?"+q.Encode()), http.StatusNoContent)
		wantProtocolError(t, s.get(t, "/example.com/purged/@v/v1.0.0.zip"), http.StatusNotFound)

		created := s.mustPublish(t, alice, second)
		if created.ZipHash != second.ZipHash {
			t.Errorf("republished with hash %s, want %s", created.ZipHash, second.ZipHash)
		}
		zip := s.get(t, "/example.com/purged/@v/v1.0.0.zip")
		wantStatus(t, zip, http.StatusOK)
		if hashZip(t, zip.body) != second.ZipHash {
			t.Errorf("served zip is not the republished one")
		}
		wantError(t, s.delete(t, s.root, versionPath(path, "v1.9.9")+"?purge=true&reason=x"), http.StatusNotFound, "not_found")

		var audit auditPage
		decodeJSON(t, s.get(t, "/api/v1/audit?action=purge", bearer(s.root)), &audit)
		if len(audit.Events) != 1 || audit.Events[0].Actor != "root" || audit.Events[0].Module != path {
			t.Errorf("purge audit events: %+v", audit.Events)
		}
	})
}

func TestListModules(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)
		all := []string{"example.com/a", "example.com/a-b", "example.com/a/v2", "example.com/b", "other.org/c"}
		for _, p := range []string{"other.org/c", "example.com/a/v2", "example.com/b", "example.com/a", "example.com/a-b"} {
			v := "v1.0.0"
			if p == "example.com/a/v2" {
				v = "v2.0.0"
			}
			s.mustPublish(t, alice, newModule(t, p, v, p))
		}
		s.mustPublish(t, alice, newModule(t, "example.com/a", "v1.1.0", "a 1.1"))
		s.mustPublish(t, alice, newModule(t, "example.com/a", "v1.2.0-rc.1", "a 1.2 rc"))

		list := func(t *testing.T, query string) modulesPage {
			t.Helper()
			r := s.get(t, "/api/v1/modules"+query, bearer(viewer))
			wantStatus(t, r, http.StatusOK)
			var p modulesPage
			decodeJSON(t, r, &p)
			return p
		}

		t.Run("everything", func(t *testing.T) {
			p := list(t, "")
			if !slices.Equal(p.paths(), all) || p.NextCursor != "" {
				t.Errorf("modules %v next %q, want %v", p.paths(), p.NextCursor, all)
			}
			for _, m := range p.Modules {
				if m.Path == "example.com/a" && (m.Latest != "v1.1.0" || m.Versions != 3) {
					t.Errorf("example.com/a: latest %s, %d versions; want v1.1.0, 3", m.Latest, m.Versions)
				}
			}
		})

		for _, tc := range []struct {
			q    string
			want []string
		}{
			{"example.com/a", []string{"example.com/a", "example.com/a-b", "example.com/a/v2"}},
			{"example.com/a/", []string{"example.com/a/v2"}},
			{"other", []string{"other.org/c"}},
			{"example.com/z", nil},
			{"com", nil},
			// The prefix is text, not a pattern.
			{"%", nil},
			{"example.com/_", nil},
			{"example.com/a%", nil},
		} {
			t.Run("q="+tc.q, func(t *testing.T) {
				p := list(t, "?q="+url.QueryEscape(tc.q))
				if !slices.Equal(p.paths(), tc.want) {
					t.Errorf("modules %v, want %v", p.paths(), tc.want)
				}
			})
		}

		t.Run("pages of one", func(t *testing.T) {
			var got []string
			cursor := ""
			for range len(all) + 1 {
				p := list(t, "?limit=1&cursor="+url.QueryEscape(cursor))
				if len(p.Modules) > 1 {
					t.Fatalf("a page of %d modules with limit=1", len(p.Modules))
				}
				got = append(got, p.paths()...)
				if cursor = p.NextCursor; cursor == "" {
					break
				}
			}
			if !slices.Equal(got, all) || cursor != "" {
				t.Errorf("pages gave %v (last cursor %q), want %v", got, cursor, all)
			}
		})

		t.Run("pages with a prefix", func(t *testing.T) {
			p := list(t, "?q=example.com/a&limit=2")
			if !slices.Equal(p.paths(), []string{"example.com/a", "example.com/a-b"}) || p.NextCursor == "" {
				t.Fatalf("first page %v next %q", p.paths(), p.NextCursor)
			}
			p = list(t, "?q=example.com/a&limit=2&cursor="+url.QueryEscape(p.NextCursor))
			if !slices.Equal(p.paths(), []string{"example.com/a/v2"}) || p.NextCursor != "" {
				t.Errorf("second page %v next %q", p.paths(), p.NextCursor)
			}
		})

		for _, query := range []string{"?limit=abc", "?limit=100000", "?limit=-1", "?cursor=not%20base64!", "?cursor=%25%25%25"} {
			t.Run(query, func(t *testing.T) {
				wantError(t, s.get(t, "/api/v1/modules"+query, bearer(viewer)), http.StatusBadRequest, "invalid")
			})
		}
		wantUnauthorized(t, s.get(t, "/api/v1/modules"))
	})
}

func TestShowModule(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)
		const path = "example.com/show"
		mods := map[string]*testModule{}
		for _, v := range []string{"v1.10.0", "v1.2.0", "v1.9.0"} {
			mods[v] = newModule(t, path, v, v)
			s.mustPublish(t, alice, mods[v])
		}
		wantStatus(t, s.delete(t, alice, versionPath(path, "v1.2.0")+"?reason=broken+build"), http.StatusNoContent)
		wantStatus(t, s.delete(t, s.root, versionPath(path, "v1.9.0")+"?block=true&reason=malware"), http.StatusNoContent)

		r := s.get(t, "/api/v1/modules/"+path, bearer(viewer))
		wantStatus(t, r, http.StatusOK)
		var mod moduleJSON
		decodeJSON(t, r, &mod)
		if mod.Path != path || len(mod.Versions) != 3 {
			t.Fatalf("module %+v", mod)
		}
		for i, want := range []struct {
			version, status, deletedBy, reason string
		}{
			{"v1.2.0", "deleted", "alice", "broken build"},
			{"v1.9.0", "blocked", "root", "malware"},
			{"v1.10.0", "live", "", ""},
		} {
			v := mod.Versions[i]
			if v.Version != want.version || v.Status != want.status || v.DeletedBy != want.deletedBy || v.DeleteReason != want.reason {
				t.Errorf("version %d: %s %s by %q (%q), want %+v", i, v.Version, v.Status, v.DeletedBy, v.DeleteReason, want)
			}
			if (v.DeletedAt != nil) != (want.status != "live") {
				t.Errorf("%s: deleted_at = %v with status %s", v.Version, v.DeletedAt, v.Status)
			}
			if m := mods[v.Version]; v.ZipHash != m.ZipHash || v.GoModHash != m.ModHash || v.Size != int64(len(m.Zip)) || v.PublishedBy != "alice" {
				t.Errorf("%s: %+v does not describe the upload", v.Version, v)
			}
			m := mods[v.Version]
			wantSum := []string{path + " " + v.Version + " " + m.ZipHash, path + " " + v.Version + "/go.mod " + m.ModHash}
			if !slices.Equal(v.GoSum, wantSum) {
				t.Errorf("%s: gosum %q, want %q", v.Version, v.GoSum, wantSum)
			}
			wantFiles := []string{"info", "mod", "zip"}
			if want.status != "live" {
				wantFiles = []string{} // not served any more
			}
			if !slices.Equal(v.Files, wantFiles) {
				t.Errorf("%s (%s): files %q, want %q", v.Version, v.Status, v.Files, wantFiles)
			}
		}

		wantError(t, s.get(t, "/api/v1/modules/example.com/unknown", bearer(viewer)), http.StatusNotFound, "not_found")
		wantError(t, s.get(t, "/api/v1/modules/notamodule", bearer(viewer)), http.StatusBadRequest, "invalid")
		wantUnauthorized(t, s.get(t, "/api/v1/modules/"+path))
	})
}

// TestAPIQueryTextRefused checks that query parameters that no text in the
// database can hold (invalid UTF-8, a NUL byte), raw or in a decoded
// cursor, are the client's mistake, 400, and not the database's error,
// and that nothing is deleted on a reason with one.
func TestAPIQueryTextRefused(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		m := newModule(t, "example.com/q", "v1.0.0", "x")
		s.mustPublish(t, s.root, m)
		for _, tt := range []struct{ method, path string }{
			{http.MethodGet, "/api/v1/modules?q=%FF"},
			{http.MethodGet, "/api/v1/modules?q=%00"},
			{http.MethodGet, "/api/v1/modules?cursor=AA"}, // "\x00"
			{http.MethodGet, "/api/v1/modules?cursor=_w"}, // "\xff"
			{http.MethodGet, "/api/v1/audit?actor=%FF"},
			{http.MethodGet, "/api/v1/audit?module=%00"},
			{http.MethodGet, "/api/v1/audit?action=%C3"},
			{http.MethodGet, "/api/v1/modules?%FF=x"},
			{http.MethodDelete, "/api/v1/modules/example.com/q/@v/v1.0.0?reason=a%00b"},
			{http.MethodDelete, "/api/v1/modules/example.com/q?reason=%FF"},
		} {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				wantError(t, s.do(t, tt.method, tt.path, nil, bearer(s.root)), http.StatusBadRequest, "invalid")
			})
		}
		wantStatus(t, s.get(t, protoPath(m.Path, m.Version)+".zip"), http.StatusOK)
	})
}
