package actions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"
	modzip "golang.org/x/mod/zip"

	"agora/actions"
	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
)

func TestPublishCreated(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		m := newModule(t, "example.com/hello", "v1.2.3", "hello")

		start := time.Now().Add(-time.Second)
		resp := s.publish(t, alice, m)
		wantStatus(t, resp, http.StatusCreated)
		if got, want := resp.header.Get("Location"), "/api/v1/modules/example.com/hello"; got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		var got versionJSON
		decodeJSON(t, resp, &got)
		want := versionJSON{
			Path:        m.Path,
			Version:     m.Version,
			Files:       []string{"info", "mod", "zip"},
			Size:        int64(len(m.Zip)),
			ZipHash:     m.ZipHash,
			GoModHash:   m.ModHash,
			GoSum:       []string{"example.com/hello v1.2.3 " + m.ZipHash, "example.com/hello v1.2.3/go.mod " + m.ModHash},
			Source:      "uploaded",
			PublishedBy: "alice",
			Status:      "live",
		}
		untimed := got
		untimed.Time, untimed.PublishedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(untimed, want) {
			t.Errorf("created version\n got %+v\nwant %+v", untimed, want)
		}
		end := time.Now().Add(time.Second)
		for name, at := range map[string]time.Time{"time": got.Time, "published_at": got.PublishedAt} {
			if at.Before(start) || at.After(end) {
				t.Errorf("%s = %v, want about now", name, at)
			}
		}
		// The version is served at once, with the content uploaded.
		zip := s.get(t, "/example.com/hello/@v/v1.2.3.zip")
		wantStatus(t, zip, http.StatusOK)
		if !bytes.Equal(zip.body, m.Zip) {
			t.Errorf("served zip differs from the upload")
		}
		s.wantNoUploadsLeft(t)
	})
}

// TestPublishLifecycle follows one version through re-uploads, a
// conflicting upload, deletion, restoration and blocking.
func TestPublishLifecycle(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path, version = "example.com/life", "v1.0.0"
		first := newModule(t, path, version, "first")
		other := newModule(t, path, version, "other")
		if first.ZipHash == other.ZipHash {
			t.Fatal("test modules have the same hash")
		}
		zipURL := "/example.com/life/@v/v1.0.0.zip"

		wantConflict := func(t *testing.T) {
			t.Helper()
			before := s.state(t, path, version)
			e := wantError(t, s.publish(t, alice, other), http.StatusConflict, "conflict")
			if e.RecordedHash != first.ZipHash || e.UploadedHash != other.ZipHash {
				t.Errorf("conflict hashes recorded=%q uploaded=%q, want %q and %q",
					e.RecordedHash, e.UploadedHash, first.ZipHash, other.ZipHash)
			}
			s.wantUnchanged(t, before, path, version)
		}

		s.mustPublish(t, alice, first)

		// An identical re-upload is a 200 and changes nothing.
		before := s.state(t, path, version)
		resp := s.publish(t, alice, first)
		wantStatus(t, resp, http.StatusOK)
		var v versionJSON
		decodeJSON(t, resp, &v)
		if v.ZipHash != first.ZipHash || v.Status != "live" {
			t.Errorf("identical re-upload answered %+v", v)
		}
		s.wantUnchanged(t, before, path, version)

		// Other content is a 409 naming both hashes.
		wantConflict(t)
		if got := s.get(t, zipURL); !bytes.Equal(got.body, first.Zip) {
			t.Errorf("after a conflict the served zip is not the first one: %v", got.status)
		}

		// Deleted, the version still refuses other content.
		wantStatus(t, s.delete(t, alice, versionPath(path, version)), http.StatusNoContent)
		wantProtocolError(t, s.get(t, zipURL), http.StatusGone)
		wantConflict(t)

		// Deleted, the original content restores it.
		s.mustPublish(t, alice, first)
		got := s.get(t, zipURL)
		wantStatus(t, got, http.StatusOK)
		if !bytes.Equal(got.body, first.Zip) {
			t.Errorf("restored zip differs from the original")
		}
		wantStatus(t, s.get(t, "/example.com/life/@v/v1.0.0.info"), http.StatusOK)
		if list := s.get(t, "/example.com/life/@v/list"); string(list.body) != "v1.0.0\n" {
			t.Errorf("list after restoring = %q", list.body)
		}

		// Blocked, it refuses even the original content.
		wantStatus(t, s.delete(t, s.root, versionPath(path, version)+"?block=true&reason=compromised"), http.StatusNoContent)
		before = s.state(t, path, version)
		wantError(t, s.publish(t, alice, first), http.StatusGone, "gone")
		s.wantNothingStored(t, before, path, version)
		wantConflict(t)
	})
}

// TestPublishUnauthorized checks that uploads without a usable token are
// refused before anything is stored, and that basic auth with the token as
// password works whatever the user name.
func TestPublishUnauthorized(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		ctx := context.Background()
		alice := s.token(t, "alice", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)
		revoked, tok := s.tokenFor(t, "alice", auth.ScopePublish)
		if err := models.RevokeToken(ctx, conn, "test", tok.ID); err != nil {
			t.Fatal(err)
		}
		unknown, _, _, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		m := newModule(t, "example.com/auth", "v1.0.0", "auth")

		for _, tc := range []struct {
			name   string
			opts   []requestOption
			status int
			code   string
		}{
			{"no credentials", nil, http.StatusUnauthorized, "unauthorized"},
			{"malformed bearer token", []requestOption{withHeader("Authorization", "Bearer not-a-token")}, http.StatusUnauthorized, "unauthorized"},
			{"empty bearer token", []requestOption{withHeader("Authorization", "Bearer ")}, http.StatusUnauthorized, "unauthorized"},
			{"unknown token", []requestOption{bearer(unknown)}, http.StatusUnauthorized, "unauthorized"},
			{"revoked token", []requestOption{bearer(revoked)}, http.StatusUnauthorized, "unauthorized"},
			{"revoked token as basic password", []requestOption{basicAuth("alice", revoked)}, http.StatusUnauthorized, "unauthorized"},
			{"password instead of token", []requestOption{basicAuth("alice", "correct horse battery")}, http.StatusUnauthorized, "unauthorized"},
			{"viewer token", []requestOption{bearer(viewer)}, http.StatusForbidden, "forbidden"},
			{"viewer token as basic password", []requestOption{basicAuth("vera", viewer)}, http.StatusForbidden, "forbidden"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.state(t, m.Path, m.Version)
				resp := s.do(t, http.MethodPut, uploadPath(m.Path, m.Version), bytes.NewReader(m.Zip), tc.opts...)
				if tc.status == http.StatusUnauthorized {
					wantUnauthorized(t, resp)
				} else {
					wantError(t, resp, tc.status, tc.code)
				}
				s.wantNothingStored(t, before, m.Path, m.Version)
			})
		}

		for i, user := range []string{"alice", "anyone", ""} {
			t.Run(fmt.Sprintf("basic auth as %q", user), func(t *testing.T) {
				m := newModule(t, "example.com/basic", fmt.Sprintf("v1.0.%d", i), "user "+user)
				resp := s.do(t, http.MethodPut, uploadPath(m.Path, m.Version), bytes.NewReader(m.Zip), basicAuth(user, alice))
				wantStatus(t, resp, http.StatusCreated)
				var v versionJSON
				decodeJSON(t, resp, &v)
				if v.PublishedBy != "alice" {
					t.Errorf("published_by = %q, want the token's user, alice", v.PublishedBy)
				}
			})
		}
	})
}

// TestPublishRejectsInvalid checks the 400s of uploads: each is refused with
// the rule it broke, and leaves nothing behind.
func TestPublishRejectsInvalid(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		// A published version, so that "unchanged" has something to show.
		s.mustPublish(t, alice, newModule(t, "example.com/bad", "v0.9.0", "good"))
		valid := newModule(t, "example.com/bad", "v1.0.0", "valid").Zip
		random := make([]byte, 4096)
		rand.Read(random)

		for _, tc := range []struct {
			name          string
			path, version string
			body          []byte
			wantMsg       string
		}{
			{"short version", "example.com/bad", "v1", valid, "not canonical"},
			{"query as version", "example.com/bad", "latest", valid, "not a semantic version"},
			{"four-part version", "example.com/bad", "v1.0.0.0", valid, "not a semantic version"},
			{"build metadata", "example.com/bad", "v1.0.0+build", valid, "not canonical"},
			{"v1 version for a /v2 path", "example.com/bad/v2", "v1.0.0", zipFixture(t, "v2_path_v1_version"), "v2"},
			{"file outside the prefix", "example.com/bad", "v1.0.0", zipFixture(t, "outside_prefix"), "does not have prefix"},
			{"go.mod of another module", "example.com/bad", "v1.0.0", zipFixture(t, "other_module"), `declares module "example.com/other"`},
			{"names differing only in case", "example.com/bad", "v1.0.0", zipFixture(t, "case_collision"), "case-insensitive file name collision"},
			{"no go.mod", "example.com/bad", "v1.0.0", zipFixture(t, "no_gomod"), "no go.mod"},
			{"not a zip", "example.com/bad", "v1.0.0", random, "not a valid module zip"},
			{"empty body", "example.com/bad", "v1.0.0", nil, "empty body"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.state(t, tc.path, tc.version)
				e := wantError(t, s.upload(t, alice, tc.path, tc.version, bytes.NewReader(tc.body)), http.StatusBadRequest, "invalid")
				if !strings.Contains(e.Error, tc.wantMsg) {
					t.Errorf("error %q does not mention %q", e.Error, tc.wantMsg)
				}
				s.wantNothingStored(t, before, tc.path, tc.version)
			})
		}
	})
}

// TestPublishIgnoresContentType is a regression test: Buffalo parsed bodies
// that claimed to be forms, as curl --data-binary's do, before the upload
// handler could read them.
func TestPublishIgnoresContentType(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		for i, ct := range []string{
			"application/x-www-form-urlencoded",
			"multipart/form-data; boundary=xyz",
			"application/zip",
			"application/octet-stream",
			"",
		} {
			name := ct
			if name == "" {
				name = "no Content-Type"
			}
			t.Run(name, func(t *testing.T) {
				m := newModule(t, "example.com/curl", fmt.Sprintf("v1.0.%d", i), "content type "+ct)
				var opts []requestOption
				if ct != "" {
					opts = append(opts, withHeader("Content-Type", ct))
				}
				resp := s.publish(t, alice, m, opts...)
				wantStatus(t, resp, http.StatusCreated)
				var v versionJSON
				decodeJSON(t, resp, &v)
				if v.Size != int64(len(m.Zip)) || v.ZipHash != m.ZipHash {
					t.Errorf("stored %d bytes with hash %s, want %d bytes with hash %s", v.Size, v.ZipHash, len(m.Zip), m.ZipHash)
				}
				if got := s.get(t, "/example.com/curl/@v/"+m.Version+".zip"); !bytes.Equal(got.body, m.Zip) {
					t.Errorf("served zip differs from the upload")
				}
			})
		}
	})
}

// TestPublishBrokenBody sends bodies that end before they should or are
// not valid HTTP: bad input, to be refused with a 400 like any other, and
// never an internal error.
func TestPublishBrokenBody(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		m := newModule(t, "example.com/broken", "v1.0.0", "broken")
		head := "PUT " + uploadPath(m.Path, m.Version) + " HTTP/1.1\r\nHost: agora.test\r\nAuthorization: Bearer " + alice + "\r\n"
		for _, tc := range []struct {
			name, request string
		}{
			{"truncated", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(m.Zip)) + string(m.Zip[:len(m.Zip)/2])},
			{"malformed chunk", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + string(m.Zip[:10]) + "\r\n"},
			{"unterminated chunks", head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n", len(m.Zip)) + string(m.Zip) + "\r\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.state(t, m.Path, m.Version)
				if r := s.raw(t, tc.request); r.status != http.StatusBadRequest {
					t.Errorf("status %v, want 400 invalid", r)
				} else {
					wantError(t, r, http.StatusBadRequest, "invalid")
				}
				s.wantNothingStored(t, before, m.Path, m.Version)
			})
		}
	})
}

// TestPublishStalledBody checks that an upload whose body stops coming is
// answered 408 once bodyStall passes without a byte, instead of holding its
// handler, its connection and its temporary file for as long as the client
// keeps the connection open.
func TestPublishStalledBody(t *testing.T) {
	actions.SetBodyStall(t, 200*time.Millisecond)
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		m := newModule(t, "example.com/stalled", "v1.0.0", "stalled")
		before := s.state(t, m.Path, m.Version)
		r := s.stalled(t, "PUT "+uploadPath(m.Path, m.Version)+" HTTP/1.1\r\nHost: agora.test\r\nAuthorization: Bearer "+alice+"\r\n"+
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(m.Zip))+string(m.Zip[:len(m.Zip)/2]))
		wantError(t, r, http.StatusRequestTimeout, "request_timeout")
		s.wantNothingStored(t, before, m.Path, m.Version)
		s.wantNoUploadsLeft(t)
	})
}

// zeros reads as an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestPublishTooLarge(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path, version = "example.com/huge", "v1.0.0"

		t.Run("declared length", func(t *testing.T) {
			// The body never yields a byte: the server must answer from
			// the Content-Length alone.
			before := s.state(t, path, version)
			body, w := io.Pipe()
			defer w.CloseWithError(io.ErrClosedPipe)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URL+uploadPath(path, version), body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = modzip.MaxZipFile + 1
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatalf("PUT with Content-Length over the limit: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, &response{status: resp.StatusCode, header: resp.Header, body: b}, http.StatusRequestEntityTooLarge, "too_large")
			s.wantNothingStored(t, before, path, version)
		})

		t.Run("streamed body", func(t *testing.T) {
			if testing.Short() {
				t.Skip("sends 500 MB")
			}
			// Chunked, so that only counting the bytes can find it too large.
			before := s.state(t, path, version)
			resp := s.upload(t, alice, path, version, io.LimitReader(zeros{}, modzip.MaxZipFile+1))
			wantError(t, resp, http.StatusRequestEntityTooLarge, "too_large")
			s.wantNothingStored(t, before, path, version)
		})
	})
}

// TestPublishConcurrent races uploads of one version with two contents:
// exactly one is created, every other is identical (200) or conflicting
// (409), and what is served is what was recorded.
func TestPublishConcurrent(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		const path, version = "example.com/race", "v1.0.0"
		contents := []*testModule{newModule(t, path, version, "red"), newModule(t, path, version, "blue")}

		uploads := make([]*testModule, 10)
		for i := range uploads {
			uploads[i] = contents[i%2]
		}
		responses := s.publishAtOnce(t, alice, uploads)

		var winner *testModule
		created, conflicts := 0, 0
		for i, r := range responses {
			if r.status == http.StatusCreated {
				created++
				winner = uploads[i]
			}
		}
		if created != 1 {
			for i, r := range responses {
				t.Logf("upload %d: %v", i, r)
			}
			t.Fatalf("%d uploads created the version, want exactly 1", created)
		}
		for i, r := range responses {
			switch {
			case r.status == http.StatusCreated:
			case uploads[i] == winner:
				wantStatus(t, r, http.StatusOK)
				var v versionJSON
				decodeJSON(t, r, &v)
				if v.ZipHash != winner.ZipHash {
					t.Errorf("upload %d: identical re-upload reports hash %s, want %s", i, v.ZipHash, winner.ZipHash)
				}
			default:
				conflicts++
				e := wantError(t, r, http.StatusConflict, "conflict")
				if e.RecordedHash != winner.ZipHash || e.UploadedHash != uploads[i].ZipHash {
					t.Errorf("upload %d: conflict recorded=%s uploaded=%s, want %s and %s", i, e.RecordedHash, e.UploadedHash, winner.ZipHash, uploads[i].ZipHash)
				}
			}
		}

		var mod moduleJSON
		decodeJSON(t, s.get(t, "/api/v1/modules/"+path, bearer(s.root)), &mod)
		if len(mod.Versions) != 1 || mod.Versions[0].ZipHash != winner.ZipHash {
			t.Fatalf("recorded versions %+v, want one with hash %s", mod.Versions, winner.ZipHash)
		}
		zip := s.get(t, "/"+path+"/@v/"+version+".zip")
		wantStatus(t, zip, http.StatusOK)
		if got := hashZip(t, zip.body); got != mod.Versions[0].ZipHash {
			t.Errorf("served zip has hash %s, recorded %s", got, mod.Versions[0].ZipHash)
		}
		if list := s.get(t, "/"+path+"/@v/list"); string(list.body) != version+"\n" {
			t.Errorf("list = %q", list.body)
		}
		s.wantNoUploadsLeft(t)

		// One publish and one rejection per conflict are audited.
		var audit auditPage
		decodeJSON(t, s.get(t, "/api/v1/audit?module="+path, bearer(s.root)), &audit)
		counts := map[string]int{}
		for _, e := range audit.Events {
			counts[e.Action]++
		}
		if counts["publish"] != 1 || counts["publish.rejected"] != conflicts {
			t.Errorf("audit counts %v, want 1 publish and %d publish.rejected", counts, conflicts)
		}
	})
}

// TestPublishConcurrentRestore races identical re-uploads of a deleted
// version: exactly one restores it, the others find it live.
func TestPublishConcurrentRestore(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		m := newModule(t, "example.com/phoenix", "v1.0.0", "phoenix")
		s.mustPublish(t, alice, m)
		wantStatus(t, s.delete(t, alice, versionPath(m.Path, m.Version)), http.StatusNoContent)

		responses := s.publishAtOnce(t, alice, slices.Repeat([]*testModule{m}, 10))
		counts := map[int]int{}
		for _, r := range responses {
			counts[r.status]++
		}
		if counts[http.StatusCreated] != 1 || counts[http.StatusOK] != len(responses)-1 {
			for i, r := range responses {
				t.Logf("upload %d: %v", i, r)
			}
			t.Fatalf("statuses %v, want one 201 and the rest 200", counts)
		}
		zip := s.get(t, "/example.com/phoenix/@v/v1.0.0.zip")
		wantStatus(t, zip, http.StatusOK)
		if !bytes.Equal(zip.body, m.Zip) {
			t.Errorf("restored zip differs from the upload")
		}
		s.wantNoUploadsLeft(t)
	})
}
