package command

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
	if out, err := create("alice"); err != nil || out != "created user alice (publisher)\n" {
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
