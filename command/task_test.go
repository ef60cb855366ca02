package command

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
)

// TestStorageVerifyTask checks what agora task storage:verify says and
// exits with: a stale @v/list file it rewrites is a FIXED line and exit
// status 0 (it was rewritten without a word), files that no record
// announces a BAD line and exit status 1, each counted in the summary;
// and that storage:verify repair leaves the files of a version without a
// record.
func TestStorageVerifyTask(t *testing.T) {
	data := offlineEnv(t)
	cache := t.TempDir()
	writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")
	if out, err := run(t, "", "import", cache); err != nil {
		t.Fatalf("agora import: %v\n%s", err, out)
	}
	storage := filepath.Join(data, "storage")
	if err := os.WriteFile(filepath.Join(storage, "example.com/a/@v/list"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		status := runMain(context.Background(), append([]string{"task", "storage:verify"}, args...), strings.NewReader(""), &stdout, &stderr)
		return status, stdout.String()
	}
	want := "FIXED example.com/a/@v/list: lacked v1.0.0: rewritten from the records\nchecked 1 version, 0 bad, 1 fixed\n"
	if status, out := verify(); status != 0 || out != want {
		t.Errorf("storage:verify with a stale list: exit status %d, standard output\n%s\nwant 0 and\n%s", status, out, want)
	}

	orphan := filepath.Join(storage, "example.com/b/@v/v0.1.0.mod")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("module example.com/b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want = "BAD example.com/b@v0.1.0: stored files without a version record: .mod\nchecked 1 version, 1 bad\n"
	if status, out := verify(); status != 1 || out != want {
		t.Errorf("storage:verify with an orphan file: exit status %d, standard output\n%s\nwant 1 and\n%s", status, out, want)
	}

	// repair removes nothing of a version without a record.
	if status, out := verify("repair"); status != 1 || out != want {
		t.Errorf("storage:verify repair with an orphan file: exit status %d, standard output\n%s\nwant 1 and\n%s", status, out, want)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("storage:verify repair removed the file of a version without a record: %v", err)
	}
}

// TestStorageVerifyRepairTask checks that agora task storage:verify repair
// removes the files a delete left, as the delete run again would, and
// says so with a FIXED line and exit status 0.
func TestStorageVerifyRepairTask(t *testing.T) {
	data := offlineEnv(t)
	cache := t.TempDir()
	writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")
	if out, err := run(t, "", "import", cache); err != nil {
		t.Fatalf("agora import: %v\n%s", err, out)
	}
	ctx := context.Background()
	mod := filepath.Join(data, "storage", "example.com/a/@v/v1.0.0.mod")
	gomod, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	env, err := openTaskEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = env.Registry.Delete(ctx, cliAdmin, "example.com/a", "v1.0.0", modproxy.DeleteOptions{})
	env.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mod, gomod, 0o644); err != nil { // as a delete cut off leaves it
		t.Fatal(err)
	}

	for _, tt := range []struct {
		arg    string
		status int
		stdout string
	}{
		{"", 1, "BAD example.com/a@v1.0.0: stored files of a deleted version: .mod\nchecked 0 versions, 1 bad\n"},
		{"repair", 0, "FIXED example.com/a@v1.0.0: stored files of a deleted version: .mod: removed\nchecked 0 versions, 0 bad, 1 fixed\n"},
		{"", 0, "checked 0 versions, 0 bad\n"},
	} {
		args := []string{"task", "storage:verify"}
		if tt.arg != "" {
			args = append(args, tt.arg)
		}
		var stdout, stderr bytes.Buffer
		status := runMain(ctx, args, strings.NewReader(""), &stdout, &stderr)
		if status != tt.status || stdout.String() != tt.stdout {
			t.Errorf("agora %s: exit status %d, standard output\n%s\nwant %d and\n%s", strings.Join(args, " "), status, stdout.String(), tt.status, tt.stdout)
		}
	}
	if _, err := os.Stat(mod); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after storage:verify repair, the deleted version's .mod: %v; want it gone", err)
	}
}

// TestDBBackupTask checks agora task db:backup FILE: it copies the
// server's SQLite database to FILE, which a data directory then runs on,
// says so on standard error alone, and refuses a FILE that exists; it
// makes no database where there is none and migrates none it copies (a
// newer agora taking a backup before an upgrade must leave the running
// server's database as it is); and it refuses PostgreSQL, naming pg_dump.
func TestDBBackupTask(t *testing.T) {
	data := offlineEnv(t)
	backup := filepath.Join(t.TempDir(), "agora-backup.db")
	task := func(args ...string) (status int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		status = runMain(context.Background(), append([]string{"task", "db:backup"}, args...), strings.NewReader(""), &out, &errOut)
		return status, out.String(), errOut.String()
	}

	status, _, stderr := task(backup)
	if status != 1 || !strings.Contains(stderr, "no database to back up") {
		t.Errorf("db:backup without a database: exit status %d, standard error\n%s\nwant 1 and no database to back up", status, stderr)
	}
	for _, name := range []string{filepath.Join(data, "agora.db"), backup} {
		if _, err := os.Stat(name); err == nil {
			t.Errorf("db:backup without a database made %s", name)
		}
	}

	if out, err := run(t, "", "user", "create", "alice", "--role", "admin"); err != nil {
		t.Fatalf("agora user create: %v\n%s", err, out)
	}
	status, stdout, stderr := task(backup)
	if want := "copied " + filepath.Join(data, "agora.db") + " to " + backup + "\n"; status != 0 || stdout != "" || stderr != want {
		t.Errorf("db:backup: exit status %d, standard output %q, standard error %q; want 0, nothing and %q", status, stdout, stderr, want)
	}
	if status, _, stderr := task(backup); status != 1 || !strings.Contains(stderr, "exists already") {
		t.Errorf("db:backup to a file that exists: exit status %d, standard error\n%s\nwant 1 and exists already", status, stderr)
	}

	// A data directory restored from the copy has the user.
	restored := t.TempDir()
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "agora.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGORA_DATA_DIR", restored)
	t.Setenv("AGORA_STORAGE_DIR", filepath.Join(restored, "storage"))
	if out, err := run(t, "", "token", "create", "alice"); err != nil {
		t.Errorf("agora token create alice on the restored database: %v\n%s", err, out)
	}

	// An older database, here one with no table at all, is copied as it is.
	unmigrated := t.TempDir()
	if err := os.WriteFile(filepath.Join(unmigrated, "agora.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGORA_DATA_DIR", unmigrated)
	if status, _, stderr := task(filepath.Join(t.TempDir(), "copy.db")); status != 0 {
		t.Fatalf("db:backup of an empty database: exit status %d\n%s", status, stderr)
	}
	conn, err := models.Connect("sqlite3://" + filepath.Join(unmigrated, "agora.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var tables int
	if err := conn.RawQuery("SELECT COUNT(*) FROM sqlite_master").First(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("db:backup left %d tables in a database that had none: it migrated it", tables)
	}

	t.Run("postgres", func(t *testing.T) {
		t.Setenv("DATABASE_URL", modelstest.URL(t, "postgres"))
		status, _, stderr := task(filepath.Join(t.TempDir(), "agora.db"))
		if status != 1 || !strings.Contains(stderr, "pg_dump") {
			t.Errorf("db:backup on PostgreSQL: exit status %d, standard error\n%s\nwant 1 and advice to use pg_dump", status, stderr)
		}
	})
}
