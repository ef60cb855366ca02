package modproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/modproxy"
	"agora/storage"
)

// moduleCache builds a module cache ($GOMODCACHE) for import tests, laid
// out as the go command lays out cache/download.
type moduleCache struct {
	t    *testing.T
	root string
}

func newModuleCache(t *testing.T) *moduleCache {
	return &moduleCache{t: t, root: t.TempDir()}
}

// download returns the cache/download directory.
func (c *moduleCache) download() string { return filepath.Join(c.root, "cache", "download") }

// write writes data as the file of path@version with extension ext
// (".zip", ".ziphash", ...).
func (c *moduleCache) write(path, version, ext string, data []byte) {
	c.t.Helper()
	escPath, err := module.EscapePath(path)
	if err != nil {
		c.t.Fatal(err)
	}
	escVersion, err := module.EscapeVersion(version)
	if err != nil {
		c.t.Fatal(err)
	}
	writeTestFile(c.t, filepath.Join(c.download(), filepath.FromSlash(escPath), "@v", escVersion+ext), data)
}

// writeTestFile writes data to name, making its directory.
func writeTestFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cached is one version put in a moduleCache, as the test expects it back.
type cached struct {
	path, version string
	zip, mod      []byte
	time          time.Time
}

// add puts path@version in the cache as the go command leaves a version
// it downloaded: .info, .mod, .zip, .ziphash and a .lock. The zip holds
// files (name → content); the .mod is its go.mod, or the one the go command
// synthesises for a module without one.
func (c *moduleCache) add(path, version string, tm time.Time, files map[string]string) cached {
	c.t.Helper()
	zipData := createModuleZip(c.t, path, version, files)
	mod := []byte(files["go.mod"])
	if _, ok := files["go.mod"]; !ok {
		mod = []byte("module " + path + "\n")
	}
	info := fmt.Sprintf(`{"Version":%q,"Time":%q,"Origin":{"VCS":"git","URL":"https://%s","Ref":"refs/tags/%s"}}`,
		version, tm.Format(time.RFC3339), path, version)
	c.write(path, version, ".info", []byte(info))
	c.write(path, version, ".mod", mod)
	c.write(path, version, ".zip", zipData)
	c.write(path, version, ".ziphash", []byte(hashZipBytes(c.t, zipData)))
	c.write(path, version, ".lock", nil)
	return cached{path: path, version: version, zip: zipData, mod: mod, time: tm}
}

// createModuleZip returns the module zip of path@version holding files, as
// golang.org/x/mod/zip creates it from a directory.
func createModuleZip(t *testing.T, path, version string, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		name = filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: path, Version: version}, dir); err != nil {
		t.Fatalf("creating the zip of %s@%s: %v", path, version, err)
	}
	return buf.Bytes()
}

// moduleFiles returns the files of a small module at path: a go.mod and
// one Go file whose comment is content.
func moduleFiles(path, content string) map[string]string {
	return map[string]string{
		"go.mod": goMod(path),
		"m.go":   "// " + content + "\npackage m\n",
	}
}

// importFixture is a module cache with every case an import meets, and
// what importing it must yield.
type importFixture struct {
	cache    *moduleCache
	imported []cached // in the order of import
	// outcomes is every version with a zip, in the order of import, as
	// "path@version outcome".
	outcomes []string
	// reasons holds, for each version not imported, words its reason must
	// contain.
	reasons map[string]string
	noZip   int
}

// pseudoVersion is a pseudo-version of example.com/pseudo, cached without
// its .info; its time is the one the version names.
const pseudoVersion = "v0.0.0-20240102030405-abcdefabcdef"

func newImportFixture(t *testing.T) *importFixture {
	t.Helper()
	c := newModuleCache(t)
	day := func(n int) time.Time { return time.Date(2024, 3, n, 10, 0, 0, 0, time.UTC) }
	f := &importFixture{cache: c, reasons: make(map[string]string)}

	beta := c.add("example.com/beta", "v0.1.0", day(1), moduleFiles("example.com/beta", "beta"))
	betaV2 := c.add("example.com/beta/v2", "v2.0.0", day(2), moduleFiles("example.com/beta/v2", "beta v2"))
	// A module from before modules: no go.mod in its zip.
	legacy := c.add("example.com/legacy", "v2.0.0+incompatible", day(3), map[string]string{"legacy.go": "package legacy\n"})
	upper := c.add("github.com/Upper/Case", "v1.0.0", day(4), moduleFiles("github.com/Upper/Case", "upper"))
	alpha1 := c.add("golang.org/x/alpha", "v1.0.0", day(5), moduleFiles("golang.org/x/alpha", "alpha 1"))
	alpha2 := c.add("golang.org/x/alpha", "v1.1.0", day(6), moduleFiles("golang.org/x/alpha", "alpha 1.1"))

	// A pseudo-version downloaded without its .info.
	pseudo := c.add("example.com/pseudo", pseudoVersion, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), moduleFiles("example.com/pseudo", "pseudo"))
	removeCached(t, c, "example.com/pseudo", pseudoVersion, ".info")
	// A release downloaded without its .info: its time is unknown.
	c.add("example.com/noinfo", "v1.0.0", day(7), moduleFiles("example.com/noinfo", "no info"))
	removeCached(t, c, "example.com/noinfo", "v1.0.0", ".info")

	// A truncated zip.
	corrupt := c.add("example.com/corrupt", "v1.0.0", day(8), moduleFiles("example.com/corrupt", "corrupt"))
	c.write("example.com/corrupt", "v1.0.0", ".zip", corrupt.zip[:len(corrupt.zip)/2])
	// A zip whose .ziphash says otherwise: changed after download.
	c.add("example.com/badhash", "v1.0.0", day(9), moduleFiles("example.com/badhash", "bad hash"))
	c.write("example.com/badhash", "v1.0.0", ".ziphash", []byte("h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
	// A .mod that is not the zip's go.mod.
	c.add("example.com/inconsistent", "v1.0.0", day(10), moduleFiles("example.com/inconsistent", "inconsistent"))
	c.write("example.com/inconsistent", "v1.0.0", ".mod", []byte("module example.com/inconsistent\n\nrequire example.com/beta v0.1.0\n"))

	// Versions whose go.mod only was needed.
	c.write("example.com/beta", "v0.2.0", ".mod", []byte(goMod("example.com/beta")))
	c.write("example.com/beta", "v0.2.0", ".info", []byte(`{"Version":"v0.2.0","Time":"2024-04-01T00:00:00Z"}`))
	c.write("golang.org/x/alpha", "v0.9.0", ".mod", []byte(goMod("golang.org/x/alpha")))
	f.noZip = 2

	// What else a module cache holds, to be ignored.
	c.write("golang.org/x/alpha", "v1.2.0", ".zip.partial", []byte("PK"))
	writeTestFile(t, filepath.Join(c.download(), "golang.org", "x", "alpha", "@v", "list"), []byte("v0.9.0\nv1.0.0\nv1.1.0\n"))
	writeTestFile(t, filepath.Join(c.download(), "golang.org", "x", "alpha", "@v", "list.lock"), nil)
	writeTestFile(t, filepath.Join(c.download(), "sumdb", "sum.golang.org", "lookup", "golang.org", "x", "alpha@v1.0.0"), []byte("lookup"))
	writeTestFile(t, filepath.Join(c.root, "golang.org", "x", "alpha@v1.0.0", "go.mod"), []byte(goMod("golang.org/x/alpha")))
	writeTestFile(t, filepath.Join(c.root, "cache", "vcs", "0123abcd", "HEAD"), []byte("ref: refs/heads/main\n"))

	f.imported = []cached{beta, betaV2, legacy, pseudo, upper, alpha1, alpha2}
	f.outcomes = []string{
		"example.com/badhash@v1.0.0 invalid",
		"example.com/beta@v0.1.0 imported",
		"example.com/beta/v2@v2.0.0 imported",
		"example.com/corrupt@v1.0.0 invalid",
		"example.com/inconsistent@v1.0.0 invalid",
		"example.com/legacy@v2.0.0+incompatible imported",
		"example.com/noinfo@v1.0.0 incomplete",
		"example.com/pseudo@" + pseudoVersion + " imported",
		"github.com/Upper/Case@v1.0.0 imported",
		"golang.org/x/alpha@v1.0.0 imported",
		"golang.org/x/alpha@v1.1.0 imported",
	}
	f.reasons = map[string]string{
		"example.com/badhash@v1.0.0":      "the module cache recorded h1:AAAA",
		"example.com/corrupt@v1.0.0":      "not a valid module zip",
		"example.com/inconsistent@v1.0.0": "differs from the go.mod in the zip",
		"example.com/noinfo@v1.0.0":       "no .info file",
	}
	return f
}

// removeCached removes the file of path@version with extension ext.
func removeCached(t *testing.T, c *moduleCache, path, version, ext string) {
	t.Helper()
	escPath, _ := module.EscapePath(path)
	escVersion, _ := module.EscapeVersion(version)
	if err := os.Remove(filepath.Join(c.download(), filepath.FromSlash(escPath), "@v", escVersion+ext)); err != nil {
		t.Fatal(err)
	}
}

// importAll imports dir as admin and returns the summary, the events
// reported, and the error.
func (r *testRegistry) importAll(ctx context.Context, dir string) (modproxy.ImportSummary, []modproxy.ImportEvent, error) {
	var events []modproxy.ImportEvent
	sum, err := r.ImportDir(ctx, admin, dir, func(e modproxy.ImportEvent) { events = append(events, e) })
	return sum, events, err
}

// outcomes returns events as "path@version outcome".
func outcomes(events []modproxy.ImportEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, fmt.Sprintf("%s@%s %s", e.Path, e.Version, e.Outcome))
	}
	return out
}

func TestImportDirModuleCache(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)

	sum, events, err := r.importAll(ctx, f.cache.root)
	if err != nil {
		t.Fatalf("ImportDir: %v", err)
	}
	want := modproxy.ImportSummary{Total: 11, Imported: 7, Invalid: 3, Incomplete: 1, NoZip: f.noZip}
	if sum != want {
		t.Errorf("summary = %+v\nwant %+v", sum, want)
	}
	if sum.Err() == nil {
		t.Error("summary.Err() = nil with invalid versions; want an error")
	}
	if got := outcomes(events); !slices.Equal(got, f.outcomes) {
		t.Errorf("outcomes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(f.outcomes, "\n"))
	}
	for i, e := range events {
		if e.N != i+1 || e.Total != len(f.outcomes) {
			t.Errorf("event %d is [%d/%d]; want [%d/%d]", i, e.N, e.Total, i+1, len(f.outcomes))
		}
		key := e.Path + "@" + e.Version
		switch words, ok := f.reasons[key]; {
		case !ok && e.Err != nil:
			t.Errorf("%s: unexpected error %v", key, e.Err)
		case ok && (e.Err == nil || !strings.Contains(e.Err.Error(), words)):
			t.Errorf("%s: error %v; want it to say %q", key, e.Err, words)
		case ok:
			r.assertNoRecord(t, e.Path, e.Version)
		}
	}
	if got, want := events[1].String(), "[2/11] example.com/beta@v0.1.0 imported"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	if got := events[0].String(); !strings.HasPrefix(got, "[1/11] example.com/badhash@v1.0.0 invalid: the zip hashes to h1:") {
		t.Errorf("progress line %q; want the reason without the module repeated", got)
	}

	var wantAudit []string
	for _, c := range f.imported {
		wantAudit = append(wantAudit, "publish root "+c.path+"@"+c.version)
		assertImported(t, r, c)
		// The operator's module cache is read, never moved into storage.
		escPath, _ := module.EscapePath(c.path)
		escVersion, _ := module.EscapeVersion(c.version)
		if got, err := os.ReadFile(filepath.Join(f.cache.download(), filepath.FromSlash(escPath), "@v", escVersion+".zip")); err != nil || !bytes.Equal(got, c.zip) {
			t.Errorf("%s@%s.zip in the module cache after the import: %v", c.path, c.version, err)
		}
	}
	if got := r.actions(); !slices.Equal(got, wantAudit) {
		t.Errorf("audit log = %q\nwant %q", got, wantAudit)
	}
	if list, err := r.List(ctx, "golang.org/x/alpha"); err != nil || !slices.Equal(list, []string{"v1.0.0", "v1.1.0"}) {
		t.Errorf("List(golang.org/x/alpha) = %q, %v; want the imported versions", list, err)
	}
	r.assertTempDirEmpty(t)
}

// assertImported checks that c is recorded as imported and served as it
// was in the module cache.
func assertImported(t *testing.T, r *testRegistry, c cached) {
	t.Helper()
	ctx := context.Background()
	v, err := r.meta.Version(ctx, c.path, c.version)
	if err != nil {
		t.Errorf("%s@%s not recorded: %v", c.path, c.version, err)
		return
	}
	want := modproxy.Version{
		Path: c.path, Version: c.version, Time: c.time, Size: int64(len(c.zip)),
		ZipHash: hashZipBytes(t, c.zip), ModHash: hashGoMod(t, c.mod),
		Source: modproxy.SourceImported, PublishedBy: "root", PublishedAt: t0,
	}
	if *v != want {
		t.Errorf("record %+v\nwant %+v", *v, want)
	}
	if got := r.read(t, c.path, c.version, storage.Zip); !bytes.Equal(got, c.zip) {
		t.Errorf("%s@%s.zip served differs from the cached zip", c.path, c.version)
	}
	if got := r.read(t, c.path, c.version, storage.Mod); !bytes.Equal(got, c.mod) {
		t.Errorf("%s@%s.mod = %q; want %q", c.path, c.version, got, c.mod)
	}
	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(r.read(t, c.path, c.version, storage.Info), &info); err != nil || info.Version != c.version || !info.Time.Equal(c.time) {
		t.Errorf("%s@%s.info = %+v, %v; want version %s at %v", c.path, c.version, info, err, c.version, c.time)
	}
}

func TestImportDirRerunSkips(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	if _, _, err := r.importAll(ctx, f.cache.download()); err != nil {
		t.Fatal(err)
	}
	audited := len(r.meta.Events())
	r.clock.Advance(time.Hour)

	sum, events, err := r.importAll(ctx, f.cache.download())
	if err != nil {
		t.Fatal(err)
	}
	want := modproxy.ImportSummary{Total: 11, Skipped: 7, Invalid: 3, Incomplete: 1, NoZip: f.noZip}
	if sum != want {
		t.Errorf("second import: summary = %+v\nwant %+v", sum, want)
	}
	if got := events[1].String(); got != "[2/11] example.com/beta@v0.1.0 skipped: already stored" {
		t.Errorf("progress line %q; want it skipped", got)
	}
	if n := len(r.meta.Events()); n != audited {
		t.Errorf("the second import added %d audit events; want none", n-audited)
	}
	for _, c := range f.imported {
		assertImported(t, r, c) // PublishedAt unchanged
	}
}

func TestImportDirConflict(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	published := r.publish(t, alice, "example.com/beta", "v0.1.0", moduleZip(t, "example.com/beta", "v0.1.0", "other content"))

	sum, events, err := r.importAll(ctx, f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Conflict != 1 || sum.Imported != 6 {
		t.Errorf("summary = %+v; want 1 conflict and 6 imported", sum)
	}
	if err := sum.Err(); err == nil || !strings.Contains(err.Error(), "1 conflicting") {
		t.Errorf("summary.Err() = %v; want it to count the conflict", err)
	}
	e := events[1]
	var cerr *modproxy.ConflictError
	if e.Outcome != modproxy.ImportConflict || !errors.As(e.Err, &cerr) || cerr.RecordedHash != published.ZipHash {
		t.Errorf("event %s; want a conflict naming the published hash %s", e, published.ZipHash)
	}
	if v, err := r.meta.Version(ctx, "example.com/beta", "v0.1.0"); err != nil || *v != *published.Version {
		t.Errorf("record after the conflicting import = %+v, %v; want it unchanged %+v", v, err, *published.Version)
	}
	if got := r.read(t, "example.com/beta", "v0.1.0", storage.Zip); hashZipBytes(t, got) != published.ZipHash {
		t.Error("the published zip was replaced by the conflicting import")
	}
	if !slices.Contains(r.actions(), "publish.rejected root example.com/beta@v0.1.0") {
		t.Errorf("audit log = %q; want the rejected import", r.actions())
	}
}

func TestImportDirCancel(t *testing.T) {
	f := newImportFixture(t)
	r := newTestRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var events []modproxy.ImportEvent
	sum, err := r.ImportDir(ctx, admin, f.cache.root, func(e modproxy.ImportEvent) {
		events = append(events, e)
		if e.Outcome == modproxy.ImportImported {
			cancel() // as SIGINT does, while the first version is imported
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ImportDir after cancel: %v; want context.Canceled", err)
	}
	if got, want := outcomes(events), f.outcomes[:2]; !slices.Equal(got, want) {
		t.Errorf("outcomes before stopping = %q; want %q", got, want)
	}
	if sum.Done() != 2 || sum.Imported != 1 || sum.Total != 11 {
		t.Errorf("summary = %+v; want 2 versions of 11 done, 1 imported", sum)
	}
	if got := sum.String(); !strings.HasPrefix(got, "2 of 11 versions: 1 imported, 0 skipped,") {
		t.Errorf("summary line %q; want it to say how far the import got", got)
	}
	for _, c := range f.imported[1:] {
		r.assertNoRecord(t, c.path, c.version)
	}

	// Run again: what was imported is skipped, the rest imported.
	sum, _, err = r.importAll(context.Background(), f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 1 || sum.Imported != 6 {
		t.Errorf("summary of the second run = %+v; want 1 skipped, 6 imported", sum)
	}
	for _, c := range f.imported {
		assertImported(t, r, c)
	}
}

func TestImportDirDoesNotRestoreDeleted(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	if _, _, err := r.importAll(ctx, f.cache.root); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, admin, "golang.org/x/alpha", "v1.0.0", modproxy.DeleteOptions{Reason: "withdrawn"}); err != nil {
		t.Fatal(err)
	}

	sum, events, err := r.importAll(ctx, f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 7 || sum.Imported != 0 {
		t.Errorf("summary = %+v; want all 7 skipped", sum)
	}
	e := events[9]
	if e.Path != "golang.org/x/alpha" || e.Version != "v1.0.0" || e.Outcome != modproxy.ImportSkipped || !errors.Is(e.Err, modproxy.ErrGone) {
		t.Errorf("event %s (%v); want golang.org/x/alpha@v1.0.0 skipped as deleted", e, e.Err)
	}
	if _, _, err := r.Open(ctx, "golang.org/x/alpha", "v1.0.0", storage.Zip); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("Open of the deleted version after an import: %v; want ErrGone", err)
	}
}

func TestImportNeedsAdmin(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	called := false
	if _, err := r.ImportDir(ctx, alice, f.cache.root, func(modproxy.ImportEvent) { called = true }); !errors.Is(err, modproxy.ErrForbidden) {
		t.Errorf("ImportDir as a publisher: %v; want ErrForbidden", err)
	}
	c := f.imported[0]
	zip := writeTemp(t, c.zip)
	if _, err := r.Import(ctx, alice, c.path, c.version, []byte(`{"Version":"v0.1.0","Time":"2024-03-01T10:00:00Z"}`), c.mod, zip); !errors.Is(err, modproxy.ErrForbidden) {
		t.Errorf("Import as a publisher: %v; want ErrForbidden", err)
	}
	if called || len(r.meta.Events()) != 0 {
		t.Error("a refused import did something")
	}
}

func TestImportDirNotADirectory(t *testing.T) {
	r := newTestRegistry(t)
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), writeTemp(t, []byte("x")).Name()} {
		if _, err := r.ImportDir(context.Background(), admin, dir, func(modproxy.ImportEvent) {}); err == nil {
			t.Errorf("ImportDir(%s) succeeded; want an error", dir)
		}
	}
}

// writeTemp returns an open temporary file holding data.
func writeTemp(t *testing.T, data []byte) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.zip")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f
}

// importChecks are imports of example.com/m@v1.0.0 that Import refuses.
var importChecks = []struct {
	name    string
	version string // default v1.0.0
	info    string // default a valid .info
	mod     string // default the zip's go.mod
	zip     []zipFile
	want    error
	words   string
}{
	{name: "info names another version", info: `{"Version":"v1.0.1","Time":"2024-01-01T00:00:00Z"}`, want: modproxy.ErrInvalid, words: `names version "v1.0.1"`},
	{name: "info without time", info: `{"Version":"v1.0.0"}`, want: modproxy.ErrInvalid, words: "no Time"},
	{name: "info not JSON", info: `Version v1.0.0`, want: modproxy.ErrInvalid, words: "not valid JSON"},
	{name: "info too large", info: `{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z","Origin":"` + strings.Repeat("x", modproxy.MaxInfoFile) + `"}`, want: modproxy.ErrTooLarge},
	{name: "mod differs from zip", mod: "module example.com/m\n\ngo 1.21\n", want: modproxy.ErrInvalid, words: "differs from the go.mod in the zip"},
	{name: "mod too large", mod: "module example.com/m\n//" + strings.Repeat("x", modzip.MaxGoMod), want: modproxy.ErrTooLarge},
	{name: "mod unparsable", mod: "module example.com/m\nrequire (\n", want: modproxy.ErrInvalid, words: ".mod file"},
	{name: "non-canonical version", version: "v1.0", want: modproxy.ErrInvalid, words: "not canonical"},
	{name: "zip for another module", zip: []zipFile{{"example.com/other@v1.0.0/go.mod", goMod("example.com/other")}}, want: modproxy.ErrInvalid},
	{name: "zip with directory entry", zip: []zipFile{{"example.com/m@v1.0.0/", ""}, {"example.com/m@v1.0.0/go.mod", goMod("example.com/m")}}, want: modproxy.ErrInvalid, words: "directory entry"},
}

func TestImportChecks(t *testing.T) {
	for _, tc := range importChecks {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t)
			const path = "example.com/m"
			version := orDefault(tc.version, "v1.0.0")
			info := orDefault(tc.info, `{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`)
			mod := orDefault(tc.mod, goMod(path))
			zipData := moduleZip(t, path, "v1.0.0", "m")
			if tc.zip != nil {
				zipData = buildZip(t, tc.zip)
			}
			_, err := r.Import(context.Background(), admin, path, version, []byte(info), []byte(mod), writeTemp(t, zipData))
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.words) {
				t.Errorf("Import: %v; want %v saying %q", err, tc.want, tc.words)
			}
			r.assertNoRecord(t, path, version)
			if files := r.storedFiles(t); len(files) != 0 {
				t.Errorf("stored %q after a refused import", sortedKeys(files))
			}
		})
	}
}

// orDefault returns s, or def if s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestImportCompletesFetchedVersion(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "dep")
	r := cachingRegistry(t, up, nil)
	r.read(t, path, version, storage.Mod) // recorded without its zip

	// A GOPROXY file tree: no .ziphash, a list file.
	dir := t.TempDir()
	vdir := filepath.Join(dir, "example.com", "dep", "@v")
	for name, data := range map[string]string{
		"list":            version + "\n",
		version + ".info": `{"Version":"v1.2.0","Time":"2024-05-01T00:00:00Z"}`,
		version + ".mod":  fv.mod,
		version + ".zip":  string(fv.zip),
	} {
		writeTestFile(t, filepath.Join(vdir, name), []byte(data))
	}
	up.setDown(errors.New("offline"))

	sum, _, err := r.importAll(ctx, dir)
	if err != nil || sum.Imported != 1 {
		t.Fatalf("ImportDir = %+v, %v; want 1 imported", sum, err)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, fv.zip) {
		t.Error("the completed version serves another zip")
	}
	v, err := r.meta.Version(ctx, path, version)
	if err != nil || v.ZipHash != hashZipBytes(t, fv.zip) || v.ModHash != hashGoMod(t, []byte(fv.mod)) {
		t.Errorf("record = %+v, %v; want the zip and go.mod hashes", v, err)
	}
	if n := up.count("zip"); n != 0 {
		t.Errorf("upstream zip requests = %d; want 0", n)
	}
}

func TestImportConflictsWithFetchedGoMod(t *testing.T) {
	ctx := context.Background()
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "dep")
	r := cachingRegistry(t, up, nil)
	r.read(t, path, version, storage.Mod) // recorded without its zip

	// Another go.mod, and a zip that agrees with it.
	mod := "module example.com/dep\n\nrequire example.com/x v1.0.0\n"
	zipData := buildZip(t, []zipFile{{path + "@" + version + "/go.mod", mod}, {path + "@" + version + "/dep.go", "package dep\n"}})
	_, err := r.Import(ctx, admin, path, version, []byte(`{"Version":"v1.2.0","Time":"2024-05-01T00:00:00Z"}`), []byte(mod), writeTemp(t, zipData))
	if !errors.Is(err, modproxy.ErrConflict) {
		t.Fatalf("Import with another go.mod: %v; want ErrConflict", err)
	}
	if !slices.Contains(r.actions(), "publish.rejected root example.com/dep@v1.2.0") {
		t.Errorf("audit log = %q; want the rejected import", r.actions())
	}
	if v, err := r.meta.Version(ctx, path, version); err != nil || v.ZipHash != "" {
		t.Errorf("record = %+v, %v; want it still without a zip", v, err)
	}
}
