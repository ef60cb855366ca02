package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	tok, display, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || !strings.HasPrefix(tok, display) || len(display) >= len(tok) {
		t.Errorf("token %q, display %q: display must be a proper prefix starting %q", tok, display, TokenPrefix)
	}
	if hash != HashToken(tok) || strings.Contains(hash, tok) {
		t.Errorf("hash %q is not HashToken(token)", hash)
	}
	if !LooksLikeToken(tok) {
		t.Errorf("LooksLikeToken(%q) = false", tok)
	}
	other, _, _, _ := NewToken()
	if other == tok {
		t.Error("two tokens are equal")
	}
}

var looksLikeTokenTests = []struct {
	in   string
	want bool
}{
	{"", false},
	{"agora_", false},
	{"password123", false},
	{"agora_" + strings.Repeat("a", 52), true},
	{"agora_" + strings.Repeat("a", 51), false},
	{"agora_" + strings.Repeat("1", 52), false}, // 1 is not base32
	{"AGORA_" + strings.Repeat("a", 52), false},
}

func TestLooksLikeToken(t *testing.T) {
	for _, tt := range looksLikeTokenTests {
		if got := LooksLikeToken(tt.in); got != tt.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

var effectiveScopeTests = []struct {
	scope Scope
	role  Role
	want  Scope
}{
	{ScopeAdmin, RoleAdmin, ScopeAdmin},
	{ScopeAdmin, RolePublisher, ScopePublish},
	{ScopePublish, RoleViewer, ScopeRead},
	{ScopeRead, RoleAdmin, ScopeRead},
	{ScopeAdmin, Role("nobody"), ScopeNone},
}

func TestEffectiveScope(t *testing.T) {
	for _, tt := range effectiveScopeTests {
		if got := EffectiveScope(tt.scope, tt.role); got != tt.want {
			t.Errorf("EffectiveScope(%v, %v) = %v, want %v", tt.scope, tt.role, got, tt.want)
		}
	}
}

func TestParseScopeAndRole(t *testing.T) {
	for _, name := range []string{"read", "publish", "admin"} {
		s, err := ParseScope(name)
		if err != nil || s.String() != name {
			t.Errorf("ParseScope(%q) = %v, %v", name, s, err)
		}
	}
	if _, err := ParseScope("none"); err == nil {
		t.Error(`ParseScope("none") succeeded`)
	}
	for _, name := range []string{"viewer", "publisher", "admin"} {
		if r, err := ParseRole(name); err != nil || string(r) != name {
			t.Errorf("ParseRole(%q) = %v, %v", name, r, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error(`ParseRole("root") succeeded`)
	}
}

func TestPassword(t *testing.T) {
	if _, err := HashPassword("short"); err == nil {
		t.Error("short password accepted")
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Error("73-byte password accepted (bcrypt would silently truncate it)")
	}
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct horse battery") || CheckPassword(h, "correct horse battery!") {
		t.Error("CheckPassword does not tell the right password from a wrong one")
	}
}

func TestCheckUserName(t *testing.T) {
	for _, ok := range []string{"alice", "a", "ci-bot", "j.smith_2"} {
		if err := CheckUserName(ok); err != nil {
			t.Errorf("CheckUserName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Alice", "-x", "a b", "a/b", strings.Repeat("a", 65), "ü"} {
		if err := CheckUserName(bad); err == nil {
			t.Errorf("CheckUserName(%q) succeeded", bad)
		}
	}
	// The name the command line acts under: a user of that name would own
	// what it did, every imported version above all.
	if err := CheckUserName("cli"); !errors.Is(err, ErrReservedUserName) || !strings.Contains(err.Error(), "command line") {
		t.Errorf("CheckUserName(%q) = %v; want ErrReservedUserName, naming the command line", "cli", err)
	}
}
