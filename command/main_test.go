package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"agora/config"
	"agora/internal/testutil"
)

// TestMain runs the tests; in a process that a test started to be agora
// (AGORA_TEST_ARGS set, to agora's arguments, one per line), it runs the
// agora command instead.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("AGORA_TEST_ARGS"); ok {
		os.Exit(runMain(context.Background(), strings.Split(args, "\n"), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// exitTests are command lines and the exit status agora ends them with:
// 2 for a command line it cannot run, as the go command and package flag
// do, 1 for a failure, 0 for success. They run in order, on one database.
var exitTests = []struct {
	args   []string
	status int
}{
	{[]string{"--help"}, 0},
	{[]string{"token", "--help"}, 0},
	{[]string{"user", "create", "--help"}, 0},

	// Unknown commands and flags.
	{[]string{"bogus"}, 2},
	{[]string{"token", "revok", "3"}, 2},
	{[]string{"token"}, 2},
	{[]string{"--bogus"}, 2},
	{[]string{"user", "create", "bob", "--rol", "admin"}, 2},
	{[]string{"token", "list", "-x", "alice"}, 2},
	// Arguments missing, or too many.
	{[]string{"import"}, 2},
	{[]string{"user", "create", "--role", "admin"}, 2},
	{[]string{"migrate", "now"}, 2},
	{[]string{"serve", "now"}, 2},
	{[]string{"token", "list", "alice", "bob"}, 2},
	{[]string{"token", "revoke"}, 2},
	// Flags missing, without their value, or with one out of their set.
	{[]string{"user", "create", "bob"}, 2},
	{[]string{"user", "create", "bob", "--role"}, 2},
	{[]string{"user", "create", "bob", "--role", "root"}, 2},
	{[]string{"user", "create", "bob", "--role", "admin", "--password-stdin=maybe"}, 2},
	{[]string{"token", "create", "alice", "--scope", "write"}, 2},
	{[]string{"token", "revoke", "three"}, 2},
	// An empty argument, as an unset variable gives: "$GOMODCACHE".
	{[]string{"import", ""}, 2},
	{[]string{"task", "modules:import", ""}, 2},

	// What the command line asks is refused, or fails.
	{[]string{"user", "create", "alice", "--role", "admin"}, 0},
	{[]string{"user", "create", "alice", "--role", "admin"}, 1},                   // exists
	{[]string{"user", "create", "Bob", "--role", "admin"}, 1},                     // not a user name
	{[]string{"user", "create", "bob", "--role", "admin", "--password-stdin"}, 1}, // no password on stdin
	{[]string{"token", "create", "nobody"}, 1},
	{[]string{"token", "revoke", "42"}, 1},
	{[]string{"import", "/nonexistent"}, 1},
}

// TestExitStatus checks that agora exits 2 when its command line is wrong
// and 1 when what it was asked failed, and names the help to read after a
// usage error: it exited 1 for both, so that a script could not tell its
// own mistake from a failure worth trying again.
func TestExitStatus(t *testing.T) {
	offlineEnv(t)
	for _, tt := range exitTests {
		var stdout, stderr bytes.Buffer
		status := runMain(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if status != tt.status {
			t.Errorf("agora %s: exit status %d, want %d\n%s%s", strings.Join(tt.args, " "), status, tt.status, stdout.String(), stderr.String())
			continue
		}
		if status == 0 {
			continue
		}
		if !strings.HasPrefix(stderr.String(), "agora: ") {
			t.Errorf("agora %s: standard error %q; want it to start with agora: and the error", strings.Join(tt.args, " "), stderr.String())
		}
		hint := strings.Contains(stderr.String(), "--help' for usage.\n")
		if hint != (status == 2) {
			t.Errorf("agora %s: exit status %d, with a hint of the help to read: %v\n%s", strings.Join(tt.args, " "), status, hint, stderr.String())
		}
	}
}

// TestExitStatusDatabaseUnavailable checks that a database out of reach
// is a failure, exit status 1, whatever the command.
func TestExitStatusDatabaseUnavailable(t *testing.T) {
	data := offlineEnv(t)
	url := strings.Replace(testutil.RefusedURL(t), "http://", "postgres://agora@", 1) + "/agora?sslmode=disable"
	for _, env := range []string{url, "sqlite3://" + filepath.Join(data, "missing", "agora.db")} {
		t.Setenv("DATABASE_URL", env)
		for _, args := range [][]string{
			{"migrate"},
			{"user", "create", "alice", "--role", "admin"},
			{"token", "list", "alice"},
			{"task", "db:migrate"},
			{"import", data},
		} {
			var stderr bytes.Buffer
			if status := runMain(context.Background(), args, strings.NewReader(""), &stderr, &stderr); status != 1 || !strings.Contains(stderr.String(), "DATABASE_URL=") {
				t.Errorf("DATABASE_URL=%s agora %s: exit status %d, want 1 and the database named\n%s", env, strings.Join(args, " "), status, stderr.String())
			}
		}
	}
}

// TestHelpAndCompletionOfUnknownCommands checks that help and completion
// refuse a command they do not know: agora help bogus printed the help of
// agora and exited 0, and so did agora completion bogus, as if it had
// written a completion script.
func TestHelpAndCompletionOfUnknownCommands(t *testing.T) {
	offlineEnv(t)
	for _, tt := range []struct {
		args   []string
		status int
		stdout string // what standard output holds
	}{
		{[]string{"help"}, 0, "Available Commands:"},
		{[]string{"help", "token"}, 0, "agora token [command]"},
		{[]string{"help", "token", "revoke"}, 0, "agora token revoke ID"},
		{[]string{"help", "bogus"}, 2, ""},
		{[]string{"help", "token", "revok"}, 2, ""},
		{[]string{"completion", "bash"}, 0, "bash completion"},
		{[]string{"completion", "bogus"}, 2, ""},
		{[]string{"completion"}, 2, ""},
	} {
		var stdout, stderr bytes.Buffer
		status := runMain(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if status != tt.status || !strings.Contains(stdout.String(), tt.stdout) || tt.stdout == "" && stdout.Len() > 0 {
			t.Errorf("agora %s: exit status %d, want %d; standard output:\n%s\nwant it to hold %q\nstandard error:\n%s",
				strings.Join(tt.args, " "), status, tt.status, stdout.String(), tt.stdout, stderr.String())
		}
	}
}

// TestHelpNamesEverySetting checks that agora's help names every
// environment variable a server reads: AGORA_LOG_FORMAT and
// AGORA_LOG_LEVEL were missing from it.
func TestHelpNamesEverySetting(t *testing.T) {
	offlineEnv(t)
	var stdout, stderr bytes.Buffer
	if status := runMain(context.Background(), []string{"help"}, strings.NewReader(""), &stdout, &stderr); status != 0 {
		t.Fatalf("agora help: exit status %d\n%s", status, stderr.String())
	}
	named := map[string]bool{}
	for _, w := range regexp.MustCompile(`[A-Z][A-Z_]+[A-Z]`).FindAllString(stdout.String(), -1) {
		named[w] = true
	}
	for _, name := range config.Variables {
		if !named[name] {
			t.Errorf("agora help does not name %s", name)
		}
	}
}

// TestTaskUsage checks that a task that does not exist, or one given
// arguments it does not take, is a wrong command line: agora task
// db:migrate now ran db:migrate, and agora task storage:verify DIR
// verified all of storage, not DIR, both with the exit status 0.
func TestTaskUsage(t *testing.T) {
	offlineEnv(t)
	for _, tt := range []struct {
		args   []string
		status int
		stderr string // what standard error holds
	}{
		{[]string{"task", "bogus"}, 2, `unknown task "bogus"`},
		{[]string{"task", "db:migrate", "now"}, 2, "usage: agora task db:migrate\n"},
		{[]string{"task", "storage:verify", "example.com/m"}, 2, "usage: agora task storage:verify [repair]\n"},
		{[]string{"task", "storage:verify", "repair", "now"}, 2, "usage: agora task storage:verify [repair]\n"},
		{[]string{"task", "modules:import"}, 2, "usage: agora task modules:import DIR\n"},
		{[]string{"task", "modules:import", "a", "b"}, 2, "usage: agora task modules:import DIR\n"},
		{[]string{"task", "db:backup"}, 2, "usage: agora task db:backup FILE\n"},
		{[]string{"task", "db:backup", "a", "b"}, 2, "usage: agora task db:backup FILE\n"},
		{[]string{"task", "db:backup", ""}, 2, "usage: agora task db:backup FILE\n"},
		{[]string{"task", "db:migrate"}, 0, ""},
	} {
		var stdout, stderr bytes.Buffer
		status := runMain(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if status != tt.status || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("agora %s: exit status %d, want %d; standard error:\n%s\nwant it to hold %q",
				strings.Join(tt.args, " "), status, tt.status, stderr.String(), tt.stderr)
		}
	}
}

// TestTaskListAsList checks that agora task list lists the tasks as agora
// task does, on the command's output: it printed them as `grift NAME`, a
// command that does not exist here, on the process's standard output.
func TestTaskListAsList(t *testing.T) {
	offlineEnv(t)
	out, err := run(t, "", "task", "list")
	if err != nil || !strings.Contains(out, "agora task db:migrate ") || strings.Contains(out, "grift ") {
		t.Errorf("agora task list: %v\n%s\nwant agora task db:migrate, and no grift NAME", err, out)
	}
}

// TestOutputStreams checks where each command writes: what a script
// would use (a token, a list, an import's report) on standard output, and
// what the command did on standard error, with the warnings and errors.
// agora task db:migrate said "database is up to date" on standard output
// where agora migrate says it on standard error; agora user create and
// agora token revoke said what they did on standard output where agora
// token create says it on standard error.
func TestOutputStreams(t *testing.T) {
	offlineEnv(t)
	cache := t.TempDir()
	writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")
	token := regexp.MustCompile(`^agora_[a-z0-9]+\n$`)
	if out, err := run(t, "", "migrate"); err != nil { // not to hear of a new database
		t.Fatalf("agora migrate: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args           []string
		stdout, stderr string // regular expressions
	}{
		{[]string{"migrate"}, `^$`, `^database is up to date\n$`},
		{[]string{"task", "db:migrate"}, `^$`, `^database is up to date\n$`},
		{[]string{"user", "create", "alice", "--role", "admin"}, `^$`, `^created user alice \(admin\)\n$`},
		{[]string{"token", "create", "alice"}, token.String(), `^token 1 for alice, scope read: shown once, store it now\n$`},
		{[]string{"token", "list", "alice"}, `^ID +TOKEN .*\n1 +agora_`, `^$`},
		{[]string{"token", "revoke", "1"}, `^$`, `^revoked token 1\n$`},
		{[]string{"task"}, `agora task db:migrate `, `^$`},
		{[]string{"import", cache}, `^\[1/1\] example.com/a@v1.0.0 imported\n1 version: `, `^$`},
		{[]string{"task", "modules:import", cache}, `^\[1/1\] example.com/a@v1.0.0 skipped: already stored\n1 version: `, `^$`},
		{[]string{"task", "storage:verify"}, `^checked 1 version, 0 bad\n$`, `^$`},
	} {
		var stdout, stderr bytes.Buffer
		if status := runMain(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr); status != 0 {
			t.Errorf("agora %s: exit status %d\n%s%s", strings.Join(tt.args, " "), status, stdout.String(), stderr.String())
			continue
		}
		if !regexp.MustCompile(tt.stdout).MatchString(stdout.String()) {
			t.Errorf("agora %s: standard output %q; want it to match %s", strings.Join(tt.args, " "), stdout.String(), tt.stdout)
		}
		if !regexp.MustCompile(tt.stderr).MatchString(stderr.String()) {
			t.Errorf("agora %s: standard error %q; want it to match %s", strings.Join(tt.args, " "), stderr.String(), tt.stderr)
		}
	}
}

// TestArgumentErrorsNameTheArgument checks that an argument missing or one
// too many is named: cobra said "accepts 1 arg(s), received 0".
func TestArgumentErrorsNameTheArgument(t *testing.T) {
	offlineEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"import"}, "missing DIR"},
		{[]string{"import", "a", "b"}, `unexpected argument "b" after DIR`},
		{[]string{"user", "create", "--role", "admin"}, "missing NAME"},
		{[]string{"token", "create"}, "missing USER"},
		{[]string{"token", "list", "alice", "bob"}, `unexpected argument "bob" after USER`},
		{[]string{"token", "revoke"}, "missing ID"},
		{[]string{"migrate", "now"}, `agora migrate takes no arguments, not "now"`},
		{[]string{"serve", "now"}, `agora serve takes no arguments, not "now"`},
	} {
		_, err := run(t, "", tt.args...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("agora %s: %v; want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestCommandsNeedOnlyTheirSettings checks that the commands other than
// serve read only the settings they use, AGORA_DATA_DIR, AGORA_STORAGE_DIR
// and DATABASE_URL, while the server still refuses to start on any bad
// one: every command loaded and checked the server's whole configuration,
// so that with GO_ENV=production `agora token create` failed for want of
// a SESSION_SECRET, which only the server's sessions use, and a bad ADDR
// or AGORA_RULES stopped `agora migrate`.
func TestCommandsNeedOnlyTheirSettings(t *testing.T) {
	for _, tt := range []struct {
		key, val string
		want     string // what the server's error names
	}{
		{"GO_ENV", "production", "SESSION_SECRET"}, // and SESSION_SECRET unset
		{"GO_ENV", "staging", "GO_ENV"},
		{"ADDR", "127.0.0.1:x", "ADDR"},
		{"PORT", "70000", "PORT"},
		{"AGORA_READ_AUTH", "open", "AGORA_READ_AUTH"},
		{"AGORA_SHUTDOWN_TIMEOUT", "soon", "AGORA_SHUTDOWN_TIMEOUT"},
		{"AGORA_SHUTDOWN_DELAY", "-5s", "AGORA_SHUTDOWN_DELAY"},
		{"AGORA_UPSTREAM", "ftp://mirror.example", "AGORA_UPSTREAM"},
		{"AGORA_RULES", "/nonexistent/rules", "AGORA_RULES"},
		{"AGORA_NOSUMDB", "corp.example.com,[", "AGORA_NOSUMDB"},
		{"AGORA_LIST_TTL", "-1s", "AGORA_LIST_TTL"},
	} {
		t.Run(tt.key+"="+tt.val, func(t *testing.T) {
			offlineEnv(t)
			t.Setenv("SESSION_SECRET", "")
			t.Setenv(tt.key, tt.val)
			cache := t.TempDir()
			writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")
			for _, args := range [][]string{
				{"migrate"},
				{"user", "create", "ci", "--role", "publisher"},
				{"token", "create", "ci"},
				{"token", "list", "ci"},
				{"token", "revoke", "1"},
				{"import", cache},
				{"task", "db:migrate"},
				{"task", "modules:import", cache},
				{"task", "storage:verify"},
			} {
				if out, err := run(t, "", args...); err != nil {
					t.Errorf("%s=%s agora %s: %v\n%s", tt.key, tt.val, strings.Join(args, " "), err, out)
				}
			}
			// A server that started despite the setting stops at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for _, args := range [][]string{{}, {"serve"}} {
				var out bytes.Buffer
				err := Execute(ctx, args, strings.NewReader(""), &out, &out)
				if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s=%s agora %s: %v; want one line naming %s", tt.key, tt.val, strings.Join(args, " "), err, tt.want)
				}
			}
		})
	}

	// What the commands use is checked as the server checks it.
	offlineEnv(t)
	t.Setenv("DATABASE_URL", "mysql://db.example/agora")
	for _, args := range [][]string{{"migrate"}, {"token", "list", "ci"}, {"task", "db:migrate"}, {"serve"}} {
		want := "config: DATABASE_URL must be a postgres:// or sqlite3:// URL"
		if _, err := run(t, "", args...); err == nil || err.Error() != want {
			t.Errorf("DATABASE_URL=mysql://… agora %s: %v; want %q", strings.Join(args, " "), err, want)
		}
	}
}
