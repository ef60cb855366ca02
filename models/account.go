package models

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/modproxy"
)

// User is a person or robot that may sign in or hold tokens.
type User struct {
	ID           int64     `db:"id" json:"id"`
	Name         string    `db:"name" json:"name"`
	Role         string    `db:"role" json:"role"`
	PasswordHash string    `db:"password_hash" json:"-"`
	CreatedAt    time.Time `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time `db:"updated_at" json:"updated_at"`
}

// Token is an API token. Only its hash and a short display prefix are kept.
type Token struct {
	ID         int64      `db:"id" json:"id"`
	UserID     int64      `db:"user_id" json:"user_id"`
	Name       string     `db:"name" json:"name"`
	Display    string     `db:"display" json:"display"`
	Hash       string     `db:"hash" json:"-"`
	Scope      string     `db:"scope" json:"scope"`
	LastUsedAt *time.Time `db:"last_used_at" json:"last_used_at"`
	RevokedAt  *time.Time `db:"revoked_at" json:"revoked_at"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at" json:"updated_at"`
}

// CreateUser adds a user with the given role. An empty password makes a
// user that can only use tokens (a robot, or a person before first sign-in).
// actor names who asked, for the audit log.
func CreateUser(ctx context.Context, conn *pop.Connection, actor, name string, role auth.Role, password string) (*User, error) {
	if err := auth.CheckUserName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", modproxy.ErrInvalid, err)
	}
	if _, err := auth.ParseRole(string(role)); err != nil {
		return nil, fmt.Errorf("%w: %v", modproxy.ErrInvalid, err)
	}
	u := &User{Name: name, Role: string(role)}
	if password != "" {
		h, err := auth.HashPassword(password)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", modproxy.ErrInvalid, err)
		}
		u.PasswordHash = h
	}
	err := transaction(ctx, conn, func(tx *pop.Connection) error {
		exists, err := tx.Where("name = ?", name).Exists(&User{})
		if err != nil {
			return err
		}
		conflict := fmt.Errorf("%w: user %q already exists", modproxy.ErrConflict, name)
		if exists {
			return conflict
		}
		// Another transaction may create the name after the check.
		if err := tx.Create(u); isUniqueViolation(err) {
			return conflict
		} else if err != nil {
			return err
		}
		return appendAudit(tx, &modproxy.AuditEvent{Actor: actor, Action: modproxy.ActionUserCreate, Detail: fmt.Sprintf("user %s, role %s", name, role)})
	})
	if err != nil {
		return nil, fmt.Errorf("creating user %s: %w", name, err)
	}
	return u, nil
}

// UserByName returns the user called name, or an error wrapping ErrNotFound.
func UserByName(ctx context.Context, conn *pop.Connection, name string) (*User, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	u := &User{}
	if err := conn.WithContext(ctx).Where("name = ?", name).First(u); err != nil {
		if isNoRows(err) {
			return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// CreateToken makes a new token for the user called userName with the given
// scope, and returns the token itself, which is shown once and never stored.
// The scope may exceed what the user's role allows; it is capped when used.
func CreateToken(ctx context.Context, conn *pop.Connection, actor, userName, name string, scope auth.Scope) (string, *Token, error) {
	if len(name) > 100 {
		return "", nil, fmt.Errorf("%w: token names are at most 100 bytes", modproxy.ErrInvalid)
	}
	// One line of agora token list each, for people and scripts.
	if !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", nil, fmt.Errorf("%w: a token name is text without control characters (tabs, line breaks)", modproxy.ErrInvalid)
	}
	// Older builds let a user take the name the command line acts as,
	// which owns every imported version; serve warns of one. Its tokens
	// are to be revoked, not added to.
	if userName == auth.CommandLineActor {
		return "", nil, fmt.Errorf("%w: %q is the name the agora command line acts under; a user so named (made by an older build) gets no new tokens", auth.ErrReservedUserName, userName)
	}
	if scope < auth.ScopeRead || scope > auth.ScopeAdmin {
		return "", nil, fmt.Errorf("%w: unknown scope", modproxy.ErrInvalid)
	}
	u, err := UserByName(ctx, conn, userName)
	if err != nil {
		return "", nil, err
	}
	plain, display, hash, err := auth.NewToken()
	if err != nil {
		return "", nil, err
	}
	tok := &Token{UserID: u.ID, Name: name, Display: display, Hash: hash, Scope: scope.String()}
	err = transaction(ctx, conn, func(tx *pop.Connection) error {
		if err := tx.Create(tok); err != nil {
			return err
		}
		return appendAudit(tx, &modproxy.AuditEvent{Actor: actor, Action: modproxy.ActionTokenCreate,
			Detail: fmt.Sprintf("token %d (%s…) %q for %s, scope %s", tok.ID, display, name, userName, scope)})
	})
	if err != nil {
		return "", nil, fmt.Errorf("creating a token for %s: %w", userName, err)
	}
	return plain, tok, nil
}

// Tokens lists the tokens of the user called userName, revoked ones included.
func Tokens(ctx context.Context, conn *pop.Connection, userName string) ([]Token, error) {
	u, err := UserByName(ctx, conn, userName)
	if err != nil {
		return nil, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	var toks []Token
	if err := conn.WithContext(ctx).Where("user_id = ?", u.ID).Order("id").All(&toks); err != nil {
		return nil, fmt.Errorf("tokens of %s: %w", userName, err)
	}
	return toks, nil
}

// RevokeToken revokes the token with the given id. Revoking a revoked token
// is not an error and changes nothing.
func RevokeToken(ctx context.Context, conn *pop.Connection, actor string, id int64) error {
	err := transaction(ctx, conn, func(tx *pop.Connection) error {
		tok := &Token{}
		// PostgreSQL would take the id for the type of the column,
		// integer, and fail the query on a larger one.
		if err := tx.Where("id = CAST(? AS BIGINT)", id).First(tok); err != nil {
			if isNoRows(err) {
				return fmt.Errorf("token %d: %w", id, ErrNotFound)
			}
			return err
		}
		if tok.RevokedAt != nil {
			return nil
		}
		// On PostgreSQL, another revocation may have committed since the
		// read: the update waits for it, and then finds nothing to do.
		now := dbTime(time.Now())
		n, err := tx.RawQuery("UPDATE tokens SET revoked_at = ?, updated_at = ? WHERE id = ? AND revoked_at IS NULL", now, now, id).ExecWithCount()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		return appendAudit(tx, &modproxy.AuditEvent{Actor: actor, Action: modproxy.ActionTokenRevoke,
			Detail: fmt.Sprintf("token %d (%s…)", id, tok.Display)})
	})
	if err != nil {
		return fmt.Errorf("revoking token %d: %w", id, err)
	}
	return nil
}

// lastUsedGranularity is how stale a token's last_used_at may get before a
// request updates it, so that busy tokens do not cost a write per request.
const lastUsedGranularity = time.Minute

// Authenticate returns the principal a token acts as. An unknown, malformed
// or revoked token is an error wrapping modproxy.ErrUnauthorized; all look
// the same to the caller. It only reads: the token's last use is recorded
// afterwards (see FlushTokenUses), so that a download never waits for a
// write transaction, which on SQLite may hold the database for seconds.
func Authenticate(ctx context.Context, conn *pop.Connection, token string) (auth.Principal, error) {
	unauthorized := fmt.Errorf("%w: invalid or revoked token", modproxy.ErrUnauthorized)
	if !auth.LooksLikeToken(token) {
		return auth.Principal{}, unauthorized
	}
	var rows []struct {
		TokenID    int64      `db:"token_id"`
		Scope      string     `db:"scope"`
		RevokedAt  *time.Time `db:"revoked_at"`
		LastUsedAt *time.Time `db:"last_used_at"`
		UserID     int64      `db:"user_id"`
		Name       string     `db:"name"`
		Role       string     `db:"role"`
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	c := conn.WithContext(ctx)
	err := c.RawQuery(`SELECT t.id AS token_id, t.scope, t.revoked_at, t.last_used_at, u.id AS user_id, u.name, u.role
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, auth.HashToken(token)).All(&rows)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("authenticating: %w", err)
	}
	if len(rows) == 0 || rows[0].RevokedAt != nil {
		return auth.Principal{}, unauthorized
	}
	row := rows[0]
	scope, err := auth.ParseScope(row.Scope)
	if err != nil {
		return auth.Principal{}, unauthorized
	}
	now := dbTime(time.Now())
	if row.LastUsedAt == nil || now.Sub(*row.LastUsedAt) > lastUsedGranularity {
		recordUse(conn, row.TokenID, now)
	}
	role := auth.Role(row.Role)
	return auth.Principal{
		UserID:  row.UserID,
		User:    row.Name,
		Role:    role,
		Scope:   auth.EffectiveScope(scope, role),
		TokenID: row.TokenID,
	}, nil
}

// tokenUses holds, per connection, the writer of the token uses that
// Authenticate saw and that are not recorded yet. A writer runs while
// there are uses to record, through the same transactions as every other
// write (on SQLite, queued behind the writer of the moment), and ends when
// it has recorded them all.
var tokenUses = struct {
	sync.Mutex
	m map[*pop.Connection]*tokenUse
}{m: make(map[*pop.Connection]*tokenUse)}

// tokenUse records the uses of tokens on one connection.
type tokenUse struct {
	pending map[int64]time.Time // last use by token id; guarded by tokenUses
	done    chan struct{}       // closed when the writer has ended
	err     error               // the writer's last failure; read after done
}

// recordUse has the use of the token id at at recorded soon: uses of one
// token that arrive while an earlier one waits are recorded in one write.
func recordUse(conn *pop.Connection, id int64, at time.Time) {
	tokenUses.Lock()
	defer tokenUses.Unlock()
	u := tokenUses.m[conn]
	if u == nil {
		u = &tokenUse{pending: make(map[int64]time.Time), done: make(chan struct{})}
		tokenUses.m[conn] = u
		go u.write(conn)
	}
	u.pending[id] = at
}

// write records the pending uses until there are none left.
func (u *tokenUse) write(conn *pop.Connection) {
	for {
		tokenUses.Lock()
		uses := u.pending
		if len(uses) == 0 {
			delete(tokenUses.m, conn)
			tokenUses.Unlock()
			close(u.done)
			return
		}
		u.pending = make(map[int64]time.Time)
		tokenUses.Unlock()
		err := transaction(context.Background(), conn, func(tx *pop.Connection) error {
			for id, at := range uses {
				err := tx.RawQuery(`UPDATE tokens SET last_used_at = ?
					WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, at, id, at).Exec()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// The uses are lost, which costs a token's last use
			// being shown older; the requests were served.
			u.err = fmt.Errorf("recording when %d tokens were last used: %w", len(uses), err)
			slog.Warn(u.err.Error())
		}
	}
}

// FlushTokenUses waits until the uses of tokens that Authenticate has seen
// on conn are recorded, or until ctx is done, and returns the last failure
// to record some, if any. Call it before closing conn.
func FlushTokenUses(ctx context.Context, conn *pop.Connection) error {
	tokenUses.Lock()
	u := tokenUses.m[conn]
	tokenUses.Unlock()
	if u == nil {
		return nil
	}
	select {
	case <-u.done:
		return u.err
	case <-ctx.Done():
		return fmt.Errorf("recording when tokens were last used: %w", ctx.Err())
	}
}
