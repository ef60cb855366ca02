package actions_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
)

// whoamiJSON is GET /api/v1/whoami.
type whoamiJSON struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	Scope   string `json:"scope"`
	TokenID int64  `json:"token_id"`
}

// TestAPIUnauthorized checks that API requests without a usable token are
// refused alike, with a challenge that names both schemes.
func TestAPIUnauthorized(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		s.user(t, "alice", auth.RolePublisher)
		revoked, tok := s.tokenFor(t, "alice", auth.ScopePublish)
		wantStatus(t, s.get(t, "/api/v1/whoami", bearer(revoked)), http.StatusOK)
		if err := models.RevokeToken(context.Background(), conn, "test", tok.ID); err != nil {
			t.Fatal(err)
		}
		unknown, _, _, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}

		var bodies []string
		for _, tc := range []struct {
			name string
			opts []requestOption
			// bad is set when the request carries credentials, which
			// are then refused alike whatever is wrong with them.
			bad bool
		}{
			{"no credentials", nil, false},
			{"unknown scheme", []requestOption{withHeader("Authorization", "Token "+unknown)}, false},
			{"malformed token", []requestOption{bearer("not-a-token")}, true},
			{"unknown token", []requestOption{bearer(unknown)}, true},
			{"revoked token", []requestOption{bearer(revoked)}, true},
			{"revoked token as basic password", []requestOption{basicAuth("alice", revoked)}, true},
			{"password instead of token", []requestOption{basicAuth("alice", "correct horse battery")}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.get(t, "/api/v1/whoami", tc.opts...)
				wantUnauthorized(t, r)
				if ch := r.header.Get("WWW-Authenticate"); ch != `Basic realm="agora", Bearer realm="agora"` {
					t.Errorf("WWW-Authenticate = %q", ch)
				}
				if tc.bad {
					bodies = append(bodies, string(r.body))
				}
			})
		}
		// Bad credentials all look the same, whatever was wrong with them.
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("401 bodies differ:\n%s\n%s", bodies[0], b)
			}
		}
	})
}

// TestWhoami checks the identity a token acts as, through bearer and basic
// auth, with its scope capped by its user's role.
func TestWhoami(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		s.user(t, "ada", auth.RoleAdmin)
		s.user(t, "pat", auth.RolePublisher)
		s.user(t, "vic", auth.RoleViewer)
		for _, tc := range []struct {
			user      string
			scope     auth.Scope
			wantRole  string
			wantScope string
		}{
			{"ada", auth.ScopeAdmin, "admin", "admin"},
			{"ada", auth.ScopeRead, "admin", "read"},
			{"pat", auth.ScopePublish, "publisher", "publish"},
			{"pat", auth.ScopeAdmin, "publisher", "publish"},
			{"pat", auth.ScopeRead, "publisher", "read"},
			{"vic", auth.ScopeAdmin, "viewer", "read"},
			{"vic", auth.ScopeRead, "viewer", "read"},
		} {
			t.Run(tc.user+" "+tc.scope.String(), func(t *testing.T) {
				plain, tok := s.tokenFor(t, tc.user, tc.scope)
				for _, opt := range []requestOption{bearer(plain), basicAuth("x", plain), basicAuth(tc.user, plain)} {
					r := s.get(t, "/api/v1/whoami", opt)
					wantStatus(t, r, http.StatusOK)
					var got whoamiJSON
					decodeJSON(t, r, &got)
					want := whoamiJSON{User: tc.user, Role: tc.wantRole, Scope: tc.wantScope, TokenID: tok.ID}
					if got != want {
						t.Errorf("whoami = %+v, want %+v", got, want)
					}
				}
			})
		}
	})
}
