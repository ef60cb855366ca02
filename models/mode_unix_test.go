//go:build unix

package models_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"agora/auth"
	"agora/models"
)

// TestSQLiteFileMode checks that the SQLite database a first start creates
// is readable by its owner only, with its -wal and -shm files: it holds
// the users' password hashes and the audit log, and its directory, the
// data directory, holds the storage tree that a web server of another user
// may serve, so it is open to every user. The session secret beside it is
// kept so too.
func TestSQLiteFileMode(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agora.db")
	conn, err := models.Connect("sqlite3://" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := models.Migrate(conn); err != nil {
		t.Fatal(err)
	}
	if _, err := models.CreateUser(context.Background(), conn, "test", "alice", auth.RoleAdmin, "a password"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{file, file + "-wal", file + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s has mode %v; want it readable by its owner only", filepath.Base(name), mode)
		}
	}
}
