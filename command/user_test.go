package command

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"agora/models/modelstest"
)

// TestUserCreateReservedName checks that no user can be named as the
// command line acts (cliActor): such a user would own every version the
// command line imported, and could delete them all.
func TestUserCreateReservedName(t *testing.T) {
	offlineEnv(t)
	create := func(name string) (string, error) {
		var out bytes.Buffer
		err := Execute(context.Background(), []string{"user", "create", name, "--role", "publisher"}, strings.NewReader(""), &out, &out)
		return out.String(), err
	}
	if out, err := create(cliActor); err == nil || !strings.Contains(err.Error(), "reserved") || !strings.Contains(err.Error(), "command line") {
		t.Errorf("user create %s: %q, %v; want an error saying that the name is reserved for the command line", cliActor, out, err)
	}
	if out, err := create("alice"); err != nil || !strings.HasSuffix(out, "created user alice (publisher)\n") {
		t.Errorf("user create alice: %q, %v", out, err)
	}
}

// run runs the agora command with args and stdin, and returns its output
// and error.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Execute(context.Background(), args, strings.NewReader(stdin), &out, &out)
	return out.String(), err
}

// TestUserCreateRefusesAnEmptyPassword checks that --password-stdin with
// an empty line creates no user: it used to create one without a
// password, exiting 0, when a script's variable was empty.
func TestUserCreateRefusesAnEmptyPassword(t *testing.T) {
	offlineEnv(t)
	for _, stdin := range []string{"\n", "\r\n", ""} {
		out, err := run(t, stdin, "user", "create", "bob", "--role", "viewer", "--password-stdin")
		if err == nil || !strings.Contains(err.Error(), "--password-stdin") {
			t.Errorf("password %q: %v, %q; want an error naming --password-stdin", stdin, err, out)
		}
	}
	// No user was made: the name is free.
	if out, err := run(t, "s3cret-passphrase\n", "user", "create", "bob", "--role", "viewer", "--password-stdin"); err != nil {
		t.Errorf("user create with a password: %v\n%s", err, out)
	}
}

// TestUnknownSubcommands checks that a mistyped subcommand is an error: it
// used to print the help and exit 0, so that a script's `agora token revok
// 3` seemed to revoke the token.
func TestUnknownSubcommands(t *testing.T) {
	offlineEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "revok", "3"}, `unknown command "revok" for "agora token" (did you mean revoke?)`},
		{[]string{"user", "crate", "bob"}, `unknown command "crate" for "agora user" (did you mean create?)`},
		// The root's are told too.
		{[]string{"migrat"}, `unknown command "migrat" for "agora" (did you mean migrate?)`},
		{[]string{"usr", "create", "bob"}, `unknown command "usr" for "agora" (did you mean user?)`},
		{[]string{"token"}, `name a command after "agora token": create, list or revoke`},
		{[]string{"user"}, `name a command after "agora user": create`},
	} {
		out, err := run(t, "", tt.args...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("agora %s: %v; want %q\n%s", strings.Join(tt.args, " "), err, tt.want, out)
		}
	}
	// Help is still help.
	if out, err := run(t, "", "token", "--help"); err != nil || !strings.Contains(out, "revoke") {
		t.Errorf("agora token --help: %v\n%s", err, out)
	}
}

// TestDatabaseErrorsNameTheVariable checks that a database that cannot be
// opened is reported with DATABASE_URL and its URL, without the password:
// "database: unable to open database file (14)" named neither.
func TestDatabaseErrorsNameTheVariable(t *testing.T) {
	data := offlineEnv(t)
	for _, tt := range []struct{ url, want string }{
		{"sqlite3://" + data + "/missing/agora.db", "DATABASE_URL=sqlite3://" + data + "/missing/agora.db: "},
		{"postgres://agora:secret@127.0.0.1:1/agora?sslmode=disable", "DATABASE_URL=postgres://agora:xxxxx@127.0.0.1:1/agora?sslmode=disable: "},
	} {
		t.Setenv("DATABASE_URL", tt.url)
		_, err := run(t, "", "migrate")
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("DATABASE_URL=%s: %v; want an error starting %q", tt.url, err, tt.want)
		}
	}
}

// TestTaskList checks that `agora task` lists the tasks as they are run,
// not as `grift NAME`, a command that does not exist here.
func TestTaskList(t *testing.T) {
	offlineEnv(t)
	out, err := run(t, "", "task")
	if err != nil || !strings.Contains(out, "agora task db:migrate ") || strings.Contains(out, "grift ") {
		t.Errorf("agora task: %v\n%s\nwant agora task db:migrate, and no grift NAME", err, out)
	}
}

// TestAccountCommandsLeaveTheDataDirAlone checks that the commands that
// only change the database do not make AGORA_DATA_DIR when the database is
// elsewhere: with PostgreSQL they made ./data in whatever directory the
// operator ran them in, and failed where that directory was not writable
// ("AGORA_DATA_DIR: mkdir /data: permission denied"), though they use
// nothing in it. The default SQLite database still gets its directory.
func TestAccountCommandsLeaveTheDataDirAlone(t *testing.T) {
	for _, dialect := range []string{"sqlite3", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			offlineEnv(t)
			data := filepath.Join(t.TempDir(), "data")
			t.Setenv("AGORA_DATA_DIR", data)
			t.Setenv("AGORA_STORAGE_DIR", "")
			t.Setenv("DATABASE_URL", modelstest.URL(t, dialect))
			for _, args := range [][]string{
				{"migrate"},
				{"user", "create", "alice", "--role", "admin"},
				{"token", "create", "alice"},
				{"token", "list", "alice"},
				{"token", "revoke", "1"},
			} {
				if out, err := run(t, "", args...); err != nil {
					t.Fatalf("agora %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("agora %s made AGORA_DATA_DIR (%v); want it left alone", strings.Join(args, " "), err)
				}
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		offlineEnv(t)
		data := filepath.Join(t.TempDir(), "data")
		t.Setenv("AGORA_DATA_DIR", data)
		t.Setenv("AGORA_STORAGE_DIR", "")
		if out, err := run(t, "", "user", "create", "alice", "--role", "admin"); err != nil {
			t.Fatalf("agora user create: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(data, "agora.db")); err != nil {
			t.Errorf("the default SQLite database: %v", err)
		}
	})
}

// failingWriter fails every write, as standard output closed (>&-) or on
// a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) {
	return 0, errors.New("write /dev/stdout: bad file descriptor")
}

// TestTokenCreateUnwritten checks that a token that could not be written
// to standard output is an error, and is revoked: nobody has it, and
// nobody can get it again. agora token create exited 0, leaving a valid
// token that no one had seen.
func TestTokenCreateUnwritten(t *testing.T) {
	offlineEnv(t)
	if out, err := run(t, "", "user", "create", "alice", "--role", "admin"); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	err := Execute(context.Background(), []string{"token", "create", "alice"}, strings.NewReader(""), failingWriter{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "bad file descriptor") || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("token create with standard output closed: %v; want the write's error, saying the token is revoked", err)
	}
	if strings.Contains(stderr.String(), "store it now") {
		t.Errorf("token create with standard output closed said %q", stderr.String())
	}
	out, err := run(t, "", "token", "list", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.HasSuffix(lines[1], " -") {
		t.Errorf("token list after the token was not written:\n%s\nwant it revoked", out)
	}
}

// countingReader yields n bytes of 'a', without a line break, and counts
// those read.
type countingReader struct{ n, read int }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	k := min(len(p), r.n-r.read)
	for i := range k {
		p[i] = 'a'
	}
	r.read += k
	return k, nil
}

// TestUserCreatePasswordStdinBounded checks that --password-stdin reads a
// bounded line: it read standard input to its first line break whatever
// its size, so that agora user create ... --password-stdin < /dev/zero
// grew until the machine ran out of memory, for a password that bcrypt
// takes 72 bytes of.
func TestUserCreatePasswordStdinBounded(t *testing.T) {
	offlineEnv(t)
	stdin := &countingReader{n: 16 << 20}
	var out bytes.Buffer
	err := Execute(context.Background(), []string{"user", "create", "bob", "--role", "viewer", "--password-stdin"}, stdin, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("user create with a 16 MiB password: %v; want it too long\n%s", err, out.String())
	}
	if stdin.read > 64<<10 {
		t.Errorf("user create read %d bytes of standard input for a password; want at most 64 KiB", stdin.read)
	}
}

// TestNewDatabaseNamed checks that a command that makes the default
// SQLite database, finding none in AGORA_DATA_DIR, says so and where: run
// in another directory than the server's, or without its AGORA_DATA_DIR,
// agora user create made ./data/agora.db there, and said only "created
// user alice", and agora token list only that the user was not found.
func TestNewDatabaseNamed(t *testing.T) {
	data := offlineEnv(t)
	db := filepath.Join(data, "agora.db")
	for _, args := range [][]string{
		{"token", "list", "alice"},
		{"user", "create", "alice", "--role", "admin"},
		{"migrate"},
	} {
		for _, name := range []string{db, db + "-wal", db + "-shm"} {
			os.Remove(name)
		}
		var stdout, stderr bytes.Buffer
		Execute(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		if want := "agora: made a new database, " + db + " "; !strings.HasPrefix(stderr.String(), want) || !strings.Contains(stderr.String(), "AGORA_DATA_DIR") {
			t.Errorf("agora %s on no database said:\n%s\nwant it to start %q and name AGORA_DATA_DIR", strings.Join(args, " "), stderr.String(), want)
		}
		stderr.Reset()
		Execute(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		if strings.Contains(stderr.String(), "new database") {
			t.Errorf("agora %s on a database made before said:\n%s", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestTokenCreateNamesTheScopeItActsWith checks that a token whose scope
// is more than its user's role allows is said to act with the role's:
// agora token create bob --scope admin, for a viewer, said "scope admin",
// and the token then only read.
func TestTokenCreateNamesTheScopeItActsWith(t *testing.T) {
	offlineEnv(t)
	if out, err := run(t, "", "user", "create", "bob", "--role", "viewer"); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	if err := Execute(context.Background(), []string{"token", "create", "bob", "--scope", "admin"}, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := "token 1 for bob, scope admin, which acts as read while bob is a viewer: shown once, store it now\n"; stderr.String() != want {
		t.Errorf("token create bob --scope admin, for a viewer, said %q; want %q", stderr.String(), want)
	}
}

// TestUserCreateRefusedBeforeTheDatabase checks that a user name that is
// refused is refused before the database is opened: agora user create
// Alice made the database first, so that, run where the server's is not,
// it took the warning of a new database with it, and the next, with a
// good name, went into that database without one.
func TestUserCreateRefusedBeforeTheDatabase(t *testing.T) {
	offlineEnv(t)
	data := filepath.Join(t.TempDir(), "data")
	t.Setenv("AGORA_DATA_DIR", data)
	for _, name := range []string{"Alice", "", cliActor, strings.Repeat("a", 65), "élodie"} {
		if out, err := run(t, "", "user", "create", name, "--role", "admin"); err == nil {
			t.Errorf("user create %q: no error\n%s", name, out)
		}
		if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("user create %q, refused, made AGORA_DATA_DIR (%v)", name, err)
		}
	}
	// So is a password that is too short or too long.
	for _, password := range []string{"short", strings.Repeat("p", 73)} {
		if out, err := run(t, password+"\n", "user", "create", "alice", "--role", "admin", "--password-stdin"); err == nil {
			t.Errorf("user create with a password of %d bytes: no error\n%s", len(password), out)
		}
		if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("user create with a password of %d bytes, refused, made AGORA_DATA_DIR (%v)", len(password), err)
		}
	}
}
