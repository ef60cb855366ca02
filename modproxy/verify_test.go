package modproxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"agora/modproxy"
)

func TestVerifyStorage(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	r.publish(t, alice, "example.com/a", "v1.0.0", moduleZip(t, "example.com/a", "v1.0.0", "package a\n"))
	r.publish(t, alice, "example.com/a", "v1.1.0", moduleZip(t, "example.com/a", "v1.1.0", "package a\n"))
	r.publish(t, alice, "example.com/Upper", "v0.1.0", moduleZip(t, "example.com/Upper", "v0.1.0", "package upper\n"))
	r.publish(t, alice, "example.com/gone", "v1.0.0", moduleZip(t, "example.com/gone", "v1.0.0", "package gone\n"))
	if err := r.Delete(ctx, alice, "example.com/gone", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	verify := func() (int, []string) {
		t.Helper()
		var problems []string
		n, err := r.VerifyStorage(ctx, func(p modproxy.Problem) {
			problems = append(problems, p.Path+"@"+p.Version+": "+p.Err.Error())
		})
		if err != nil {
			t.Fatal(err)
		}
		return n, problems
	}
	if n, problems := verify(); n != 3 || len(problems) != 0 {
		t.Fatalf("clean storage: checked %d, problems %q; want 3 checked, none", n, problems)
	}

	// Corrupt one zip (same size, other bytes), remove one go.mod.
	dir := filepath.Join(r.disk.Root(), "example.com/a/@v")
	other, err := os.ReadFile(filepath.Join(dir, "v1.1.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v1.0.0.zip"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.disk.Root(), "example.com/!upper/@v/v0.1.0.mod")); err != nil {
		t.Fatal(err)
	}
	n, problems := verify()
	if n != 3 || len(problems) != 2 ||
		!strings.HasPrefix(problems[0], "example.com/Upper@v0.1.0: ") && !strings.HasPrefix(problems[1], "example.com/Upper@v0.1.0: ") {
		t.Fatalf("checked %d, problems %q; want the zip of a@v1.0.0 and the go.mod of Upper@v0.1.0", n, problems)
	}
	for _, p := range problems {
		if strings.HasPrefix(p, "example.com/a@v1.0.0") && !strings.Contains(p, "zip hashes to") {
			t.Errorf("corrupted zip reported as %q", p)
		}
	}
}

// TestVerifyStorageRewritesLists checks that storage:verify rewrites every
// module's @v/list file from the database: a server killed between a
// fetch's commit and its list's rewrite leaves a list without the version,
// which no later request repairs (they find the record), and readers of the
// storage as a GOPROXY=file:// tree then miss the version.
func TestVerifyStorageRewritesLists(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	r.publish(t, alice, "example.com/a", "v1.0.0", moduleZip(t, "example.com/a", "v1.0.0", "package a\n"))
	r.publish(t, alice, "example.com/a", "v1.1.0", moduleZip(t, "example.com/a", "v1.1.0", "package a\n"))
	const list = "example.com/a/@v/list"
	want := r.storedFiles(t)[list]
	if want != "v1.0.0\nv1.1.0\n" {
		t.Fatalf("list file %q after two publishes", want)
	}
	// As a cut-off fetch of v1.1.0 leaves it.
	if err := r.disk.PutList(ctx, "example.com/a", []string{"v1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.VerifyStorage(ctx, func(p modproxy.Problem) { t.Errorf("problem: %+v", p) }); err != nil {
		t.Fatal(err)
	}
	if got := r.storedFiles(t)[list]; got != want {
		t.Errorf("list file after storage:verify = %q; want %q", got, want)
	}
}
