package models_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
)

// newToken creates a user called name with a token of scope, and returns
// the token.
func newToken(t *testing.T, conn *pop.Connection, name string, scope auth.Scope) string {
	t.Helper()
	ctx := context.Background()
	if _, err := models.CreateUser(ctx, conn, "cli", name, auth.RoleViewer, ""); err != nil {
		t.Fatal(err)
	}
	tok, _, err := models.CreateToken(ctx, conn, "cli", name, "test", scope)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAuthenticateBesideAWriter checks that a download's authentication
// does not wait for a write transaction (on SQLite, the one writer), and
// that the token's last use is recorded all the same, once it can be.
func TestAuthenticateBesideAWriter(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		tok := newToken(t, conn, "ci", auth.ScopeRead)
		r := models.NewRegistry(conn)
		inside, release := make(chan struct{}), make(chan struct{})
		written := make(chan error, 1)
		go func() {
			written <- r.Update(ctx, func(tx modproxy.MetadataTx) error {
				if err := tx.InsertVersion(newVersion("example.com/w", "v1.0.0")); err != nil {
					return err
				}
				close(inside)
				<-release
				return nil
			})
		}()
		<-inside

		before := time.Now().UTC()
		authenticated := make(chan error, 1)
		go func() {
			p, err := models.Authenticate(ctx, conn, tok)
			if err == nil && p.User != "ci" {
				t.Errorf("Authenticate: %+v; want user ci", p)
			}
			authenticated <- err
		}()
		select {
		case err := <-authenticated:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(4 * time.Second): // below SQLite's busy timeout of 5 s
			close(release)
			t.Fatal("Authenticate still waits for an unrelated write transaction after 4 s")
		}
		close(release)
		if err := <-written; err != nil {
			t.Fatal(err)
		}

		if err := models.FlushTokenUses(ctx, conn); err != nil {
			t.Fatalf("FlushTokenUses: %v", err)
		}
		toks, err := models.Tokens(ctx, conn, "ci")
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) != 1 || toks[0].LastUsedAt == nil || toks[0].LastUsedAt.Before(before.Truncate(time.Second)) {
			t.Errorf("tokens after a use: %+v; want last_used_at recorded, at or after %v", toks, before)
		}
	})
}

// TestAuthenticateRecordsUseOncePerMinute checks that uses of a token
// within a minute of its recorded last use do not write it again.
func TestAuthenticateRecordsUseOncePerMinute(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		tok := newToken(t, conn, "ci", auth.ScopeRead)
		stamp := func() time.Time {
			t.Helper()
			if _, err := models.Authenticate(ctx, conn, tok); err != nil {
				t.Fatal(err)
			}
			if err := models.FlushTokenUses(ctx, conn); err != nil {
				t.Fatal(err)
			}
			toks, err := models.Tokens(ctx, conn, "ci")
			if err != nil || len(toks) != 1 || toks[0].LastUsedAt == nil {
				t.Fatalf("tokens after a use: %+v, %v; want one, with last_used_at", toks, err)
			}
			return *toks[0].LastUsedAt
		}
		first := stamp()
		if again := stamp(); !again.Equal(first) {
			t.Errorf("a use within a minute moved last_used_at from %v to %v", first, again)
		}
		old := first.Add(-2 * time.Minute)
		if err := conn.RawQuery("UPDATE tokens SET last_used_at = ?", old).Exec(); err != nil {
			t.Fatal(err)
		}
		if later := stamp(); !later.After(old) {
			t.Errorf("a use two minutes after the last left last_used_at at %v", later)
		}
	})
}

// TestCreateUserRace checks that a user created while another transaction
// creates one of the same name is a conflict, not an internal error: on
// PostgreSQL both find no such user, and the second's insert then waits
// for the first to commit and fails on the unique index.
func TestCreateUserRace(t *testing.T) {
	conn, _ := openPostgres(t)
	ctx := context.Background()
	first, err := conn.NewTransaction()
	if err != nil {
		t.Fatal(err)
	}
	err = first.RawQuery(`INSERT INTO users (name, role, password_hash, created_at, updated_at)
		VALUES ('bob', 'viewer', '', now(), now())`).Exec()
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan error, 1)
	go func() {
		_, err := models.CreateUser(ctx, conn, "cli", "bob", auth.RoleViewer, "")
		created <- err
	}()
	waitForLockOrDone(t, conn, created)
	if err := first.TX.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-created; !errors.Is(err, modproxy.ErrConflict) {
		t.Errorf("CreateUser of a name created meanwhile: %v; want ErrConflict", err)
	}
}

// TestAccountTimesInUTC checks that a user's and a token's times read back
// as the instants they were made at when the host's time zone is not UTC.
// PostgreSQL's timestamp columns keep no zone, and drop the offset of the
// local times Pop stamped created_at and updated_at with: in New York, a
// token made at 15:00 UTC was listed as made at 10:00.
func TestAccountTimesInUTC(t *testing.T) {
	local := time.Local
	time.Local = time.FixedZone("UTC-5", -5*60*60)
	t.Cleanup(func() { time.Local = local })
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		before := time.Now().Truncate(time.Second)
		newToken(t, conn, "ci", auth.ScopeRead)
		after := time.Now()
		u, err := models.UserByName(ctx, conn, "ci")
		if err != nil {
			t.Fatal(err)
		}
		toks, err := models.Tokens(ctx, conn, "ci")
		if err != nil || len(toks) != 1 {
			t.Fatalf("tokens: %+v, %v; want one", toks, err)
		}
		for name, at := range map[string]time.Time{
			"user created_at": u.CreatedAt, "user updated_at": u.UpdatedAt,
			"token created_at": toks[0].CreatedAt, "token updated_at": toks[0].UpdatedAt,
		} {
			if at.Before(before) || at.After(after) {
				t.Errorf("%s = %v; want between %v and %v", name, at.UTC(), before.UTC(), after.UTC())
			}
		}
	})
}

// TestRevokeTokenBeyondIDs checks that revoking a token whose id no token
// can have is not found on both databases: PostgreSQL took the id for its
// integer column's type, and failed the query.
func TestRevokeTokenBeyondIDs(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		err := models.RevokeToken(context.Background(), conn, "cli", 1<<31)
		if !errors.Is(err, models.ErrNotFound) {
			t.Errorf("RevokeToken(1<<31): %v; want ErrNotFound", err)
		}
	})
}

// TestRevokeTokenRace checks that a token revoked while another
// transaction revokes it is revoked once: on PostgreSQL both found it not
// revoked, and the second, once the first committed, moved its revoked_at
// and recorded a second revocation in the audit log, where on SQLite,
// whose writers take turns, the second found it revoked and changed
// nothing.
func TestRevokeTokenRace(t *testing.T) {
	conn, _ := openPostgres(t)
	ctx := context.Background()
	newToken(t, conn, "ci", auth.ScopeRead)
	toks, err := models.Tokens(ctx, conn, "ci")
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens: %+v, %v", toks, err)
	}
	id := toks[0].ID
	first, err := conn.NewTransaction()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.RawQuery("UPDATE tokens SET revoked_at = ?, updated_at = ? WHERE id = ?", t0, t0, id).Exec(); err != nil {
		t.Fatal(err)
	}
	revoked := make(chan error, 1)
	go func() { revoked <- models.RevokeToken(ctx, conn, "cli", id) }()
	waitForLockOrDone(t, conn, revoked)
	if err := first.TX.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-revoked; err != nil {
		t.Fatalf("RevokeToken of a token revoked meanwhile: %v", err)
	}
	toks, err = models.Tokens(ctx, conn, "ci")
	if err != nil || toks[0].RevokedAt == nil || !toks[0].RevokedAt.Equal(t0) {
		t.Errorf("revoked_at after a second revocation: %+v, %v; want %v", toks[0].RevokedAt, err, t0)
	}
	events, err := models.NewRegistry(conn).Audit(ctx, modproxy.AuditQuery{Action: modproxy.ActionTokenRevoke})
	if err != nil || len(events.Items) != 0 {
		t.Errorf("revocations in the audit log: %+v, %v; want none (the first was not audited)", events.Items, err)
	}
}

// TestCreateTokenRefusals checks the tokens CreateToken refuses: one whose
// name holds a control character, which would break the lines of agora
// token list that scripts read, and one for a user named as the command
// line acts, which builds before the name was reserved let anyone create
// and which serve warns about: its tokens are to be revoked, not added to.
func TestCreateTokenRefusals(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		if _, err := models.CreateUser(ctx, conn, "cli", "alice", auth.RoleViewer, ""); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"ci\tlaptop", "ci\nalice  7  read", "bell\x07", "del\x7f"} {
			if _, _, err := models.CreateToken(ctx, conn, "cli", "alice", name, auth.ScopeRead); !errors.Is(err, modproxy.ErrInvalid) {
				t.Errorf("token named %q: %v; want ErrInvalid", name, err)
			}
		}
		if _, _, err := models.CreateToken(ctx, conn, "cli", "alice", "CI — laptop", auth.ScopeRead); err != nil {
			t.Errorf("token named with spaces and a dash: %v", err)
		}

		now := time.Now().UTC()
		if err := conn.RawQuery("INSERT INTO users (name, role, created_at, updated_at) VALUES (?, ?, ?, ?)",
			auth.CommandLineActor, "publisher", now, now).Exec(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := models.CreateToken(ctx, conn, "cli", auth.CommandLineActor, "x", auth.ScopePublish); !errors.Is(err, auth.ErrReservedUserName) {
			t.Errorf("token for a user named %s: %v; want ErrReservedUserName", auth.CommandLineActor, err)
		}
	})
}
