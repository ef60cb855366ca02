package actions_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models/modelstest"
)

// auditPage is GET /api/v1/audit.
type auditPage struct {
	Events     []auditEvent `json:"events"`
	NextCursor string       `json:"next_cursor"`
}

// auditEvent is an audit event as the API shows it.
type auditEvent struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Module  string    `json:"module"`
	Version string    `json:"version"`
	Detail  string    `json:"detail"`
}

// summary is what a test compares of an event.
func (e auditEvent) summary() string {
	return strings.Join([]string{e.Action, e.Actor, e.Module, e.Version}, " ")
}

func TestAudit(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		alice := s.token(t, "alice", auth.RolePublisher)
		bob := s.token(t, "bob", auth.RolePublisher)
		viewer := s.token(t, "vera", auth.RoleViewer)

		first := newModule(t, "example.com/aud", "v1.0.0", "first")
		s.mustPublish(t, alice, first)
		conflict := wantError(t, s.publish(t, alice, newModule(t, "example.com/aud", "v1.0.0", "other")), http.StatusConflict, "conflict")
		s.mustPublish(t, bob, newModule(t, "example.com/aud2", "v1.0.0", "bob's"))
		wantStatus(t, s.delete(t, s.root, versionPath("example.com/aud", "v1.0.0")+"?reason=cleanup"), http.StatusNoContent)

		audit := func(t *testing.T, query string) auditPage {
			t.Helper()
			r := s.get(t, "/api/v1/audit"+query, bearer(s.root))
			wantStatus(t, r, http.StatusOK)
			var p auditPage
			decodeJSON(t, r, &p)
			return p
		}
		moduleEvents := func(p auditPage) []string {
			var out []string
			for _, e := range p.Events {
				if e.Module != "" {
					out = append(out, e.summary())
				}
			}
			return out
		}

		all := audit(t, "")
		t.Run("newest first, with actors", func(t *testing.T) {
			want := []string{
				"delete root example.com/aud v1.0.0",
				"publish bob example.com/aud2 v1.0.0",
				"publish.rejected alice example.com/aud v1.0.0",
				"publish alice example.com/aud v1.0.0",
			}
			if got := moduleEvents(all); !slices.Equal(got, want) {
				t.Errorf("events\n got %q\nwant %q", got, want)
			}
			for i := 1; i < len(all.Events); i++ {
				if all.Events[i].ID >= all.Events[i-1].ID {
					t.Errorf("events not newest first: id %d after %d", all.Events[i].ID, all.Events[i-1].ID)
				}
			}
			for _, e := range all.Events {
				switch e.Action {
				case "publish.rejected":
					if !strings.Contains(e.Detail, conflict.RecordedHash) || !strings.Contains(e.Detail, conflict.UploadedHash) {
						t.Errorf("rejection detail %q does not name both hashes", e.Detail)
					}
				case "delete":
					if e.Detail != "cleanup" {
						t.Errorf("delete detail %q, want the reason", e.Detail)
					}
				}
				if e.At.IsZero() || time.Since(e.At) > time.Hour {
					t.Errorf("event %d at %v", e.ID, e.At)
				}
			}
		})

		now := time.Now().UTC().Truncate(time.Second)
		past := url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339))
		future := url.QueryEscape(now.Add(time.Hour).Format(time.RFC3339))
		for _, tc := range []struct {
			query string
			want  []string
		}{
			{"?actor=alice", []string{"publish.rejected alice example.com/aud v1.0.0", "publish alice example.com/aud v1.0.0"}},
			{"?action=delete", []string{"delete root example.com/aud v1.0.0"}},
			{"?module=example.com/aud2", []string{"publish bob example.com/aud2 v1.0.0"}},
			{"?module=example.com/aud&action=publish", []string{"publish alice example.com/aud v1.0.0"}},
			{"?actor=bob&action=delete", nil},
			{"?actor=nobody", nil},
			{"?since=" + future, nil},
			{"?until=" + past, nil},
			{"?since=" + past + "&until=" + future, moduleEvents(all)},
			{"?since=" + past, moduleEvents(all)},
		} {
			t.Run(tc.query, func(t *testing.T) {
				p := audit(t, tc.query)
				if got := moduleEvents(p); !slices.Equal(got, tc.want) {
					t.Errorf("events\n got %q\nwant %q", got, tc.want)
				}
				if strings.Contains(tc.query, "actor=") || strings.Contains(tc.query, "module=") || strings.Contains(tc.query, "action=") {
					if len(p.Events) != len(tc.want) {
						t.Errorf("%d events, want %d", len(p.Events), len(tc.want))
					}
				}
			})
		}

		t.Run("since is inclusive, until exclusive", func(t *testing.T) {
			for _, e := range all.Events {
				if e.Module == "" {
					continue
				}
				at := url.QueryEscape(e.At.Format(time.RFC3339Nano))
				if !slices.ContainsFunc(audit(t, "?since="+at).Events, func(x auditEvent) bool { return x.ID == e.ID }) {
					t.Errorf("since=%s leaves out the event at that time: %s", e.At.Format(time.RFC3339Nano), e.summary())
				}
				if slices.ContainsFunc(audit(t, "?until="+at).Events, func(x auditEvent) bool { return x.ID == e.ID }) {
					t.Errorf("until=%s includes the event at that time: %s", e.At.Format(time.RFC3339Nano), e.summary())
				}
			}
		})

		t.Run("pages of one", func(t *testing.T) {
			var got []int64
			cursor := ""
			for range len(all.Events) + 1 {
				p := audit(t, "?limit=1&cursor="+url.QueryEscape(cursor))
				if len(p.Events) > 1 {
					t.Fatalf("a page of %d events with limit=1", len(p.Events))
				}
				for _, e := range p.Events {
					got = append(got, e.ID)
				}
				if cursor = p.NextCursor; cursor == "" {
					break
				}
			}
			var want []int64
			for _, e := range all.Events {
				want = append(want, e.ID)
			}
			if !slices.Equal(got, want) || cursor != "" {
				t.Errorf("pages gave ids %v (last cursor %q), want %v", got, cursor, want)
			}
		})

		t.Run("pages with a filter", func(t *testing.T) {
			p := audit(t, "?actor=alice&limit=1")
			if len(p.Events) != 1 || p.NextCursor == "" {
				t.Fatalf("first page %+v", p)
			}
			p = audit(t, "?actor=alice&limit=1&cursor="+url.QueryEscape(p.NextCursor))
			if got := moduleEvents(p); !slices.Equal(got, []string{"publish alice example.com/aud v1.0.0"}) {
				t.Errorf("second page %q", got)
			}
		})

		for _, query := range []string{
			"?since=yesterday",
			"?since=2026-01-01",
			"?until=2026-01-01%2010:00:00",
			"?since=" + future + "&until=" + past,
			"?limit=abc",
			"?limit=100000",
			"?cursor=%25%25%25",
			"?cursor=YWJj", // base64 of "abc", not an event id
		} {
			t.Run(query, func(t *testing.T) {
				wantError(t, s.get(t, "/api/v1/audit"+query, bearer(s.root)), http.StatusBadRequest, "invalid")
			})
		}

		t.Run("administrators only", func(t *testing.T) {
			wantError(t, s.get(t, "/api/v1/audit", bearer(alice)), http.StatusForbidden, "forbidden")
			wantError(t, s.get(t, "/api/v1/audit", bearer(viewer)), http.StatusForbidden, "forbidden")
			// A publisher's token created with admin scope is capped to
			// publish.
			s.user(t, "mallory", auth.RolePublisher)
			escalated, _ := s.tokenFor(t, "mallory", auth.ScopeAdmin)
			wantError(t, s.get(t, "/api/v1/audit", bearer(escalated)), http.StatusForbidden, "forbidden")
			wantUnauthorized(t, s.get(t, "/api/v1/audit"))
		})
	})
}
