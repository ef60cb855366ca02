package modproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/internal/testutil"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
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
	imported []cached // with a zip, in the order of import
	// goModOnly are the versions imported without a zip, with their
	// .info's time (zero if the cache has no .info of them).
	goModOnly []goModOnly
	// outcomes is every version with a zip or a .mod, in the order of
	// import, as "path@version outcome".
	outcomes []string
	// reasons holds, for each version not imported, words its reason must
	// contain.
	reasons map[string]string
	noZip   int
}

// goModOnly is a version of which a module cache has the .mod but no zip.
type goModOnly struct {
	path, version string
	mod           []byte
	time          time.Time
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
	// A release downloaded without its .info, as 'go mod tidy' downloads
	// the modules of the tests of dependencies: its time is unknown.
	noinfo := c.add("example.com/noinfo", "v1.0.0", day(7), moduleFiles("example.com/noinfo", "no info"))
	removeCached(t, c, "example.com/noinfo", "v1.0.0", ".info")
	noinfo.time = time.Time{}

	// A truncated zip.
	corrupt := c.add("example.com/corrupt", "v1.0.0", day(8), moduleFiles("example.com/corrupt", "corrupt"))
	c.write("example.com/corrupt", "v1.0.0", ".zip", corrupt.zip[:len(corrupt.zip)/2])
	// A zip whose .ziphash says otherwise: changed after download.
	c.add("example.com/badhash", "v1.0.0", day(9), moduleFiles("example.com/badhash", "bad hash"))
	c.write("example.com/badhash", "v1.0.0", ".ziphash", []byte("h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
	// A .mod that is not the zip's go.mod.
	c.add("example.com/inconsistent", "v1.0.0", day(10), moduleFiles("example.com/inconsistent", "inconsistent"))
	c.write("example.com/inconsistent", "v1.0.0", ".mod", []byte("module example.com/inconsistent\n\nrequire example.com/beta v0.1.0\n"))

	// Versions whose go.mod only was needed, with and without an .info.
	f.goModOnly = []goModOnly{
		{"example.com/beta", "v0.2.0", []byte(goMod("example.com/beta")), time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)},
		{"golang.org/x/alpha", "v0.9.0", []byte(goMod("golang.org/x/alpha") + "\nrequire example.com/beta v0.2.0\n"), time.Time{}},
	}
	for _, m := range f.goModOnly {
		c.write(m.path, m.version, ".mod", m.mod)
	}
	c.write("example.com/beta", "v0.2.0", ".info", []byte(`{"Version":"v0.2.0","Time":"2024-04-01T00:00:00Z"}`))
	// An .info alone, of a query the go command resolved: ignored.
	c.write("example.com/beta", "v0.3.0", ".info", []byte(`{"Version":"v0.3.0","Time":"2024-05-01T00:00:00Z"}`))
	f.noZip = 2

	// What else a module cache holds, to be ignored.
	c.write("golang.org/x/alpha", "v1.2.0", ".zip.partial", []byte("PK"))
	writeTestFile(t, filepath.Join(c.download(), "golang.org", "x", "alpha", "@v", "list"), []byte("v0.9.0\nv1.0.0\nv1.1.0\n"))
	writeTestFile(t, filepath.Join(c.download(), "golang.org", "x", "alpha", "@v", "list.lock"), nil)
	writeTestFile(t, filepath.Join(c.download(), "sumdb", "sum.golang.org", "lookup", "golang.org", "x", "alpha@v1.0.0"), []byte("lookup"))
	writeTestFile(t, filepath.Join(c.root, "golang.org", "x", "alpha@v1.0.0", "go.mod"), []byte(goMod("golang.org/x/alpha")))
	writeTestFile(t, filepath.Join(c.root, "cache", "vcs", "0123abcd", "HEAD"), []byte("ref: refs/heads/main\n"))

	f.imported = []cached{beta, betaV2, legacy, noinfo, pseudo, upper, alpha1, alpha2}
	f.outcomes = []string{
		"example.com/badhash@v1.0.0 invalid",
		"example.com/beta@v0.1.0 imported",
		"example.com/beta@v0.2.0 imported",
		"example.com/beta/v2@v2.0.0 imported",
		"example.com/corrupt@v1.0.0 invalid",
		"example.com/inconsistent@v1.0.0 invalid",
		"example.com/legacy@v2.0.0+incompatible imported",
		"example.com/noinfo@v1.0.0 imported",
		"example.com/pseudo@" + pseudoVersion + " imported",
		"github.com/Upper/Case@v1.0.0 imported",
		"golang.org/x/alpha@v0.9.0 imported",
		"golang.org/x/alpha@v1.0.0 imported",
		"golang.org/x/alpha@v1.1.0 imported",
	}
	f.reasons = map[string]string{
		"example.com/badhash@v1.0.0":      "the module cache recorded h1:AAAA",
		"example.com/corrupt@v1.0.0":      "not a valid module zip",
		"example.com/inconsistent@v1.0.0": "differs from the go.mod in the zip",
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
	want := modproxy.ImportSummary{Total: 13, Imported: 10, Invalid: 3, NoZip: f.noZip, NoInfo: 1}
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
	if got, want := events[1].String(), "[2/13] example.com/beta@v0.1.0 imported"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	if got, want := events[2].String(), "[3/13] example.com/beta@v0.2.0 imported (go.mod only)"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	if got, want := events[7].String(), "[8/13] example.com/noinfo@v1.0.0 imported (no .info)"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	if got := events[0].String(); !strings.HasPrefix(got, "[1/13] example.com/badhash@v1.0.0 invalid: the zip hashes to h1:") {
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
	for _, m := range f.goModOnly {
		assertImportedGoMod(t, r, m)
	}
	// A go.mod without its module is no publish: only the zips are audited.
	if got := r.actions(); !slices.Equal(got, wantAudit) {
		t.Errorf("audit log = %q\nwant %q", got, wantAudit)
	}
	if list, err := r.List(ctx, "golang.org/x/alpha"); err != nil || !slices.Equal(list, []string{"v0.9.0", "v1.0.0", "v1.1.0"}) {
		t.Errorf("List(golang.org/x/alpha) = %q, %v; want the imported versions", list, err)
	}
	r.assertNoRecord(t, "example.com/beta", "v0.3.0")
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
	if c.time.IsZero() {
		// Imported without an .info, and there is no upstream: an .info
		// without a time.
		if got, want := string(r.read(t, c.path, c.version, storage.Info)), fmt.Sprintf(`{"Version":%q}`, c.version); got != want {
			t.Errorf("%s@%s.info = %s; want %s", c.path, c.version, got, want)
		}
		return
	}
	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(r.read(t, c.path, c.version, storage.Info), &info); err != nil || info.Version != c.version || !info.Time.Equal(c.time) {
		t.Errorf("%s@%s.info = %+v, %v; want version %s at %v", c.path, c.version, info, err, c.version, c.time)
	}
}

// assertImportedGoMod checks that m is recorded as imported without a zip,
// and its .mod (and .info, if the cache had one) served as they were in the
// module cache.
func assertImportedGoMod(t *testing.T, r *testRegistry, m goModOnly) {
	t.Helper()
	ctx := context.Background()
	v, err := r.meta.Version(ctx, m.path, m.version)
	if err != nil {
		t.Errorf("%s@%s not recorded: %v", m.path, m.version, err)
		return
	}
	want := modproxy.Version{
		Path: m.path, Version: m.version, Time: m.time, ModHash: hashGoMod(t, m.mod),
		Source: modproxy.SourceImported, PublishedBy: "root", PublishedAt: t0,
	}
	if *v != want {
		t.Errorf("record %+v\nwant %+v", *v, want)
	}
	if got := r.read(t, m.path, m.version, storage.Mod); !bytes.Equal(got, m.mod) {
		t.Errorf("%s@%s.mod = %q; want %q", m.path, m.version, got, m.mod)
	}
	if _, _, err := r.Open(ctx, m.path, m.version, storage.Zip); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Open %s@%s.zip: %v; want ErrNotFound", m.path, m.version, err)
	}
	_, info, err := r.Open(ctx, m.path, m.version, storage.Info)
	if err != nil || !info.Time.Equal(m.time) {
		t.Errorf("Open %s@%s.info: %+v, %v; want it served with the cache's time, if any", m.path, m.version, info, err)
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
	want := modproxy.ImportSummary{Total: 13, Skipped: 10, Invalid: 3, NoZip: f.noZip, NoInfo: 1}
	if sum != want {
		t.Errorf("second import: summary = %+v\nwant %+v", sum, want)
	}
	if got := events[1].String(); got != "[2/13] example.com/beta@v0.1.0 skipped: already stored" {
		t.Errorf("progress line %q; want it skipped", got)
	}
	if got := events[2].String(); got != "[3/13] example.com/beta@v0.2.0 skipped (go.mod only): already stored" {
		t.Errorf("progress line %q; want it skipped", got)
	}
	if n := len(r.meta.Events()); n != audited {
		t.Errorf("the second import added %d audit events; want none", n-audited)
	}
	for _, c := range f.imported {
		assertImported(t, r, c) // PublishedAt unchanged
	}
	for _, m := range f.goModOnly {
		assertImportedGoMod(t, r, m)
	}
}

// TestImportDirRerunReadsNoStoredZip checks that importing a module cache
// again skips a version stored with the hash its .ziphash records without
// reading its zip, which the stored copy was checked against when it was
// stored: a cached zip gone corrupt, or unreadable, since is no error. A
// version whose .ziphash names another hash than the one stored is read,
// and still a conflict; a GOPROXY tree without .ziphash files, read, is
// skipped too.
func TestImportDirRerunReadsNoStoredZip(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	published := r.publish(t, alice, "golang.org/x/alpha", "v1.1.0", moduleZip(t, "golang.org/x/alpha", "v1.1.0", "other content"))
	if sum, _, err := r.importAll(ctx, f.cache.root); err != nil || sum.Imported != 9 || sum.Conflict != 1 {
		t.Fatalf("first import: %+v, %v; want 9 imported, 1 conflict", sum, err)
	}
	audited := len(r.meta.Events())

	// Garbage the size of the zip, and a link to nothing: neither can be
	// read as the zip, nor hashed.
	beta := f.imported[0]
	f.cache.write(beta.path, beta.version, ".zip", bytes.Repeat([]byte("x"), len(beta.zip)))
	upper := f.imported[5]
	zipName := filepath.Join(f.cache.download(), "github.com", "!upper", "!case", "@v", "v1.0.0.zip")
	if err := os.Remove(zipName); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(t.TempDir(), "nowhere.zip"), zipName); err != nil {
		t.Fatal(err)
	}

	sum, events, err := r.importAll(ctx, f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	want := modproxy.ImportSummary{Total: 13, Skipped: 9, Conflict: 1, Invalid: 3, NoZip: f.noZip, NoInfo: 1}
	if sum != want {
		t.Errorf("second import: summary = %+v\nwant %+v", sum, want)
	}
	for _, e := range events {
		switch e.Path + "@" + e.Version {
		case beta.path + "@" + beta.version, upper.path + "@" + upper.version:
			if e.Outcome != modproxy.ImportSkipped || e.Err != nil {
				t.Errorf("%s (%v); want it skipped, its zip unread", e, e.Err)
			}
		case "golang.org/x/alpha@v1.1.0":
			var cerr *modproxy.ConflictError
			if e.Outcome != modproxy.ImportConflict || !errors.As(e.Err, &cerr) || cerr.RecordedHash != published.ZipHash {
				t.Errorf("%s (%v); want a conflict naming the published hash %s", e, e.Err, published.ZipHash)
			}
		}
	}
	if got := r.actions(); len(got) != audited+1 || got[len(got)-1] != "publish.rejected root golang.org/x/alpha@v1.1.0" {
		t.Errorf("audit log after the second import = %q; want only the conflict added", got[audited:])
	}
	for _, c := range f.imported {
		if c.path == "golang.org/x/alpha" && c.version == "v1.1.0" {
			continue
		}
		assertImported(t, r, c)
	}
	r.assertTempDirEmpty(t)

	// A GOPROXY tree has no .ziphash: its zips are read, and skipped.
	proxy := newModuleCache(t)
	c := proxy.add("golang.org/x/alpha", "v1.0.0", f.imported[6].time, moduleFiles("golang.org/x/alpha", "alpha 1"))
	removeCached(t, proxy, c.path, c.version, ".ziphash")
	if sum, events, err := r.importAll(ctx, proxy.download()); err != nil || sum.Skipped != 1 || events[0].Err != nil {
		t.Errorf("import of a GOPROXY tree: %+v, %v, %v; want its version skipped", sum, err, events)
	}
}

// TestImportOwnStorageReadsNoStoredZip checks that importing the
// registry's own storage directory, as a restore from backups does to
// record the versions stored after the database's backup, skips a version
// recorded with that very zip without reading it (the storage tree has no
// .ziphash files): the zip is the stored one, checked and hashed when it
// was stored. Shown by a stored zip made unreadable in place since, which
// a read would find to be no zip.
func TestImportOwnStorageReadsNoStoredZip(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	r.publish(t, alice, "example.com/a", "v1.0.0", moduleZip(t, "example.com/a", "v1.0.0", "package a\n"))
	r.publish(t, alice, "example.com/a", "v1.1.0", moduleZip(t, "example.com/a", "v1.1.0", "package a\n"))
	stored := filepath.Join(r.disk.Root(), "example.com", "a", "@v", "v1.0.0.zip")
	if err := os.WriteFile(stored, []byte("not a zip"), 0o644); err != nil { // same file, other bytes
		t.Fatal(err)
	}
	// A version stored after the database's backup: files, no record.
	orphan := newTestRegistry(t)
	orphan.publish(t, alice, "example.com/b", "v1.0.0", moduleZip(t, "example.com/b", "v1.0.0", "package b\n"))
	if err := os.CopyFS(filepath.Join(r.disk.Root(), "example.com", "b"), os.DirFS(filepath.Join(orphan.disk.Root(), "example.com", "b"))); err != nil {
		t.Fatal(err)
	}

	sum, events, err := r.importAll(ctx, r.disk.Root())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com/a@v1.0.0 skipped", "example.com/a@v1.1.0 skipped", "example.com/b@v1.0.0 imported"}; !slices.Equal(outcomes(events), want) {
		t.Errorf("import of the storage directory: %q (%+v); want %q", outcomes(events), sum, want)
	}
	for _, e := range events {
		if e.Err != nil {
			t.Errorf("%s: %v", e, e.Err)
		}
	}

	// A stored zip that is read after all (its .mod lost, which the
	// import restores from it) and hashes to another hash than the
	// recorded one is a conflict, not a module cache's corrupt copy: the
	// recorded hash is not what a .ziphash said.
	published := r.publish(t, alice, "example.com/c", "v1.0.0", moduleZip(t, "example.com/c", "v1.0.0", "package c\n"))
	dir := filepath.Join(r.disk.Root(), "example.com", "c", "@v")
	if err := os.WriteFile(filepath.Join(dir, "v1.0.0.zip"), moduleZip(t, "example.com/c", "v1.0.0", "package c // other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "v1.0.0.mod")); err != nil {
		t.Fatal(err)
	}
	_, events, err = r.importAll(ctx, r.disk.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Path != "example.com/c" {
			continue
		}
		var cerr *modproxy.ConflictError
		if e.Outcome != modproxy.ImportConflict || !errors.As(e.Err, &cerr) || cerr.RecordedHash != published.ZipHash {
			t.Errorf("%s (%v); want a conflict naming the recorded hash %s", e, e.Err, published.ZipHash)
		}
	}
}

// TestImportDirInfoLater checks that a version imported without its
// .info gets it from a later import of a directory that has it.
func TestImportDirInfoLater(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	if _, _, err := r.importAll(ctx, f.cache.root); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2024, 3, 7, 10, 0, 0, 0, time.UTC)
	f.cache.write("example.com/noinfo", "v1.0.0", ".info", []byte(`{"Version":"v1.0.0","Time":"2024-03-07T10:00:00Z"}`))

	sum, events, err := r.importAll(ctx, f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Imported != 1 || sum.Skipped != 9 || sum.NoInfo != 0 {
		t.Errorf("summary = %+v; want the .info imported, everything else skipped", sum)
	}
	if got, want := events[7].String(), "[8/13] example.com/noinfo@v1.0.0 imported"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	for _, c := range f.imported {
		if c.path == "example.com/noinfo" {
			c.time = when
		}
		assertImported(t, r, c)
	}
}

// TestImportZipWithoutInfoCompletesGoMod checks that a zip without its
// .info completes a version whose go.mod alone was imported before.
func TestImportZipWithoutInfoCompletesGoMod(t *testing.T) {
	ctx := context.Background()
	const path, version = "example.com/later", "v1.2.0"
	zipData := moduleZip(t, path, version, "later")
	mod := []byte(goMod(path))
	r := newTestRegistry(t)

	first := newModuleCache(t)
	first.write(path, version, ".mod", mod)
	if sum, _, err := r.importAll(ctx, first.root); err != nil || sum.Imported != 1 {
		t.Fatalf("importing the go.mod: %+v, %v", sum, err)
	}
	second := newModuleCache(t)
	second.write(path, version, ".mod", mod)
	second.write(path, version, ".zip", zipData)
	if sum, _, err := r.importAll(ctx, second.root); err != nil || sum.Imported != 1 || sum.NoInfo != 1 {
		t.Fatalf("importing the zip: %+v, %v; want it imported without an .info", sum, err)
	}
	assertImported(t, r, cached{path: path, version: version, zip: zipData, mod: mod})
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
	if sum.Conflict != 1 || sum.Imported != 9 {
		t.Errorf("summary = %+v; want 1 conflict and 9 imported", sum)
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
	if sum.Done() != 2 || sum.Imported != 1 || sum.Total != 13 {
		t.Errorf("summary = %+v; want 2 versions of 13 done, 1 imported", sum)
	}
	if got, want := sum.String(), "2 of 13 versions: 1 imported, 0 restored, 0 skipped, 0 conflict, 1 invalid, 0 unreadable; 0 of them a go.mod without a zip, 0 a zip without an .info"; got != want {
		t.Errorf("summary line %q; want %q: how far the import got, and what of the versions done", got, want)
	}
	for _, c := range f.imported[1:] {
		r.assertNoRecord(t, c.path, c.version)
	}

	// Run again: what was imported is skipped, the rest imported.
	sum, _, err = r.importAll(context.Background(), f.cache.root)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 1 || sum.Imported != 9 {
		t.Errorf("summary of the second run = %+v; want 1 skipped, 9 imported", sum)
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
	if sum.Skipped != 10 || sum.Imported != 0 {
		t.Errorf("summary = %+v; want all 10 skipped", sum)
	}
	e := events[11]
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

// TestImportDirNothingThere checks that a directory without a module
// version, most likely the wrong one, is an error that says what to give,
// not an import of nothing that succeeds.
func TestImportDirNothingThere(t *testing.T) {
	r := newTestRegistry(t)
	empty := newModuleCache(t) // a module cache with nothing downloaded
	if err := os.MkdirAll(empty.download(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{t.TempDir(), empty.root} {
		_, err := r.ImportDir(context.Background(), admin, dir, func(modproxy.ImportEvent) {})
		if !errors.Is(err, modproxy.ErrInvalid) || !strings.Contains(err.Error(), "found no module version under "+dir) {
			t.Errorf("ImportDir(%s) = %v; want ErrInvalid saying that nothing is there", dir, err)
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

// TestImportDirInfoWithoutTime checks that a module cache filled through
// an Agora, whose .info of a version stored without a time the go command
// keeps with a zero Time, is imported as if it had no .info: the zip and
// go.mod are imported, and a pseudo-version gets the time it names.
func TestImportDirInfoWithoutTime(t *testing.T) {
	ctx := context.Background()
	c := newModuleCache(t)
	zeroTime := func(version string) []byte {
		return []byte(fmt.Sprintf(`{"Version":%q,"Time":"0001-01-01T00:00:00Z"}`, version))
	}
	release := c.add("example.com/m", "v1.0.0", t0, moduleFiles("example.com/m", "release"))
	c.write("example.com/m", "v1.0.0", ".info", zeroTime("v1.0.0"))
	release.time = time.Time{}
	pseudo := c.add("example.com/m", pseudoVersion, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), moduleFiles("example.com/m", "pseudo"))
	c.write("example.com/m", pseudoVersion, ".info", zeroTime(pseudoVersion))
	// A go.mod alone, with an .info as an Agora serves it: no Time at all.
	modOnly := goModOnly{"example.com/m", "v0.9.0", []byte(goMod("example.com/m")), time.Time{}}
	c.write(modOnly.path, modOnly.version, ".mod", modOnly.mod)
	c.write(modOnly.path, modOnly.version, ".info", []byte(`{"Version":"v0.9.0"}`))
	r := newTestRegistry(t)

	sum, events, err := r.importAll(ctx, c.root)
	if err != nil || sum.Imported != 3 {
		t.Fatalf("ImportDir = %+v, %v; want 3 imported\n%v", sum, err, events)
	}
	if got, want := events[2].String(), "[3/3] example.com/m@v1.0.0 imported (no .info)"; got != want {
		t.Errorf("progress line %q; want %q", got, want)
	}
	assertImported(t, r, release)
	assertImported(t, r, pseudo)
	assertImportedGoMod(t, r, modOnly)

	// An .info that names another version is still refused.
	c.write("example.com/m", "v1.0.0", ".info", []byte(`{"Version":"v1.0.1","Time":"0001-01-01T00:00:00Z"}`))
	if _, events, _ := r.importAll(ctx, c.root); events[2].Outcome != modproxy.ImportInvalid {
		t.Errorf("an .info naming another version: %s; want it invalid", events[2])
	}
}

// TestImportInfoWithoutTime checks that Import takes an .info without a
// time as no .info: the version is stored without one.
func TestImportInfoWithoutTime(t *testing.T) {
	r := newTestRegistry(t)
	const path, version = "example.com/m", "v1.0.0"
	zipData := moduleZip(t, path, version, "m")
	res, err := r.Import(context.Background(), admin, path, version, []byte(`{"Version":"v1.0.0"}`), []byte(goMod(path)), writeTemp(t, zipData))
	if err != nil || !res.Created {
		t.Fatalf("Import with an .info without a time = %+v, %v; want it created", res, err)
	}
	assertImported(t, r, cached{path: path, version: version, zip: zipData, mod: []byte(goMod(path))})
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

// A version imported as its go.mod only: its .info can follow, its zip
// completes it, another go.mod conflicts, and a delete is not undone.
func TestImportGoModOnly(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	c := newModuleCache(t)
	const path, version = "example.com/dep", "v1.2.0"
	mod := []byte(goMod(path))
	c.write(path, version, ".mod", mod)

	importOne := func(want string) modproxy.ImportEvent {
		t.Helper()
		_, events, err := r.importAll(ctx, c.root)
		if err != nil || len(events) != 1 {
			t.Fatalf("ImportDir: %v, %d events; want 1", err, len(events))
		}
		if got := events[0].Outcome.String(); got != want {
			t.Fatalf("import: %s (%v); want %s", events[0], events[0].Err, want)
		}
		return events[0]
	}
	importOne("imported")
	assertImportedGoMod(t, r, goModOnly{path, version, mod, time.Time{}})

	// The .info turns up: it is added.
	c.write(path, version, ".info", []byte(`{"Version":"v1.2.0","Time":"2024-05-01T00:00:00Z"}`))
	importOne("imported")
	assertImportedGoMod(t, r, goModOnly{path, version, mod, time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)})
	importOne("skipped")

	// An upload of the zip is refused; the zip from a module cache
	// completes the version.
	zipData := moduleZip(t, path, version, "dep")
	if _, err := r.Publish(ctx, alice, path, version, bytes.NewReader(zipData)); !errors.Is(err, modproxy.ErrConflict) || !strings.Contains(err.Error(), "go.mod was imported without its zip") {
		t.Errorf("upload of the zip: %v; want a conflict that says why", err)
	}
	c.write(path, version, ".zip", zipData)
	e := importOne("imported")
	if e.GoModOnly {
		t.Errorf("event %s; want the zip imported", e)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, zipData) {
		t.Error("the completed version serves another zip")
	}
	if got := r.actions(); !slices.Equal(got, []string{"publish root " + path + "@" + version}) {
		t.Errorf("audit log = %q; want the zip's import only", got)
	}

	// Another go.mod for a recorded version conflicts, and is audited.
	const other = "v1.3.0"
	r.publish(t, alice, path, other, moduleZip(t, path, other, "published"))
	c.write(path, other, ".mod", []byte(goMod(path)+"\nrequire example.com/x v1.0.0\n"))
	removeCached(t, c, path, version, ".zip")
	removeCached(t, c, path, version, ".mod")
	removeCached(t, c, path, version, ".info")
	e = importOne("conflict")
	if !strings.Contains(e.Err.Error(), "go.mod with hash") {
		t.Errorf("conflict %v; want it to name the recorded go.mod", e.Err)
	}
	if !slices.Contains(r.actions(), "publish.rejected root "+path+"@"+other) {
		t.Errorf("audit log = %q; want the rejected import", r.actions())
	}

	// A deleted version's go.mod does not bring it back.
	if err := r.Delete(ctx, admin, path, other, modproxy.DeleteOptions{Reason: "withdrawn"}); err != nil {
		t.Fatal(err)
	}
	c.write(path, other, ".mod", []byte(goMod(path)))
	if e := importOne("skipped"); !errors.Is(e.Err, modproxy.ErrGone) {
		t.Errorf("import of a deleted version's go.mod: %v; want ErrGone", e.Err)
	}
	if _, _, err := r.Open(ctx, path, other, storage.Mod); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("Open of the deleted version's .mod: %v; want ErrGone", err)
	}

	// A .mod that does not parse is invalid, and nothing is recorded.
	c.write("example.com/broken", "v1.0.0", ".mod", []byte("module (((\n"))
	_, events, err := r.importAll(ctx, c.root)
	if err != nil || len(events) != 2 || events[0].Outcome != modproxy.ImportInvalid {
		t.Fatalf("ImportDir with a broken .mod: %v, %v; want it invalid", events, err)
	}
	r.assertNoRecord(t, "example.com/broken", "v1.0.0")
}

func TestImportSummaryString(t *testing.T) {
	for _, tt := range []struct {
		sum  modproxy.ImportSummary
		want string
	}{
		{modproxy.ImportSummary{}, "0 versions: 0 imported,"},
		{modproxy.ImportSummary{Total: 1, Imported: 1}, "1 version: 1 imported,"},
		{modproxy.ImportSummary{Total: 1}, "0 of 1 version: 0 imported,"},
		{modproxy.ImportSummary{Total: 3, Skipped: 2, NoZip: 1}, "2 of 3 versions: 0 imported, 0 restored, 2 skipped,"},
	} {
		if got := tt.sum.String(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%+v.String() = %q; want it to start %q", tt.sum, got, tt.want)
		}
	}
}

// txWatch is a Metadata that says whether one of its transactions is open.
type txWatch struct {
	modproxy.Metadata
	open atomic.Bool
}

func (m *txWatch) Update(ctx context.Context, fn func(tx modproxy.MetadataTx) error) error {
	m.open.Store(true)
	defer m.open.Store(false)
	return m.Metadata.Update(ctx, fn)
}

// zipWrites is a storage.Store that records how each zip is written:
// "copy" (Put, which copies a reader) or "move" of a file in tempDir
// (PutFile), "moved from elsewhere" otherwise, followed by " in a
// transaction" while tx has one open.
type zipWrites struct {
	storage.Store
	tx      *txWatch
	tempDir string
	mu      sync.Mutex
	writes  []string
}

func (s *zipWrites) record(how string) {
	if s.tx.open.Load() {
		how += " in a transaction"
	}
	s.mu.Lock()
	s.writes = append(s.writes, how)
	s.mu.Unlock()
}

func (s *zipWrites) Put(ctx context.Context, path, version string, kind storage.Kind, content io.Reader) error {
	if kind == storage.Zip {
		s.record("copy")
	}
	return s.Store.Put(ctx, path, version, kind, content)
}

func (s *zipWrites) PutFile(ctx context.Context, path, version string, kind storage.Kind, src string) error {
	if kind == storage.Zip {
		how := "moved from elsewhere"
		if filepath.Dir(src) == s.tempDir {
			how = "move"
		}
		s.record(how)
	}
	return s.Store.PutFile(ctx, path, version, kind, src)
}

// TestImportCopiesOutsideTransaction checks that an import copies the
// operator's zip (and syncs it) before its transaction, which only moves
// the registry's own copy into place: on SQLite the transaction holds the
// database's write lock, and a server sharing it waits only so long.
func TestImportCopiesOutsideTransaction(t *testing.T) {
	fake := modproxytest.NewMemStore()
	tx := &txWatch{Metadata: fake}
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	blobs := &zipWrites{Store: disk, tx: tx, tempDir: t.TempDir()}
	r := &testRegistry{meta: fake, disk: disk, tempDir: blobs.tempDir, clock: testutil.NewClock(t0)}
	r.Service = modproxy.New(modproxy.Config{Metadata: tx, Blobs: blobs, TempDir: r.tempDir, Now: r.clock.Now})

	f := newImportFixture(t)
	if sum, _, err := r.importAll(context.Background(), f.cache.root); err != nil || sum.Imported == 0 {
		t.Fatalf("ImportDir = %+v, %v", sum, err)
	}
	want := slices.Repeat([]string{"move in a transaction"}, len(f.imported))
	if !slices.Equal(blobs.writes, want) {
		t.Errorf("zips written %q; want each moved from the temporary directory, in its transaction", blobs.writes)
	}
	for _, c := range f.imported {
		assertImported(t, r, c)
	}
	r.assertTempDirEmpty(t)
}

// TestImportStoresTheZipItHashed checks that the zip stored is the one
// hashed: the open file given to Import, even if its name now names
// another file.
func TestImportStoresTheZipItHashed(t *testing.T) {
	r := newTestRegistry(t)
	const path, version = "example.com/m", "v1.0.0"
	opened := moduleZip(t, path, version, "the zip opened")
	zip := writeTemp(t, opened)
	// The operator's file is replaced after it was opened.
	other := writeTemp(t, moduleZip(t, path, version, "the zip now at its name"))
	if err := os.Rename(other.Name(), zip.Name()); err != nil {
		t.Fatal(err)
	}
	res, err := r.Import(context.Background(), admin, path, version, nil, []byte(goMod(path)), zip)
	if err != nil {
		t.Fatal(err)
	}
	stored := r.read(t, path, version, storage.Zip)
	if got := hashZipBytes(t, stored); got != res.ZipHash {
		t.Errorf("the stored zip hashes to %s, but %s is recorded", got, res.ZipHash)
	}
	if !bytes.Equal(stored, opened) {
		t.Error("the stored zip is not the file given to Import")
	}
}

// TestImportRestoresLostFiles checks that importing a version again puts
// back the files that storage lost of it, as the server's answer for them
// tells the operator to do: a go.mod-only version's .mod and .info, and
// the .mod of a zip without a go.mod, which no stored zip can give.
func TestImportRestoresLostFiles(t *testing.T) {
	ctx := context.Background()
	c := newModuleCache(t)
	const path = "example.com/dep"
	mod := []byte(goMod(path))
	c.write(path, "v1.2.0", ".mod", mod)
	c.write(path, "v1.2.0", ".info", []byte(`{"Version":"v1.2.0","Time":"2024-05-01T00:00:00Z"}`))
	legacy := c.add("example.com/legacy", "v2.0.0+incompatible", t0, map[string]string{"legacy.go": "package legacy\n"})
	zipped := c.add("example.com/zipped", "v1.0.0", t0, moduleFiles("example.com/zipped", "zipped"))
	kept := c.add("example.com/zipped", "v1.1.0", t0, moduleFiles("example.com/zipped", "kept"))
	r := newTestRegistry(t)
	if sum, _, err := r.importAll(ctx, c.root); err != nil || sum.Imported != 4 {
		t.Fatalf("ImportDir = %+v, %v; want 4 imported", sum, err)
	}
	before := r.storedFiles(t)
	lost := []string{"example.com/dep/@v/v1.2.0.mod", "example.com/dep/@v/v1.2.0.info", "example.com/legacy/@v/v2.0.0+incompatible.mod", "example.com/zipped/@v/v1.0.0.zip"}
	for _, name := range lost {
		if err := os.Remove(filepath.Join(r.disk.Root(), filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Open(ctx, path, "v1.2.0", storage.Mod); err == nil || !strings.Contains(err.Error(), "import it again") {
		t.Fatalf("Open of the lost .mod: %v; want it to say to import it again", err)
	}

	sum, events, err := r.importAll(ctx, c.root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"[1/4] example.com/dep@v1.2.0 restored (go.mod only): storage had lost files of it",
		"[2/4] example.com/legacy@v2.0.0+incompatible restored: storage had lost files of it",
		"[3/4] example.com/zipped@v1.0.0 restored: storage had lost files of it",
		"[4/4] example.com/zipped@v1.1.0 skipped: already stored",
	}
	var got []string
	for _, e := range events {
		got = append(got, e.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sum.Restored != 3 || sum.Skipped != 1 || sum.Done() != 4 || !strings.HasPrefix(sum.String(), "4 versions: 0 imported, 3 restored, 1 skipped,") {
		t.Errorf("summary %+v (%s); want 3 restored, 1 skipped", sum, sum)
	}
	after := r.storedFiles(t)
	for _, name := range lost {
		if after[name] != before[name] {
			t.Errorf("%s after importing again = %q; want it restored, %q", name, after[name], before[name])
		}
	}
	assertImportedGoMod(t, r, goModOnly{path, "v1.2.0", mod, time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)})
	for _, c := range []cached{legacy, zipped, kept} {
		assertImported(t, r, c)
	}
}

// TestImportDirRewritesLists checks that an import writes the @v/list file
// of every module it visits, even when it stores nothing: an import killed
// between a version's commit and its list's rewrite left the storage tree,
// a GOPROXY=file:// tree, without that version in the list, and running
// it again skipped the version as stored.
func TestImportDirRewritesLists(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	r := newTestRegistry(t)
	if _, _, err := r.importAll(ctx, f.cache.root); err != nil {
		t.Fatal(err)
	}
	before := r.storedFiles(t)
	const alphaList = "golang.org/x/alpha/@v/list"
	if got, want := before[alphaList], "v0.9.0\nv1.0.0\nv1.1.0\n"; got != want {
		t.Fatalf("%s = %q; want %q", alphaList, got, want)
	}
	var lists []string
	for name := range before {
		if strings.HasSuffix(name, "/@v/list") {
			lists = append(lists, name)
			if err := os.Remove(filepath.Join(r.disk.Root(), filepath.FromSlash(name))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Modules of versions imported or not: the invalid ones have no list.
	if len(lists) != 7 {
		t.Errorf("lists after the import: %q; want 7", lists)
	}

	if sum, _, err := r.importAll(ctx, f.cache.root); err != nil || sum.Imported != 0 {
		t.Fatalf("ImportDir again = %+v, %v; want nothing imported", sum, err)
	}
	after := r.storedFiles(t)
	for _, name := range lists {
		if after[name] != before[name] {
			t.Errorf("%s after importing again = %q; want %q", name, after[name], before[name])
		}
	}
}

// TestImportDirSymlinks checks that a directory given as a symbolic link
// is imported, and that a link to a directory inside it, which is not
// followed, is named in a warning rather than left out in silence.
func TestImportDirSymlinks(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	var logs testutil.Buffer
	r := newTestRegistry(t)
	r.Service = modproxy.New(modproxy.Config{Metadata: r.meta, Blobs: r.disk, TempDir: r.tempDir, Now: r.clock.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	// A module directory elsewhere, linked into the tree.
	elsewhere := newModuleCache(t)
	elsewhere.add("example.com/linked", "v1.0.0", t0, moduleFiles("example.com/linked", "linked"))
	linkedDir := filepath.Join(f.cache.download(), "example.com", "linked")
	if err := os.Symlink(filepath.Join(elsewhere.download(), "example.com", "linked"), linkedDir); err != nil {
		t.Fatal(err)
	}
	// And an @v directory.
	elsewhere.add("example.com/linkedv", "v1.0.0", t0, moduleFiles("example.com/linkedv", "linked @v"))
	linkedV := filepath.Join(f.cache.download(), "example.com", "linkedv", "@v")
	if err := os.MkdirAll(filepath.Dir(linkedV), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere.download(), "example.com", "linkedv", "@v"), linkedV); err != nil {
		t.Fatal(err)
	}
	// The directory given is a link to a GOPROXY tree, here a module
	// cache's download directory.
	link := filepath.Join(t.TempDir(), "goproxy")
	if err := os.Symlink(f.cache.download(), link); err != nil {
		t.Fatal(err)
	}

	sum, events, err := r.importAll(ctx, link)
	if err != nil {
		t.Fatalf("ImportDir(a link to a GOPROXY tree): %v", err)
	}
	if got := outcomes(events); !slices.Equal(got, f.outcomes) {
		t.Errorf("outcomes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(f.outcomes, "\n"))
	}
	if sum.Imported != 10 {
		t.Errorf("summary = %+v; want 10 imported", sum)
	}
	r.assertNoRecord(t, "example.com/linked", "v1.0.0")
	r.assertNoRecord(t, "example.com/linkedv", "v1.0.0")
	for _, link := range []string{linkedDir, linkedV} {
		if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, link) {
			t.Errorf("log:\n%s\nwant a warning naming %s", got, link)
		}
	}
}

// TestImportDirZipWithoutMod checks that a zip without a .mod beside it is
// checked, hashed and imported with the go.mod in it, or the one the go
// command synthesises for a module without one, as every zip must be.
func TestImportDirZipWithoutMod(t *testing.T) {
	ctx := context.Background()
	c := newModuleCache(t)
	withGoMod := c.add("example.com/m", "v1.0.0", t0, moduleFiles("example.com/m", "m"))
	legacy := c.add("example.com/legacy", "v2.0.0+incompatible", t0, map[string]string{"legacy.go": "package legacy\n"})
	broken := c.add("example.com/broken", "v1.0.0", t0, moduleFiles("example.com/broken", "broken"))
	c.write("example.com/broken", "v1.0.0", ".zip", broken.zip[:len(broken.zip)/2])
	for _, v := range []cached{withGoMod, legacy, broken} {
		removeCached(t, c, v.path, v.version, ".mod")
	}
	r := newTestRegistry(t)

	sum, events, err := r.importAll(ctx, c.root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com/broken@v1.0.0 invalid", "example.com/legacy@v2.0.0+incompatible imported", "example.com/m@v1.0.0 imported"}
	if got := outcomes(events); !slices.Equal(got, want) {
		t.Errorf("outcomes %q; want %q", got, want)
	}
	if err := sum.Err(); err == nil {
		t.Errorf("summary %s: Err() = nil; want the invalid zip to count", sum)
	}
	assertImported(t, r, withGoMod)
	assertImported(t, r, legacy) // its .mod: "module example.com/legacy\n"
}

// TestImportDirKeepsInfoOrigin checks that a version imported with its zip
// serves the .info the module cache holds, Origin and all, as a fetched
// one serves its upstream's and one imported as a go.mod alone does: the
// go command reports the Origin (go mod download -json) and reuses
// versions by it (-reuse).
func TestImportDirKeepsInfoOrigin(t *testing.T) {
	ctx := context.Background()
	const path, version = "example.com/origin", "v1.0.0"
	info := []byte(`{"Version":"v1.0.0","Time":"2024-03-07T10:00:00Z","Origin":{"VCS":"git","URL":"https://example.com/origin","Hash":"0123456789abcdef0123456789abcdef01234567","Ref":"refs/tags/v1.0.0"}}`)
	c := newModuleCache(t)
	c.write(path, version, ".info", info)
	c.write(path, version, ".mod", []byte(goMod(path)))
	c.write(path, version, ".zip", moduleZip(t, path, version, "origin"))
	r := newTestRegistry(t)
	if sum, _, err := r.importAll(ctx, c.root); err != nil || sum.Imported != 1 {
		t.Fatalf("ImportDir = %+v, %v; want 1 imported", sum, err)
	}
	if got := r.read(t, path, version, storage.Info); !bytes.Equal(got, info) {
		t.Errorf(".info = %s\nwant the module cache's %s", got, info)
	}
}

// TestImportCompletingKeepsFetchedInfo checks that importing the zip of a
// version whose .info was fetched leaves that .info as the upstream served
// it, Origin and all, when the import has no .info or one with another time.
func TestImportCompletingKeepsFetchedInfo(t *testing.T) {
	ctx := context.Background()
	const path, version = "example.com/dep", "v1.2.0"
	for _, info := range []string{"", `{"Version":"v1.2.0","Time":"2020-01-01T00:00:00Z"}`} {
		up := newFakeUpstream()
		fv := up.add(t, path, version, "dep")
		r := cachingRegistry(t, up, nil)
		fetched := r.read(t, path, version, storage.Info)
		r.read(t, path, version, storage.Mod) // recorded without its zip
		up.setDown(errors.New("offline"))

		c := newModuleCache(t)
		c.write(path, version, ".mod", []byte(fv.mod))
		c.write(path, version, ".zip", fv.zip)
		if info != "" {
			c.write(path, version, ".info", []byte(info))
		}
		if _, _, err := r.importAll(ctx, c.root); err != nil {
			t.Fatal(err)
		}
		if got := r.read(t, path, version, storage.Info); !bytes.Equal(got, fetched) {
			t.Errorf("import with .info %q: .info = %s; want the fetched %s", info, got, fetched)
		}
	}
}
