// Package auth holds Agora's identity vocabulary: roles, token scopes, the
// principal a request acts as, and the pure functions that make and check
// API tokens and passwords. It stores nothing; package models persists users
// and tokens, and package actions turns request headers into a Principal.
//
// A token's effective scope is the lower of the scope it was created with and
// the highest scope its user's role allows, so demoting a user also demotes
// every token the user holds.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Scope is what a token may do. Scopes are ordered: each includes the ones
// below it.
type Scope int

// The scopes, lowest first. ScopeNone is the zero value: an anonymous caller.
const (
	ScopeNone Scope = iota
	ScopeRead
	ScopePublish
	ScopeAdmin
)

var scopeNames = [...]string{"none", "read", "publish", "admin"}

// String returns the scope's name as used on the command line and in JSON.
func (s Scope) String() string {
	if s < 0 || int(s) >= len(scopeNames) {
		return fmt.Sprintf("Scope(%d)", int(s))
	}
	return scopeNames[s]
}

// ParseScope parses "read", "publish" or "admin".
func ParseScope(name string) (Scope, error) {
	for s := ScopeRead; s <= ScopeAdmin; s++ {
		if name == scopeNames[s] {
			return s, nil
		}
	}
	return ScopeNone, fmt.Errorf("unknown scope %q (want read, publish or admin)", name)
}

// Role is a user's standing. Each role caps the scope of the user's tokens.
type Role string

// The roles.
const (
	RoleViewer    Role = "viewer"
	RolePublisher Role = "publisher"
	RoleAdmin     Role = "admin"
)

// ParseRole parses "viewer", "publisher" or "admin".
func ParseRole(name string) (Role, error) {
	switch r := Role(name); r {
	case RoleViewer, RolePublisher, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want admin, publisher or viewer)", name)
}

// MaxScope returns the highest scope a token of a user with role r can have.
func (r Role) MaxScope() Scope {
	switch r {
	case RoleAdmin:
		return ScopeAdmin
	case RolePublisher:
		return ScopePublish
	case RoleViewer:
		return ScopeRead
	}
	return ScopeNone
}

// Principal is who a request acts as. The zero Principal is anonymous.
type Principal struct {
	UserID  int64
	User    string
	Role    Role
	Scope   Scope // effective: min(token scope, Role.MaxScope())
	TokenID int64
}

// Can reports whether p holds at least scope s.
func (p Principal) Can(s Scope) bool { return p.Scope >= s }

// Authenticated reports whether p is a known user rather than anonymous.
func (p Principal) Authenticated() bool { return p.User != "" }

// EffectiveScope returns the scope a token created with scope s has for a
// user with role r.
func EffectiveScope(s Scope, r Role) Scope { return min(s, r.MaxScope()) }

// TokenPrefix starts every token, so that secret scanners can recognise one
// and people can tell it from a password.
const TokenPrefix = "agora_"

// tokenBytes is the entropy of a token, in bytes.
const tokenBytes = 32

// displayLen is how many leading characters of a token are kept in the clear
// so that people can tell their tokens apart.
const displayLen = len(TokenPrefix) + 6

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a fresh random token, the prefix of it that may be shown
// and stored, and the hash under which it is stored. The token itself is
// never stored.
func NewToken() (token, display, hash string, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", "", fmt.Errorf("auth: reading randomness: %w", err)
	}
	token = TokenPrefix + strings.ToLower(tokenEncoding.EncodeToString(b))
	return token, token[:displayLen], HashToken(token), nil
}

// HashToken returns the hex SHA-256 of token. Tokens carry 256 bits of
// entropy, so a fast hash is enough; a slow one would only slow every request.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LooksLikeToken reports whether s has the shape of a token made by NewToken.
// It lets callers reject garbage without a database query.
func LooksLikeToken(s string) bool {
	if !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	_, err := tokenEncoding.DecodeString(strings.ToUpper(s[len(TokenPrefix):]))
	return err == nil && len(s) == len(TokenPrefix)+tokenEncoding.EncodedLen(tokenBytes)
}

// MinPasswordLen is the shortest password accepted, in bytes.
const MinPasswordLen = 10

// maxPasswordLen is bcrypt's input limit, in bytes.
const maxPasswordLen = 72

// CheckPasswordLen returns an error if password is too short or too long
// to be hashed.
func CheckPasswordLen(password string) error {
	if len(password) < MinPasswordLen {
		return fmt.Errorf("password too short: at least %d characters", MinPasswordLen)
	}
	if len(password) > maxPasswordLen {
		return fmt.Errorf("password too long: at most %d bytes", maxPasswordLen)
	}
	return nil
}

// HashPassword returns the bcrypt hash of password, after checking its length.
func HashPassword(password string) (string, error) {
	if err := CheckPasswordLen(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("auth: hashing password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches the bcrypt hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// ErrBadUserName is returned by CheckUserName for a name it refuses.
var ErrBadUserName = errors.New("user names are 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")

// CommandLineActor is the name the agora command line acts under (agora
// import, user, token, task): the audit log names it as the actor, and the
// versions it imports as their publisher. No user may have it: such a
// user would own what the command line did, and a publisher could delete
// every imported version.
const CommandLineActor = "cli"

// ErrReservedUserName is returned by CheckUserName for a name that Agora
// itself acts under.
var ErrReservedUserName = errors.New("user name reserved")

// CheckUserName reports whether name is acceptable as a user name: an
// error wrapping ErrBadUserName or ErrReservedUserName if it is not.
func CheckUserName(name string) error {
	if name == CommandLineActor {
		return fmt.Errorf("%w: %q is the name the agora command line acts under, in the audit log and as the publisher of imported versions; choose another", ErrReservedUserName, name)
	}
	if name == "" || len(name) > 64 {
		return ErrBadUserName
	}
	for i, r := range name {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return ErrBadUserName
		}
	}
	return nil
}
