package models

import (
	"path/filepath"
	"testing"
)

// TestIsUniqueViolation checks that an insert refused by a unique index is
// told apart from other failures on SQLite; on PostgreSQL, the race of
// TestCreateUserRace checks it.
func TestIsUniqueViolation(t *testing.T) {
	conn, err := Connect("sqlite3://" + filepath.Join(t.TempDir(), "agora.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := Migrate(conn); err != nil {
		t.Fatal(err)
	}
	bob := func() error { return conn.Create(&User{Name: "bob", Role: "viewer"}) }
	if err := bob(); err != nil || isUniqueViolation(err) {
		t.Fatalf("the first insert: %v", err)
	}
	if err := bob(); !isUniqueViolation(err) {
		t.Errorf("the second insert: %v; want a unique violation", err)
	}
	if err := conn.RawQuery("INSERT INTO nowhere VALUES (1)").Exec(); isUniqueViolation(err) {
		t.Errorf("an insert into no table: %v; want no unique violation", err)
	}
}
