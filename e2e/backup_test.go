package e2e

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"agora/models/modelstest"
)

// TestBackupAndRestore follows the README's backup procedure against a
// running server: the database first (agora task db:backup on SQLite,
// pg_dump on PostgreSQL), then a copy of the storage directory, with
// versions published, fetched and deleted in between and after. It
// restores both into a fresh data directory and database as the README
// says (storage:verify, agora import of the storage directory, the delete
// made again) and checks what it says of the result, with the go command
// and over HTTP. Then it restores the other way round, the storage copy
// older than the database, and checks what the README says is lost then:
// the files of the uploaded versions recorded in between, which the go
// command cannot download until they are published again, while fetched
// ones come back from the upstream.
func TestBackupAndRestore(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	bin := agoraBinary(t)
	greet := func(version string) *publicModule {
		return newPublicModule(t, "example.org/greet", version, map[string]string{
			"go.mod":   "module example.org/greet\n\ngo 1.21\n",
			"greet.go": "package greet\n\n// Hello greets.\nfunc Hello() string { return \"greet " + version + "\" }\n",
		})
	}
	public := []*publicModule{greet("v1.0.0"), greet("v1.1.0"), greet("v1.2.0")}
	hello100, hello110, hellov2, upper := fixtures[0], fixtures[1], fixtures[2], fixtures[3]

	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			if dialect == "postgres" {
				for _, tool := range []string{"pg_dump", "pg_restore"} {
					if _, err := exec.LookPath(tool); err != nil {
						t.Skipf("PostgreSQL is backed up with pg_dump and restored with pg_restore: %v", err)
					}
				}
			}
			up := newFakeUpstream(t, public...)
			s := startAgora(t, bin, dialect, "AGORA_UPSTREAM="+up.URL)
			token := s.createPublisher(t, "alice")
			sums := make(map[string][]string) // go.sum lines, by path@version
			for _, m := range public {
				sums[m.Path+"@"+m.Version] = strings.Split(strings.TrimSuffix(m.Sum, "\n"), "\n")
			}
			publish := func(f fixture) {
				t.Helper()
				status, v, body := s.publish(t, token, f)
				if status != http.StatusCreated {
					t.Fatalf("publishing %v: status %d: %s", f, status, body)
				}
				sums[f.String()] = v.GoSum
			}
			fetch := func(m *publicModule) { // as go mod download does
				t.Helper()
				for _, ext := range []string{".info", ".mod", ".zip"} {
					file := "/" + m.Path + "/@v/" + m.Version + ext
					if status, body := s.do(t, http.MethodGet, file, "", nil, nil); status != http.StatusOK {
						t.Fatalf("GET %s: status %d: %s", file, status, body)
					}
				}
			}
			backups := t.TempDir()

			publish(hello100)
			publish(hellov2)
			fetch(public[0])
			// A storage copy older than the database's, for the wrong order.
			earlyStorage := filepath.Join(backups, "storage-early")
			copyTree(t, s.StorageDir, earlyStorage)
			publish(upper)
			fetch(public[1])

			// The database, while the server runs.
			var dbBackup string
			if dialect == "sqlite3" {
				dbBackup = filepath.Join(backups, "agora.db")
				s.agora(t, "task", "db:backup", dbBackup)
			} else {
				dbBackup = filepath.Join(backups, "agora.dump")
				if _, all, err := runCommand("", s.env, "pg_dump", "-Fc", "-f", dbBackup, s.DatabaseURL); err != nil {
					t.Fatalf("pg_dump: %v\n%s", err, all)
				}
			}
			// Recorded after the database's backup, before storage's.
			deleteURL := "/api/v1/modules/example.com/hello/v2/@v/v2.0.0?reason=" + url.QueryEscape("withdrawn")
			if status, body := s.do(t, http.MethodDelete, deleteURL, token, nil, nil); status != http.StatusNoContent {
				t.Fatalf("DELETE %s: status %d: %s", deleteURL, status, body)
			}
			publish(hello110)
			fetch(public[2])
			// Then storage, while the server runs.
			lateStorage := filepath.Join(backups, "storage")
			copyTree(t, s.StorageDir, lateStorage)

			// restore puts the database backup and a storage copy into a
			// fresh data directory and database, as on a new machine (so
			// the server backed up may keep running), and returns the
			// server on them, not started.
			restore := func(storage string) *server {
				t.Helper()
				dataDir := t.TempDir()
				copyTree(t, storage, filepath.Join(dataDir, "storage"))
				env := []string{"AGORA_DATA_DIR=" + dataDir, "AGORA_UPSTREAM=" + up.URL}
				if dialect == "sqlite3" {
					copyFile(t, dbBackup, filepath.Join(dataDir, "agora.db"))
				} else {
					dbURL := modelstest.URL(t, "postgres")
					if _, all, err := runCommand("", s.env, "pg_restore", "--no-owner", "-d", dbURL, dbBackup); err != nil {
						t.Fatalf("pg_restore: %v\n%s", err, all)
					}
					env = append(env, "DATABASE_URL="+dbURL)
				}
				return newServer(t, bin, dialect, env...)
			}

			// Database first, then storage: what was recorded after the
			// database's backup has its files in storage, without a record.
			r := restore(lateStorage)
			verify := func(r *server, wantStatus int, want ...string) {
				t.Helper()
				out, all, err := runCommand(r.workDir, r.env, r.bin, "task", "storage:verify")
				if status := exitStatus(err); status != wantStatus {
					t.Errorf("agora task storage:verify: exit status %d (%v), want %d\n%s", status, err, wantStatus, all)
				}
				for _, line := range want {
					if !strings.Contains(out, line) {
						t.Errorf("agora task storage:verify printed\n%s\nwant a line with %q", out, line)
					}
				}
			}
			verify(r, 1,
				"BAD example.com/hello@v1.1.0: stored files without a version record: .info .mod .zip\n",
				"BAD example.org/greet@v1.2.0: stored files without a version record: .info .mod .zip\n",
				"BAD example.com/hello/v2@v2.0.0: .zip missing from storage\n",
				"checked 5 versions, 3 bad")
			out := r.agora(t, "import", r.StorageDir)
			for _, line := range []string{
				"example.com/hello@v1.1.0 imported\n",
				"example.org/greet@v1.2.0 imported\n",
				"6 versions: 2 imported, 0 restored, 4 skipped, 0 conflict",
			} {
				if !strings.Contains(out, line) {
					t.Errorf("agora import of the storage directory printed\n%s\nwant a line with %q", out, line)
				}
			}
			// What is left: the version deleted after the database's
			// backup is live again, without its files.
			verify(r, 1, "BAD example.com/hello/v2@v2.0.0: .zip missing from storage\n", "checked 7 versions, 1 bad\n")

			r.start(t, dialect)
			g := newGoTool(t, r.URL)
			g.env = append(g.env, "GONOSUMDB=example.com,example.org")
			dir := t.TempDir()
			checkOutput(t, g, dir, "example.com/hello v1.0.0 v1.1.0\n", "list", "-m", "-versions", "example.com/hello")
			checkOutput(t, g, dir, "example.org/greet v1.0.0 v1.1.0 v1.2.0\n", "list", "-m", "-versions", "example.org/greet")
			checkDownload(t, g, dir, sums, "example.com/hello@v1.0.0", "example.com/hello@v1.1.0", "example.com/Upper@v0.1.0",
				"example.org/greet@v1.0.0", "example.org/greet@v1.1.0", "example.org/greet@v1.2.0")
			var imported struct {
				Versions []publishedVersion `json:"versions"`
			}
			// alice's token, made before the database's backup, works.
			if status, body := r.do(t, http.MethodGet, "/api/v1/modules/example.com/hello", token, nil, &imported); status != http.StatusOK {
				t.Fatalf("GET /api/v1/modules/example.com/hello: %d %s", status, body)
			}
			for _, v := range imported.Versions {
				want := map[string]string{"v1.0.0": "alice", "v1.1.0": "cli"}[v.Version]
				if v.PublishedBy != want {
					t.Errorf("after the restore, example.com/hello@%s is published by %q, want %q", v.Version, v.PublishedBy, want)
				}
			}
			// The version deleted after the database's backup: its files
			// are gone, and it must be deleted again.
			gone := "/example.com/hello/v2/@v/v2.0.0.zip"
			if status, body := r.do(t, http.MethodGet, gone, "", nil, nil); status != http.StatusNotFound || !strings.Contains(string(body), "publish the same zip again") {
				t.Errorf("GET %s of the version deleted after the database's backup: %d %s; want 404 saying to publish it again", gone, status, body)
			}
			if status, body := r.do(t, http.MethodDelete, deleteURL, token, nil, nil); status != http.StatusNoContent {
				t.Errorf("DELETE %s again: status %d: %s", deleteURL, status, body)
			}
			if status, body := r.do(t, http.MethodGet, gone, "", nil, nil); status != http.StatusGone {
				t.Errorf("GET %s after deleting it again: %d %s; want 410", gone, status, body)
			}
			verify(r, 0, "checked 6 versions, 0 bad\n")

			// Storage first, then the database: the files of the versions
			// recorded in between are missing.
			w := restore(earlyStorage)
			verify(w, 1,
				"BAD example.com/Upper@v0.1.0: ",
				"BAD example.org/greet@v1.1.0: ",
				"checked 5 versions, 2 bad")
			w.start(t, dialect)
			g = newGoTool(t, w.URL)
			g.env = append(g.env, "GONOSUMDB=example.com,example.org")
			dir = t.TempDir()
			// A fetched version comes back from the upstream.
			checkDownload(t, g, dir, sums, "example.org/greet@v1.1.0")
			// An uploaded one cannot be downloaded until it is published
			// again.
			_, all, err := runCommand(dir, g.env, "go", "mod", "download", "example.com/Upper@v0.1.0")
			if err == nil || !strings.Contains(all, "404 Not Found") || !strings.Contains(all, "publish the same zip again") {
				t.Errorf("go mod download of an uploaded version whose files the storage copy lacks: %v\n%s\nwant a 404 saying to publish it again", err, all)
			}
			if status, _, body := w.publish(t, token, upper); status != http.StatusOK {
				t.Errorf("publishing %v again: status %d, want %d: %s", upper, status, http.StatusOK, body)
			}
			checkDownload(t, g, dir, sums, "example.com/Upper@v0.1.0")
			verify(w, 0, "checked 5 versions, 0 bad\n")
		})
	}
}

// exitStatus returns the exit status of a command that ended with err.
func exitStatus(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return -1
}

// copyTree copies the regular files under src to dst, as a backup of a
// running server's storage directory does: each file as it is when the
// copy reaches it.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, name)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			copyFile(t, name, target)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

// copyFile copies the file src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
