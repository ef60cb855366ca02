package modproxy_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
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
		n, err := r.VerifyStorage(ctx, modproxy.VerifyOptions{}, func(p modproxy.Problem) {
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
		// Said plainly, not as the error of an open with a full path.
		if strings.HasPrefix(p, "example.com/Upper@v0.1.0") && p != "example.com/Upper@v0.1.0: .mod missing from storage" {
			t.Errorf("missing go.mod reported as %q", p)
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
	wantProblems := []string{"FIXED example.com/a/@v/list: lacked v1.1.0: rewritten from the records"}
	if _, problems := verifyLines(t, r.Service); !slices.Equal(problems, wantProblems) {
		t.Errorf("problems %q; want %q", problems, wantProblems)
	}
	if got := r.storedFiles(t)[list]; got != want {
		t.Errorf("list file after storage:verify = %q; want %q", got, want)
	}
	if _, problems := verifyLines(t, r.Service); len(problems) != 0 {
		t.Errorf("problems after the rewrite: %q; want none", problems)
	}
}

// verifyLines runs s.VerifyStorage and returns how many versions it
// checked and its problems, as "path@version: error", or "FIXED
// path/@v/list: error" for a list it rewrote.
func verifyLines(t *testing.T, s *modproxy.Service) (int, []string) {
	t.Helper()
	return verifyLinesWith(t, s, modproxy.VerifyOptions{})
}

// verifyLinesWith is verifyLines with opts; it writes "FIXED" before
// whatever VerifyStorage fixed.
func verifyLinesWith(t *testing.T, s *modproxy.Service, opts modproxy.VerifyOptions) (int, []string) {
	t.Helper()
	var problems []string
	n, err := s.VerifyStorage(context.Background(), opts, func(p modproxy.Problem) {
		line := p.String()
		if p.Fixed {
			line = "FIXED " + line
		}
		problems = append(problems, line)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, problems
}

// leftoversOfCutOffDeletes returns a registry whose example.com/m has
// v1.0.0 to v1.3.0 published, and v1.0.0 deleted, v1.1.0 blocked and
// v1.2.0 purged by failing, a node of it whose storage is read-only, so
// that their files are left, as by deletes cut off after their commits.
func leftoversOfCutOffDeletes(t *testing.T) (*testRegistry, *modproxy.Service) {
	t.Helper()
	r := newTestRegistry(t)
	ctx := context.Background()
	publishAll(t, r, "example.com/m", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0")
	failing := r.node(t, func(c *modproxy.Config) { c.Blobs = readOnlyStore{r.disk} })
	if err := failing.Delete(ctx, admin, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := failing.Delete(ctx, admin, "example.com/m", "v1.1.0", modproxy.DeleteOptions{Block: true}); err != nil {
		t.Fatal(err)
	}
	if err := failing.Purge(ctx, admin, "example.com/m", "v1.2.0", "leaked a secret"); err != nil {
		t.Fatal(err)
	}
	return r, failing
}

// TestVerifyStorageFindsFilesWithoutLiveRecord checks that storage:verify
// reports the files of versions that are not live: deleted or blocked
// versions whose delete was cut off before it removed them, a purge cut
// off alike, and files of a module the database never heard of. It
// looked at live versions only, and said nothing of them, while the
// storage tree, a GOPROXY=file:// directory, serves them all.
func TestVerifyStorageFindsFilesWithoutLiveRecord(t *testing.T) {
	r, _ := leftoversOfCutOffDeletes(t)
	if err := r.disk.Put(context.Background(), "example.com/Orphan", "v0.1.0", storage.Mod, strings.NewReader("module example.com/Orphan\n")); err != nil {
		t.Fatal(err)
	}

	n, problems := verifyLines(t, r.Service)
	want := []string{
		"example.com/m@v1.0.0: stored files of a deleted version: .info .mod .zip",
		"example.com/m@v1.1.0: stored files of a blocked version: .info .mod .zip",
		"example.com/m@v1.2.0: stored files without a version record: .info .mod .zip",
		"FIXED example.com/m/@v/list: should not name v1.0.0 v1.1.0 v1.2.0: rewritten from the records",
		"example.com/Orphan@v0.1.0: stored files without a version record: .mod",
	}
	if n != 1 || !slices.Equal(problems, want) {
		t.Errorf("checked %d, problems\n%s\nwant 1 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// TestVerifyStorageReportsHoldingNoLock checks that VerifyStorage calls
// report holding no lock of the registry's. It reported the files that no
// live record announces holding the version's lock, which every process
// sharing the database takes to write or remove the version's files; and
// storage:verify's report writes to standard output, which its reader
// (agora task storage:verify | less) may stop reading for as long as it
// likes, while a publish, fetch or delete of the version waited.
func TestVerifyStorageReportsHoldingNoLock(t *testing.T) {
	r, _ := leftoversOfCutOffDeletes(t)
	locks := &heldLocks{held: make(map[string]int)}
	verifier := r.node(t, func(c *modproxy.Config) {
		locks.Metadata = c.Metadata
		c.Metadata = locks
	})
	for _, opts := range []modproxy.VerifyOptions{{}, {Repair: true}} {
		reported := 0
		_, err := verifier.VerifyStorage(context.Background(), opts, func(p modproxy.Problem) {
			reported++
			if held := locks.keys(); len(held) > 0 {
				t.Errorf("Repair %v: %s reported holding %q", opts.Repair, p, held)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if reported == 0 {
			t.Fatalf("Repair %v: nothing reported", opts.Repair)
		}
	}
}

// heldLocks is a modproxy.Metadata that keeps track of the keys of the
// Exclusive calls running.
type heldLocks struct {
	modproxy.Metadata
	mu   sync.Mutex
	held map[string]int
}

func (m *heldLocks) Exclusive(ctx context.Context, key string, fn func(context.Context) error) error {
	return m.Metadata.Exclusive(ctx, key, func(ctx context.Context) error {
		m.mu.Lock()
		m.held[key]++
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			if m.held[key]--; m.held[key] == 0 {
				delete(m.held, key)
			}
			m.mu.Unlock()
		}()
		return fn(ctx)
	})
}

// keys returns the keys held now.
func (m *heldLocks) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.held))
}

// TestVerifyStorageFindsFilesNotRecorded checks that storage:verify
// reports the files of a live version that its record does not announce:
// a fetch whose commit was rolled back leaves its file, which Agora never
// serves, and the next fetch overwrites, but a GOPROXY=file:// reader of
// the storage tree is served.
func TestVerifyStorageFindsFilesNotRecorded(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	r.read(t, path, version, storage.Mod) // recorded with its .mod alone
	ctx := context.Background()
	if err := r.disk.Put(ctx, path, version, storage.Zip, bytes.NewReader(fv.zip)); err != nil {
		t.Fatal(err)
	}
	if err := r.disk.Put(ctx, path, version, storage.Info, strings.NewReader(`{"Version":"v1.2.0"}`)); err != nil {
		t.Fatal(err)
	}
	n, problems := verifyLines(t, r.Service)
	want := []string{"example.com/dep@v1.2.0: stored files its record does not announce: .info .zip"}
	if n != 1 || !slices.Equal(problems, want) {
		t.Errorf("checked %d, problems %q; want 1 checked, problems %q", n, problems, want)
	}
}

// walkHookStore is a storage.Store that runs after once Walk has walked.
type walkHookStore struct {
	storage.Store
	after func()
}

func (s walkHookStore) Walk(ctx context.Context, fn func(storage.StoredModule) error) error {
	err := s.Store.Walk(ctx, fn)
	s.after()
	return err
}

// TestVerifyStorageChecksAgainUnderLock checks that storage:verify does not
// report the files of a version deleted while it ran, which the delete
// removes once it holds the version's lock: it looks again, holding it,
// before it reports files that the records do not announce.
func TestVerifyStorageChecksAgainUnderLock(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	publishAll(t, r, "example.com/m", "v1.0.0", "v1.1.0")
	verifier := r.node(t, func(c *modproxy.Config) {
		c.Blobs = walkHookStore{r.disk, func() {
			if err := r.Delete(ctx, admin, "example.com/m", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}}
	})
	if n, problems := verifyLines(t, verifier); n != 1 || len(problems) != 0 {
		t.Errorf("checked %d, problems %q; want 1 checked, none", n, problems)
	}
}

// TestVerifyStorageChecksInfo checks that storage:verify reads each .info
// as the go command does, and wants its Time to be the recorded one: it
// checked the version only, and passed an .info whose time was not the
// version's, or had none, which the go command then takes as the
// version's time (go list -m -json shows it). What an
// upstream's .info adds (Origin, a time in nanoseconds, which the
// database keeps to the microsecond) is fine.
func TestVerifyStorageChecksInfo(t *testing.T) {
	up := newFakeUpstream()
	const dep = "example.com/dep"
	up.add(t, dep, "v1.0.0", "dep")
	fv := up.versions[dep+"@v1.0.0"]
	fv.info = fv.info.Add(123456789 * time.Nanosecond)
	up.versions[dep+"@v1.0.0"] = fv
	r := cachingRegistry(t, up, nil)
	r.read(t, dep, "v1.0.0", storage.Info)
	const path = "private.example/m"
	publishAll(t, r, path, "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0")
	for version, info := range map[string]string{
		"v1.1.0": `{"Version":"v1.1.0","Time":"2001-01-01T00:00:00Z"}`,
		"v1.2.0": `{"Version":"v1.2.0"}`,
		"v1.3.0": `{"Version":"v1.3.0","Time":"yesterday"}`,
		"v1.4.0": `{"Version":"v1.4.1","Time":"2026-11-21T12:00:00Z"}`,
		"v1.5.0": `{"Version":"v1.5.0","Time":"2026-11-21T13:00:00+01:00","Origin":{"VCS":"git"}}`, // t0
	} {
		if err := r.disk.Put(context.Background(), path, version, storage.Info, strings.NewReader(info)); err != nil {
			t.Fatal(err)
		}
	}
	n, problems := verifyLines(t, r.Service)
	want := []string{
		`private.example/m@v1.1.0: .info gives the time 2001-01-01T00:00:00Z, recorded 2026-11-21T12:00:00Z`,
		`private.example/m@v1.2.0: .info gives no time, recorded 2026-11-21T12:00:00Z`,
		`private.example/m@v1.3.0: .info file is not valid JSON: parsing time `, // and encoding/json's words
		`private.example/m@v1.4.0: .info file names version "v1.4.1"`,
	}
	if n != 7 || !slices.EqualFunc(problems, want, strings.HasPrefix) {
		t.Errorf("checked %d, problems\n%s\nwant 7 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// TestVerifyStorageOnDatabases runs storage:verify on each database, whose
// times (to the microsecond, in UTC) it compares with those of the stored
// .info files, here an imported one's to the nanosecond and in another
// zone: as stored, it passes; with another time, it does not. A deleted
// version's files left behind are reported.
func TestVerifyStorageOnDatabases(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	for name, data := range map[string][]byte{
		"v1.0.0.zip":  moduleZip(t, "example.com/a", "v1.0.0", "a"),
		"v1.0.0.mod":  []byte(goMod("example.com/a")),
		"v1.0.0.info": []byte(`{"Version":"v1.0.0","Time":"2024-01-02T03:04:05.123456789+02:00","Origin":{"VCS":"git"}}`),
	} {
		name = filepath.Join(cache, "example.com/a/@v", name)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		disk, err := storage.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg := modproxy.Config{Metadata: models.NewRegistry(conn), Blobs: disk, TempDir: t.TempDir()}
		s := modproxy.New(cfg)
		if _, err := s.ImportDir(ctx, admin, cache, func(modproxy.ImportEvent) {}); err != nil {
			t.Fatal(err)
		}
		for _, version := range []string{"v1.0.0", "v1.1.0"} {
			if _, err := s.Publish(ctx, alice, "example.com/b", version, bytes.NewReader(moduleZip(t, "example.com/b", version, "b"))); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Blobs = readOnlyStore{disk}
		if err := modproxy.New(cfg).Delete(ctx, alice, "example.com/b", "v1.1.0", modproxy.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []string{
			"example.com/b@v1.1.0: stored files of a deleted version: .info .mod .zip",
			"FIXED example.com/b/@v/list: should not name v1.1.0: rewritten from the records",
		}
		if n, problems := verifyLines(t, s); n != 2 || !slices.Equal(problems, want) {
			t.Errorf("checked %d, problems %q; want 2 checked, problems %q", n, problems, want)
		}
		want = want[:1] // the list rewritten

		if err := disk.Put(ctx, "example.com/a", "v1.0.0", storage.Info, strings.NewReader(`{"Version":"v1.0.0","Time":"2024-01-02T01:04:05.123457Z"}`)); err != nil {
			t.Fatal(err)
		}
		want = append([]string{"example.com/a@v1.0.0: .info gives the time 2024-01-02T01:04:05.123457Z, recorded 2024-01-02T01:04:05.123456Z"}, want...)
		if n, problems := verifyLines(t, s); n != 2 || !slices.Equal(problems, want) {
			t.Errorf("checked %d, problems %q; want 2 checked, problems %q", n, problems, want)
		}
	})
}

// TestRecordedTimesOfOlderBuilds checks storage:verify, and the restore
// of a lost .info, on the records of versions fetched by builds before
// times were cut to the microsecond (4644de3), which recorded an
// upstream's .info time as it came: SQLite kept its nanoseconds, and
// PostgreSQL rounded them to the microsecond, 07.9999996 to 08. The .info
// stored beside such a record is the upstream's, and gives the version's
// time: storage:verify reported it as BAD after an upgrade, and a lost one
// was made again from the record instead of being fetched again, Origin
// and all.
func TestRecordedTimesOfOlderBuilds(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	times := map[string]time.Time{
		"v1.0.0": time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC),
		"v1.1.0": time.Date(2025, 3, 4, 5, 6, 7, 999999600, time.UTC),
	}
	for _, version := range slices.Sorted(maps.Keys(times)) {
		up.add(t, path, version, version)
		fv := up.versions[path+"@"+version]
		fv.info = times[version]
		up.versions[path+"@"+version] = fv
	}
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		disk, err := storage.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := &testRegistry{disk: disk, tempDir: t.TempDir()}
		r.Service = modproxy.New(modproxy.Config{
			Metadata: models.NewRegistry(conn), Blobs: disk, TempDir: r.tempDir,
			Upstream: func(string) modproxy.Upstream { return up },
		})
		infos := make(map[string][]byte)
		for version, at := range times {
			infos[version] = r.read(t, path, version, storage.Info)
			r.read(t, path, version, storage.Mod)
			r.read(t, path, version, storage.Zip)
			// What the older builds recorded: the time uncut.
			err := conn.RawQuery(`UPDATE versions SET version_time = ?
				WHERE version = ? AND module_id = (SELECT id FROM modules WHERE path = ?)`, at, version, path).Exec()
			if err != nil {
				t.Fatal(err)
			}
		}
		r.InvalidateAll()
		if n, problems := verifyLines(t, r.Service); n != 2 || len(problems) != 0 {
			t.Errorf("checked %d, problems %q; want 2 checked, none", n, problems)
		}
		for version := range times {
			r.removeStored(t, path, version, storage.Info)
			if got := r.read(t, path, version, storage.Info); !bytes.Equal(got, infos[version]) {
				t.Errorf("%s: restored .info = %s; want the upstream's again, %s", version, got, infos[version])
			}
		}
		if got := up.count("info"); got != 4 {
			t.Errorf("upstream .info requests = %d; want 4, one a version and one a restore", got)
		}
		up.mu.Lock()
		up.calls = make(map[string]int)
		up.mu.Unlock()
	})
}

// TestVerifyStorageReportsLists checks that storage:verify says which
// @v/list files it rewrites, and why, and fails when it cannot: it
// rewrote them silently, and ignored its failures but for a log line. It
// also rewrites the list of a module that has no record left, which it
// passed by, so that a purge cut off before it rewrote the list left one
// naming the purged versions, as the @latest of GOPROXY=file:// readers.
func TestVerifyStorageReportsLists(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	publishAll(t, r, "example.com/a", "v1.0.0", "v1.1.0")
	publishAll(t, r, "example.com/b", "v1.0.0")
	publishAll(t, r, "example.com/c", "v1.0.0", "v1.1.0")
	publishAll(t, r, "example.com/d", "v1.0.0")
	failing := r.node(t, func(c *modproxy.Config) { c.Blobs = readOnlyStore{r.disk} })
	if err := failing.Purge(ctx, admin, "example.com/b", "v1.0.0", "leaked a secret"); err != nil {
		t.Fatal(err)
	}
	if err := failing.Delete(ctx, admin, "example.com/c", "v1.0.0", modproxy.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.disk.Delete(ctx, "example.com/c", "v1.0.0"); err != nil { // the list alone is stale
		t.Fatal(err)
	}
	for path, list := range map[string][]string{"example.com/a": {"v1.0.0"}, "example.com/d": {"v1.0.0", "v1.0.0"}} {
		if err := r.disk.PutList(ctx, path, list); err != nil {
			t.Fatal(err)
		}
	}
	before := r.storedFiles(t)

	// Storage that cannot be written to: each list is reported, not fixed.
	n, problems := verifyLines(t, failing)
	want := []string{
		`example.com/a/@v/list: lacked v1.1.0, and could not be rewritten: open example.com/a/@v/list: read-only file system`,
		`example.com/c/@v/list: should not name v1.0.0, and could not be rewritten: open example.com/c/@v/list: read-only file system`,
		`example.com/d/@v/list: not as Agora writes it, and could not be rewritten: open example.com/d/@v/list: read-only file system`,
		`example.com/b@v1.0.0: stored files without a version record: .info .mod .zip`,
		`example.com/b/@v/list: should not name v1.0.0, and could not be removed: open example.com/b/@v/list: read-only file system`,
	}
	if n != 4 || !slices.Equal(problems, want) {
		t.Errorf("checked %d, problems\n%s\nwant 4 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if got := r.storedFiles(t); !maps.Equal(got, before) {
		t.Errorf("storage changed: %q, was %q", got, before)
	}

	n, problems = verifyLines(t, r.Service)
	want = []string{
		`FIXED example.com/a/@v/list: lacked v1.1.0: rewritten from the records`,
		`FIXED example.com/c/@v/list: should not name v1.0.0: rewritten from the records`,
		`FIXED example.com/d/@v/list: not as Agora writes it: rewritten from the records`,
		`example.com/b@v1.0.0: stored files without a version record: .info .mod .zip`,
		`FIXED example.com/b/@v/list: should not name v1.0.0: removed`,
	}
	if n != 4 || !slices.Equal(problems, want) {
		t.Errorf("checked %d, problems\n%s\nwant 4 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	got := r.storedFiles(t)
	for path, list := range map[string]string{"example.com/a": "v1.0.0\nv1.1.0\n", "example.com/c": "v1.1.0\n", "example.com/d": "v1.0.0\n"} {
		if got[path+"/@v/list"] != list {
			t.Errorf("%s/@v/list = %q; want %q", path, got[path+"/@v/list"], list)
		}
	}
	if list, ok := got["example.com/b/@v/list"]; ok {
		t.Errorf("example.com/b/@v/list = %q; want none", list)
	}
}

// TestVerifyStorageRepair checks that storage:verify repair removes what a
// delete run again would (the files of deleted and blocked versions), and
// only that: the files of a version without a record may be its only copy,
// if the database lost the record, and are only reported, as are files it
// fails to remove. Without repair, nothing is removed.
func TestVerifyStorageRepair(t *testing.T) {
	r, failing := leftoversOfCutOffDeletes(t)
	before := r.storedFiles(t)
	verifyLines(t, failing)
	if got := r.storedFiles(t); !maps.Equal(got, before) {
		t.Fatalf("storage:verify without repair changed storage: %q, was %q", sortedKeys(got), sortedKeys(before))
	}

	n, problems := verifyLinesWith(t, failing, modproxy.VerifyOptions{Repair: true})
	want := []string{
		"example.com/m@v1.0.0: stored files of a deleted version: .info .mod .zip, and could not be removed: remove example.com/m@v1.0.0: read-only file system",
		"example.com/m@v1.1.0: stored files of a blocked version: .info .mod .zip, and could not be removed: remove example.com/m@v1.1.0: read-only file system",
		"example.com/m@v1.2.0: stored files without a version record: .info .mod .zip",
		"example.com/m/@v/list: should not name v1.0.0 v1.1.0 v1.2.0, and could not be rewritten: open example.com/m/@v/list: read-only file system",
	}
	if n != 1 || !slices.Equal(problems, want) {
		t.Errorf("repair on read-only storage: checked %d, problems\n%s\nwant 1 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}

	n, problems = verifyLinesWith(t, r.Service, modproxy.VerifyOptions{Repair: true})
	want = []string{
		"FIXED example.com/m@v1.0.0: stored files of a deleted version: .info .mod .zip: removed",
		"FIXED example.com/m@v1.1.0: stored files of a blocked version: .info .mod .zip: removed",
		"example.com/m@v1.2.0: stored files without a version record: .info .mod .zip",
		"FIXED example.com/m/@v/list: should not name v1.0.0 v1.1.0 v1.2.0: rewritten from the records",
	}
	if n != 1 || !slices.Equal(problems, want) {
		t.Errorf("repair: checked %d, problems\n%s\nwant 1 checked, problems\n%s", n, strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	wantFiles := []string{"example.com/m/@v/list"}
	for _, v := range []string{"v1.2.0", "v1.3.0"} {
		for _, kind := range []string{".info", ".mod", ".zip"} {
			wantFiles = append(wantFiles, "example.com/m/@v/"+v+kind)
		}
	}
	if got := sortedKeys(r.storedFiles(t)); !slices.Equal(got, wantFiles) {
		t.Errorf("storage after repair holds %q; want %q", got, wantFiles)
	}
}
