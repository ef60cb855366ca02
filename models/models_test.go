package models_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"agora/models"
	"agora/modproxy"
)

// TestSQLiteFileNames checks that an SQLite database whose directory has
// characters special in URLs (AGORA_DATA_DIR=/srv/agora#1) is the file
// named, and not another: /srv/agora#1 and /srv/agora#2 once both opened
// /srv/agora.
func TestSQLiteFileNames(t *testing.T) {
	parent := t.TempDir()
	dirs := []string{"agora#1", "agora#2", "a?b", "a%41b", "a b"}
	for i, d := range dirs {
		dir := filepath.Join(parent, d)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		conn, err := models.Connect("sqlite3://" + filepath.Join(dir, "agora.db"))
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		defer conn.Close()
		if err := models.Migrate(conn); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		r := models.NewRegistry(conn)
		insert(t, r, newVersion("example.com/"+string(rune('a'+i)), "v1.0.0"))
		if _, err := os.Stat(filepath.Join(dir, "agora.db")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	// Each database holds its own version only.
	for i, d := range dirs {
		conn, err := models.Connect("sqlite3://" + filepath.Join(parent, d, "agora.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := models.NewRegistry(conn)
		for j := range dirs {
			_, err := r.Version(context.Background(), "example.com/"+string(rune('a'+j)), "v1.0.0")
			if i == j && err != nil || i != j && !errors.Is(err, modproxy.ErrNotFound) {
				t.Errorf("%s: the version of %s: %v", d, dirs[j], err)
			}
		}
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(dirs) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the parent directory holds %q; want only %q", names, dirs)
	}
}
