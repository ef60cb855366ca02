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
