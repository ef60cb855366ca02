package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// writeCachedVersion puts path@version in the module cache download
// directory dl as the go command does, with a go.mod and one Go file, and
// returns the zip's name.
func writeCachedVersion(t *testing.T, dl, path, version string) string {
	t.Helper()
	src := t.TempDir()
	gomod := "module " + path + "\n\ngo 1.22\n"
	for name, data := range map[string]string{"go.mod": gomod, "m.go": "package m\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vdir := filepath.Join(dl, filepath.FromSlash(path), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	zipName := filepath.Join(vdir, version+".zip")
	zf, err := os.Create(zipName)
	if err != nil {
		t.Fatal(err)
	}
	if err := modzip.CreateFromDir(zf, module.Version{Path: path, Version: version}, src); err != nil {
		t.Fatal(err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(zipName, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	for ext, data := range map[string]string{
		".info":    `{"Version":"` + version + `","Time":"2024-01-01T00:00:00Z"}`,
		".mod":     gomod,
		".ziphash": h,
	} {
		if err := os.WriteFile(filepath.Join(vdir, version+ext), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return zipName
}

// offlineEnv sets the environment of an Agora that fetches nothing, on
// SQLite in a new data directory, which it returns.
func offlineEnv(t *testing.T) string {
	data := t.TempDir()
	t.Setenv("AGORA_DATA_DIR", data)
	t.Setenv("DATABASE_URL", "")
	t.Setenv("AGORA_UPSTREAM", "off")
	t.Setenv("AGORA_SUMDB", "off")
	t.Setenv("GO_ENV", "test")
	t.Setenv("AGORA_STORAGE_DIR", filepath.Join(data, "storage"))
	return data
}

func TestImportCommand(t *testing.T) {
	data := offlineEnv(t)

	cache := t.TempDir()
	dl := filepath.Join(cache, "cache", "download")
	writeCachedVersion(t, dl, "example.com/a", "v1.0.0")
	bad := writeCachedVersion(t, dl, "example.com/b", "v1.0.0")
	if err := os.Truncate(bad, 100); err != nil {
		t.Fatal(err)
	}

	run := func() (string, error) {
		var out bytes.Buffer
		err := Execute(context.Background(), []string{"import", cache}, strings.NewReader(""), &out, &out)
		return out.String(), err
	}
	out, err := run()
	if err == nil || !strings.Contains(err.Error(), "1 invalid") {
		t.Errorf("import with a corrupt zip: %v; want an error counting it", err)
	}
	for _, want := range []string{
		"[1/2] example.com/a@v1.0.0 imported\n",
		"[2/2] example.com/b@v1.0.0 invalid: ",
		"2 versions: 1 imported, 0 restored, 0 skipped, 0 conflict, 1 invalid, 0 unreadable; 0 of them a go.mod without a zip, 0 a zip without an .info\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "storage", "example.com", "a", "@v", "v1.0.0.zip")); err != nil {
		t.Errorf("imported zip not in storage: %v", err)
	}

	out, _ = run()
	if !strings.Contains(out, "[1/2] example.com/a@v1.0.0 skipped: already stored\n") {
		t.Errorf("second import output:\n%s\nwant example.com/a skipped", out)
	}
}

// TestImportInterrupted checks that an interrupted import says to run it
// again, whether it runs as a command or as the modules:import task, which
// must behave the same.
func TestImportInterrupted(t *testing.T) {
	offlineEnv(t)
	cache := t.TempDir()
	writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as Ctrl-C does before the first version
	for _, args := range [][]string{{"import", cache}, {"task", "modules:import", cache}} {
		var out bytes.Buffer
		err := Execute(ctx, args, strings.NewReader(""), &out, &out)
		if err == nil || !strings.HasPrefix(err.Error(), "import interrupted: run it again") {
			t.Errorf("agora %s, interrupted: %v; want it to say to run it again", strings.Join(args, " "), err)
		}
	}
}

// TestImportStagesApartFromTheServer checks that an import stages its
// copies outside tmp/, which a server starting on the same data directory
// clears (an import may run beside a server), and that it removes only the
// copies that killed imports left long ago, not another import's.
func TestImportStagesApartFromTheServer(t *testing.T) {
	data := offlineEnv(t)
	cache := t.TempDir()
	writeCachedVersion(t, filepath.Join(cache, "cache", "download"), "example.com/a", "v1.0.0")
	// No tmp/ directory can be made: an import that stages there fails.
	if err := os.WriteFile(filepath.Join(data, "tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(data, "tmp-import")
	if err := os.MkdirAll(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	killed, running := filepath.Join(staging, "import-1.zip"), filepath.Join(staging, "import-2.zip")
	for _, name := range []string{killed, running} {
		if err := os.WriteFile(name, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(killed, long, long); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := Execute(context.Background(), []string{"import", cache}, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(killed); err == nil {
		t.Errorf("%s, left long ago, was kept", killed)
	}
	if _, err := os.Stat(running); err != nil {
		t.Errorf("another import's copy: %v", err)
	}
}
