package models_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
)

// TestBackupSQLite checks that BackupSQLite copies what is committed while
// another process holds a write transaction open, as a server does
// between its writes, without waiting for it and without what it has not
// committed; that the copy is a database Agora opens, readable by its
// owner only; and that it refuses a file that exists, leaving nothing
// behind.
func TestBackupSQLite(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "agora.db")
	conn := modelstest.OpenURL(t, "sqlite3://"+file)
	if _, err := models.CreateUser(ctx, conn, "test", "alice", auth.RoleAdmin, ""); err != nil {
		t.Fatal(err)
	}

	// Another process writes, and has not committed.
	other, err := models.Connect("sqlite3://" + file)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.NewTransaction()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.TX.Rollback()
	if err := tx.Create(&models.User{Name: "bob", Role: string(auth.RolePublisher)}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	backup := filepath.Join(dir, "agora-backup.db")
	if err := models.BackupSQLite(ctx, conn, backup); err != nil {
		t.Fatalf("BackupSQLite while another connection writes: %v", err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(backup)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("the backup has mode %v; want it readable by its owner only", mode)
		}
	}
	// A file that exists is refused, and left as it was.
	if err := models.BackupSQLite(ctx, conn, backup); err == nil {
		t.Error("BackupSQLite to a file that exists succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the backup's directory holds %q; want the backup alone", names)
	}

	restored := modelstest.OpenURL(t, "sqlite3://"+backup)
	if _, err := models.UserByName(ctx, restored, "alice"); err != nil {
		t.Errorf("the backup lacks the user committed before it: %v", err)
	}
	if _, err := models.UserByName(ctx, restored, "bob"); !errors.Is(err, models.ErrNotFound) {
		t.Errorf("the backup's user bob, uncommitted when it was taken: %v, want not found", err)
	}
}

// TestBackupSQLitePostgres checks that BackupSQLite refuses PostgreSQL,
// which pg_dump backs up, with ErrNotSQLite.
func TestBackupSQLitePostgres(t *testing.T) {
	conn := modelstest.Open(t, "postgres")
	name := filepath.Join(t.TempDir(), "agora.db")
	if err := models.BackupSQLite(context.Background(), conn, name); !errors.Is(err, models.ErrNotSQLite) {
		t.Errorf("BackupSQLite on PostgreSQL: %v, want ErrNotSQLite", err)
	}
	if _, err := os.Stat(name); err == nil {
		t.Error("BackupSQLite on PostgreSQL made a file")
	}
}
