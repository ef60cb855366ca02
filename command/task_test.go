package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorageVerifyTask checks what agora task storage:verify says and
// exits with: a stale @v/list file it rewrites is a FIXED line and exit
// status 0 (it was rewritten without a word), files that no record
// announces a BAD line and exit status 1, each counted in the summary.
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
	verify := func() (int, string) {
		var stdout, stderr bytes.Buffer
		status := runMain(context.Background(), []string{"task", "storage:verify"}, strings.NewReader(""), &stdout, &stderr)
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
}
