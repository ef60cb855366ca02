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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"agora/checksum"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
	"agora/upstream"
)

// fakeUpstream is an in-memory Upstream. It counts the requests of each
// kind, can be made to fail, and can hold zip requests until released.
type fakeUpstream struct {
	url string

	mu       sync.Mutex
	versions map[string]fakeVersion  // path@version
	lists    map[string][]string     // path → list; absent: not found
	latest   map[string]string       // path → version its @latest names
	queries  map[string]string       // path@query → version
	down     error                   // every request fails with it
	calls    map[string]int          // kind → requests
	hold     chan struct{}           // when set, Zip waits for it to close
	hangInfo bool                    // Info answers only when its context ends
	gate     func(kind string) error // when set, .mod and .zip requests pass it first

	openZips atomic.Int64 // zip bodies handed out and not closed yet
}

type fakeVersion struct {
	info time.Time // zero: an .info without a time, as an Agora serves for a version stored without one
	mod  string
	zip  []byte
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{
		url:      "https://upstream.test",
		versions: make(map[string]fakeVersion),
		lists:    make(map[string][]string),
		latest:   make(map[string]string),
		queries:  make(map[string]string),
		calls:    make(map[string]int),
	}
}

// add makes path@version available upstream, with a zip built from content.
func (u *fakeUpstream) add(t *testing.T, path, version, content string) fakeVersion {
	t.Helper()
	fv := fakeVersion{info: t0.Add(-time.Hour), mod: goMod(path), zip: moduleZip(t, path, version, content)}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.versions[path+"@"+version] = fv
	u.lists[path] = append(u.lists[path], version)
	return fv
}

func (u *fakeUpstream) count(kind string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[kind]
}

func (u *fakeUpstream) setDown(err error) {
	u.mu.Lock()
	u.down = err
	u.mu.Unlock()
}

func (u *fakeUpstream) begin(kind string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls[kind]++
	return u.down
}

func (u *fakeUpstream) notFound(what string) error {
	return fmt.Errorf("%s: %w", what, upstream.ErrNotFound)
}

func (u *fakeUpstream) lookup(path, version string) (fakeVersion, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fv, ok := u.versions[path+"@"+version]
	return fv, ok
}

func (u *fakeUpstream) info(path, version string) (*upstream.Info, string, error) {
	fv, ok := u.lookup(path, version)
	if !ok {
		return nil, "", u.notFound(path + "@" + version)
	}
	raw := fmt.Sprintf(`{"Version":%q,"Time":%q,"Origin":{"VCS":"git"}}`, version, fv.info.Format(time.RFC3339Nano))
	if fv.info.IsZero() {
		raw = fmt.Sprintf(`{"Version":%q}`, version)
	}
	return &upstream.Info{Version: version, Time: fv.info, Raw: []byte(raw)}, u.url, nil
}

func (u *fakeUpstream) Info(ctx context.Context, path, query string) (*upstream.Info, string, error) {
	if err := u.begin("info"); err != nil {
		return nil, "", err
	}
	u.mu.Lock()
	if u.hangInfo {
		u.mu.Unlock()
		<-ctx.Done()
		return nil, "", ctx.Err()
	}
	if v, ok := u.queries[path+"@"+query]; ok {
		query = v
	}
	u.mu.Unlock()
	return u.info(path, query)
}

func (u *fakeUpstream) Latest(ctx context.Context, path string) (*upstream.Info, string, error) {
	if err := u.begin("latest"); err != nil {
		return nil, "", err
	}
	u.mu.Lock()
	v, ok := u.latest[path]
	u.mu.Unlock()
	if !ok {
		return nil, "", u.notFound(path)
	}
	return u.info(path, v)
}

func (u *fakeUpstream) List(ctx context.Context, path string) ([]string, string, error) {
	if err := u.begin("list"); err != nil {
		return nil, "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	list, ok := u.lists[path]
	if !ok {
		return nil, "", u.notFound(path)
	}
	return slices.Clone(list), u.url, nil
}

func (u *fakeUpstream) Mod(ctx context.Context, path, version string) ([]byte, string, error) {
	if err := u.begin("mod"); err != nil {
		return nil, "", err
	}
	if u.gate != nil {
		if err := u.gate("mod"); err != nil {
			return nil, "", err
		}
	}
	fv, ok := u.lookup(path, version)
	if !ok {
		return nil, "", u.notFound(path + "@" + version)
	}
	return []byte(fv.mod), u.url, nil
}

func (u *fakeUpstream) Zip(ctx context.Context, path, version string) (io.ReadCloser, string, error) {
	if err := u.begin("zip"); err != nil {
		return nil, "", err
	}
	u.mu.Lock()
	hold := u.hold
	u.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if u.gate != nil {
		if err := u.gate("zip"); err != nil {
			return nil, "", err
		}
	}
	fv, ok := u.lookup(path, version)
	if !ok {
		return nil, "", u.notFound(path + "@" + version)
	}
	u.openZips.Add(1)
	return &fakeZipBody{Reader: bytes.NewReader(fv.zip), u: u}, u.url, nil
}

// fakeZipBody is a zip body of the fakeUpstream, which counts the bodies
// not closed: a real upstream's request ends, and is counted in the
// metrics, only when its body is closed.
type fakeZipBody struct {
	io.Reader
	u      *fakeUpstream
	closed atomic.Bool
}

func (b *fakeZipBody) Close() error {
	if !b.closed.Swap(true) {
		b.u.openZips.Add(-1)
	}
	return nil
}

// checkZipsClosed fails t unless every zip body u handed out is closed
// once t ends (fetches that outlive their client get a few seconds).
func (u *fakeUpstream) checkZipsClosed(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for u.openZips.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := u.openZips.Load(); n != 0 {
			t.Errorf("%d zip bodies from the upstream were never closed", n)
		}
	})
}

// fakeChecker is a checksum database that knows some hashes. When
// rendezvous is set, Lookup closes lookingUp and then waits for rendezvous
// to close (or fails after a while): a test can hold the upstream's answer
// until the lookup is under way, which only a lookup that runs alongside
// the fetch survives.
type fakeChecker struct {
	mu    sync.Mutex
	known map[string]string // "path version" and "path version/go.mod" → h1:
	calls int

	lookingUp  chan struct{}
	rendezvous chan struct{}
}

func (c *fakeChecker) Lookup(ctx context.Context, path, version string) (*checksum.Sums, error) {
	if c.rendezvous != nil {
		close(c.lookingUp)
		select {
		case <-c.rendezvous:
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("%w: the upstream fetch did not start while the lookup waited", checksum.ErrUnavailable)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	sums := &checksum.Sums{DB: "fake.example", Path: path, Version: version}
	if h, ok := c.known[path+" "+version]; ok {
		sums.Zip = []string{h}
	}
	if h, ok := c.known[path+" "+version+"/go.mod"]; ok {
		sums.Mod = []string{h}
	}
	if sums.Zip == nil && sums.Mod == nil {
		return nil, fmt.Errorf("%s@%s: %w", path, version, checksum.ErrNotFound)
	}
	return sums, nil
}

// cachingRegistry is a test registry whose paths under example.com are
// fetched from up; private.example/ paths have no upstream.
func cachingRegistry(t *testing.T, up *fakeUpstream, checker modproxy.Checker) *testRegistry {
	t.Helper()
	up.checkZipsClosed(t)
	meta := modproxytest.NewMemStore()
	r := newTestRegistryOn(t, meta, meta)
	r.refetchFrom(up, func(c *modproxy.Config) {
		c.Upstream = func(path string) modproxy.Upstream {
			if strings.HasPrefix(path, "private.example/") {
				return nil
			}
			return up
		}
		c.Checker = checker
	})
	return r
}

// refetchFrom gives r a new Service on its metadata, storage and clock
// that fetches every path from up, keeps lists a minute, and has what edit
// (if not nil) changes of that.
func (r *testRegistry) refetchFrom(up modproxy.Upstream, edit func(*modproxy.Config)) {
	c := modproxy.Config{
		Metadata: r.meta, Blobs: r.disk, TempDir: r.tempDir, Now: r.clock.Now,
		Upstream: func(string) modproxy.Upstream { return up },
		ListTTL:  time.Minute,
	}
	if edit != nil {
		edit(&c)
	}
	r.Service = modproxy.New(c)
}

func TestFetchModStoresOnlyMod(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)

	if got := r.read(t, path, version, storage.Mod); string(got) != fv.mod {
		t.Fatalf(".mod = %q; want %q", got, fv.mod)
	}
	if files := r.storedNames(t); !slices.Equal(files, []string{"example.com/dep/@v/list", "example.com/dep/@v/v1.2.0.mod"}) {
		t.Errorf("stored files after a .mod request = %q; want the .mod and the list only", files)
	}
	v, err := r.meta.Version(context.Background(), path, version)
	if err != nil {
		t.Fatal(err)
	}
	if v.Source != up.url || v.ModHash != hashGoMod(t, []byte(fv.mod)) || v.ZipHash != "" || !v.Time.IsZero() {
		t.Errorf("record = %+v; want source %s, the go.mod hash, no zip, no time", v, up.url)
	}

	// Served from storage from now on, even with the upstream down.
	up.setDown(errors.New("connection refused"))
	r.read(t, path, version, storage.Mod)
	if n := up.count("mod"); n != 1 {
		t.Errorf("upstream .mod requests = %d; want 1", n)
	}
}

func TestFetchZipThenServeOffline(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, fv.zip) {
		t.Fatal("served zip differs from the upstream's")
	}
	info := r.read(t, path, version, storage.Info)
	if !bytes.Contains(info, []byte(`"Origin"`)) {
		t.Errorf(".info = %s; want the upstream's bytes, Origin included", info)
	}
	v, err := r.meta.Version(ctx, path, version)
	if err != nil {
		t.Fatal(err)
	}
	if v.ZipHash != hashZipBytes(t, fv.zip) || v.Size != int64(len(fv.zip)) || !v.Time.Equal(fv.info) {
		t.Errorf("record = %+v; want the zip's hash and size and the upstream's time", v)
	}

	up.setDown(errors.New("connection refused"))
	for _, kind := range storage.Kinds {
		r.read(t, path, version, kind)
	}
	list, err := r.List(ctx, path)
	if err != nil || !slices.Equal(list, []string{version}) {
		t.Errorf("List with the upstream down = %q, %v; want the stored version", list, err)
	}
	if n := up.count("zip"); n != 1 {
		t.Errorf("upstream .zip requests = %d; want 1", n)
	}
}

func TestFetchQueryStoresCanonicalVersion(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	pseudo := "v0.0.0-20261120101010-abcdefabcdef"
	up.add(t, path, pseudo, "a")
	up.queries[path+"@master"] = pseudo
	r := cachingRegistry(t, up, nil)

	_, v, err := r.Open(context.Background(), path, "master", storage.Info)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != pseudo {
		t.Errorf("Open(master.info) resolved to %s; want %s", v.Version, pseudo)
	}
	for _, f := range r.storedNames(t) {
		if strings.Contains(f, "master") {
			t.Errorf("stored %s under the query's name", f)
		}
	}
	if _, _, err := r.Open(context.Background(), path, "master", storage.Zip); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Open(master.zip) = %v; want ErrNotFound (only .info resolves queries)", err)
	}
}

// TestQueryObserved checks that a request for the .info of a query is told
// to the Observer as kind query, and a miss, as the upstream resolves it
// every time; the version it names, stored by the first, is an .info hit.
// And that only the .info resolves a query: the .mod of one is a .mod's
// miss.
func TestQueryObserved(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.0.0"
	up.add(t, path, version, "a")
	up.queries[path+"@master"] = version
	r := cachingRegistry(t, up, nil)
	obs := newCacheObserver()
	r.Service = r.node(t, func(c *modproxy.Config) {
		c.Upstream = func(string) modproxy.Upstream { return up }
		c.Observer = obs
	})
	ctx := context.Background()
	for range 2 {
		if _, v, err := r.Open(ctx, path, "master", storage.Info); err != nil || v.Version != version {
			t.Fatalf("Open(master.info) = %+v, %v; want %s", v, err, version)
		}
	}
	r.read(t, path, version, storage.Info)
	if _, _, err := r.Open(ctx, path, "master", storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Open(master.mod) = %v; want ErrNotFound", err)
	}
	obs.check(t, map[string]int{"query miss": 2, "info hit": 1, "mod miss": 1}, map[string]int{})
}

// TestIncompatibleVersionQuery checks the answer to v2.0.0's .info of a
// path without a major-version suffix, which 'go get m@v2.0.0' asks for:
// the go command takes the v2.0.0+incompatible that proxy.golang.org
// answers (cmd/go's proxyRepo.Stat checks the version answered only when
// the one asked for is valid for the path), and v2.0.0 can name nothing
// else. It is answered from what is stored, the upstream down or none,
// and only the .info resolves it.
func TestIncompatibleVersionQuery(t *testing.T) {
	up := newFakeUpstream()
	const path, private = "example.com/dep", "private.example/dep"
	up.add(t, path, "v2.0.0+incompatible", "a")
	up.add(t, path, "v2.1.0-rc.1+incompatible", "b")
	r := cachingRegistry(t, up, nil)
	r.publish(t, admin, private, "v3.0.0+incompatible", moduleZip(t, private, "v3.0.0+incompatible", "c"))
	ctx := context.Background()

	for _, tt := range []struct{ path, query, want string }{
		{path, "v2.0.0", "v2.0.0+incompatible"},
		{path, "v2.1.0-rc.1", "v2.1.0-rc.1+incompatible"},
		{private, "v3.0.0", "v3.0.0+incompatible"},
	} {
		for _, down := range []bool{false, true} {
			if down {
				up.setDown(errors.New("connection refused"))
			}
			_, v, err := r.Open(ctx, tt.path, tt.query, storage.Info)
			if err != nil || v.Version != tt.want {
				t.Errorf("Open(%s@%s.info) with the upstream down %v = %+v, %v; want %s", tt.path, tt.query, down, v, err, tt.want)
			}
			up.setDown(nil)
		}
		if _, _, err := r.Open(ctx, tt.path, tt.query, storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("Open(%s@%s.mod) = %v; want ErrNotFound (only .info resolves queries)", tt.path, tt.query, err)
		}
	}
	for _, tt := range []struct{ path, query string }{
		{path, "v3.0.0"},                 // not upstream
		{path, "v1.0.0+incompatible"},    // +incompatible is for v2 and up
		{"example.com/dep/v2", "v3.0.0"}, // the path names its major version
		{"gopkg.in/dep.v2", "v3.0.0"},
	} {
		if _, v, err := r.Open(ctx, tt.path, tt.query, storage.Info); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("Open(%s@%s.info) = %+v, %v; want ErrNotFound", tt.path, tt.query, v, err)
		}
	}
	for _, f := range r.storedNames(t) {
		if strings.Contains(f, "v2.0.0.") || strings.Contains(f, "v3.0.0.") {
			t.Errorf("stored %s under the query's name", f)
		}
	}
}

// TestCommitQueryFromStoredPseudoVersion checks the answer to the .info of
// a commit hash ('go get m@0123456789ab') when no upstream resolves it: a
// module published here, which has no upstream, or a fetched one while
// the upstream is down or does not know the commit (a GOPROXY file tree
// knows none). The stored pseudo-version that names the commit is the
// answer, the highest of several, as the go command resolves a commit
// from its module cache when it may ask no proxy; an upstream that
// resolves the commit is asked first.
func TestCommitQueryFromStoredPseudoVersion(t *testing.T) {
	up := newFakeUpstream()
	const (
		path, private = "example.com/dep", "private.example/dep"
		rev           = "0123456789ab"
		full          = rev + "cdef0123456789abcdef01234567"
		pseudo        = "v0.0.0-20261120101010-" + rev
		later         = "v1.2.4-0.20261120101010-" + rev // the same commit, after v1.2.3 was tagged
		other         = "v0.0.0-20261121101010-ba9876543210"
	)
	up.add(t, path, pseudo, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	if _, _, err := r.Open(ctx, path, pseudo, storage.Zip); err != nil {
		t.Fatal(err)
	}
	r.publish(t, alice, private, pseudo, moduleZip(t, private, pseudo, "a"))
	r.publish(t, alice, private, later, moduleZip(t, private, later, "a"))
	r.publish(t, alice, private, other, moduleZip(t, private, other, "b"))

	check := func(what, path, query, want string) {
		t.Helper()
		f, v, err := r.Open(ctx, path, query, storage.Info)
		if err != nil {
			t.Errorf("%s: Open(%s@%s.info) = %v; want %s", what, path, query, err, want)
			return
		}
		defer f.Close()
		var info struct{ Version string }
		if err := json.NewDecoder(f).Decode(&info); err != nil || v.Version != want || info.Version != want {
			t.Errorf("%s: Open(%s@%s.info) = %s, %q (%v); want %s", what, path, query, v.Version, info.Version, err, want)
		}
	}
	unknown := func(what, path, query string, kind storage.Kind) {
		t.Helper()
		if _, v, err := r.Open(ctx, path, query, kind); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("%s: Open(%s@%s%s) = %+v, %v; want ErrNotFound", what, path, query, kind, v, err)
		}
	}

	check("published", private, rev, later)
	check("published, the full hash", private, full, later)
	check("published, another commit", private, "ba9876543210", other)
	unknown("published, too short a hash to tell", private, rev[:11], storage.Info)
	unknown("published, upper case", private, strings.ToUpper(rev), storage.Info)
	unknown("published, a branch", private, "main", storage.Info)
	unknown("published, a commit not stored", private, "fedcba987654", storage.Info)
	unknown("published, the .mod of a commit", private, rev, storage.Mod)

	check("fetched, the upstream not knowing the commit", path, rev, pseudo)
	up.setDown(errors.New("connection refused"))
	check("fetched, the upstream down", path, full, pseudo)
	unknown("fetched, the upstream down, a branch", path, "main", storage.Info)
	up.setDown(nil)

	// A commit the upstream resolves is its answer: a tag may name it now.
	up.add(t, path, "v1.0.0", "a")
	up.queries[path+"@"+rev] = "v1.0.0"
	check("fetched, the upstream resolving the commit", path, rev, "v1.0.0")

	// A deleted pseudo-version names its commit no more.
	if err := r.Delete(ctx, alice, private, later, modproxy.DeleteOptions{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	check("published, the highest deleted", private, rev, pseudo)
}

// TestFetchQueryResolvedToInvalidVersion checks that a query the upstream
// answers with a version that cannot be the path's is refused as the
// upstream's fault, and stores nothing.
func TestFetchQueryResolvedToInvalidVersion(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	up.add(t, path, "v2.0.0", "a") // not a version of a path without /v2
	up.queries[path+"@main"] = "v2.0.0"
	r := cachingRegistry(t, up, nil)

	_, _, err := r.Open(context.Background(), path, "main", storage.Info)
	if !errors.Is(err, modproxy.ErrUpstream) {
		t.Fatalf("Open(main.info) = %v; want ErrUpstream", err)
	}
	if msg := err.Error(); strings.Count(msg, path+"@v2.0.0") != 1 || !strings.Contains(msg, "answered with an invalid version") {
		t.Errorf("error %q; want the version named once, and why it is refused", msg)
	}
	if files := r.storedNames(t); len(files) != 0 {
		t.Errorf("stored %q; want nothing", files)
	}
}

// TestFetchInfoOfAnotherVersionRefused checks that an upstream that
// answers a version's .info with another version's is refused as a bad
// gateway, and that nothing is stored: the go command refuses such an
// answer ("proxy returned info for version X instead of requested
// version"), and storing it would record a version nobody asked for.
func TestFetchInfoOfAnotherVersionRefused(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	up.add(t, path, "v1.0.0", "a")
	up.add(t, path, "v1.0.1", "b")
	up.queries[path+"@v1.0.0"] = "v1.0.1"
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	f, v, err := r.Open(ctx, path, "v1.0.0", storage.Info)
	if err == nil {
		f.Close()
		t.Fatalf("Open(v1.0.0.info) answered with %s's .info; want ErrUpstream", v.Version)
	}
	if !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "v1.0.1") {
		t.Errorf("Open(v1.0.0.info) = %v; want ErrUpstream naming the version answered", err)
	}
	if files := r.storedNames(t); len(files) != 0 {
		t.Errorf("stored %q; want nothing", files)
	}
	if _, err := r.meta.Version(ctx, path, "v1.0.1"); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("record of the version answered: %v; want none", err)
	}
}

func TestFetchChecksumMismatchRefused(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	checker := &fakeChecker{known: map[string]string{
		path + " " + version:             "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // not the zip's
		path + " " + version + "/go.mod": hashGoMod(t, []byte(fv.mod)),
	}}
	r := cachingRegistry(t, up, checker)
	ctx := context.Background()

	_, _, err := r.Open(ctx, path, version, storage.Zip)
	if !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Open(.zip) of a tampered zip = %v; want ErrUpstream about the checksum database", err)
	}
	r.wantRefused(t, path, version)

	// The go.mod matches the database: a .mod request is served.
	r.read(t, path, version, storage.Mod)
}

// wantRefused checks that a fetch of path@version was refused whole:
// nothing stored, no record, and the refusal audited once.
func (r *testRegistry) wantRefused(t *testing.T, path, version string) {
	t.Helper()
	if files := r.storedNames(t); len(files) != 0 {
		t.Errorf("stored %q after a refused fetch; want nothing", files)
	}
	if _, err := r.meta.Version(context.Background(), path, version); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("record after a refused fetch: %v; want none", err)
	}
	events := r.meta.Events()
	if len(events) != 1 || events[0].Action != modproxy.ActionFetchRejected || events[0].Path != path || events[0].Version != version {
		t.Errorf("audit events = %+v; want one %s of %s@%s", events, modproxy.ActionFetchRejected, path, version)
	}
}

// TestFetchModChecksumMismatchRefused checks that a .mod fetched on its
// own, without its zip (so with no zip hash to check), is still verified
// against the checksum database's go.mod hash: a mismatch is refused,
// nothing of it is stored, and the refusal is audited.
func TestFetchModChecksumMismatchRefused(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	checker := &fakeChecker{known: map[string]string{
		path + " " + version:             hashZipBytes(t, fv.zip),
		path + " " + version + "/go.mod": "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // not the go.mod's
	}}
	r := cachingRegistry(t, up, checker)
	ctx := context.Background()

	_, _, err := r.Open(ctx, path, version, storage.Mod)
	if !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Open(.mod) of a tampered go.mod = %v; want ErrUpstream about the checksum database", err)
	}
	if n := up.count("mod"); n != 1 {
		t.Errorf("upstream .mod requests = %d; want 1", n)
	}
	r.wantRefused(t, path, version)
}

// TestFetchOfPublishedModuleVerifiedOnceServed checks that a version of
// a path published here is looked up in the checksum database only once
// the upstream has served its file, and then verified as any other. A
// private module, which no upstream has, is never looked up: the lookup
// would give its path away to the database's operator (which is why
// /sumdb/ refuses such lookups too). But anyone who may publish can
// publish under a public module's path, and that must not switch off the
// verification of what the upstream serves of it.
func TestFetchOfPublishedModuleVerifiedOnceServed(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/corp/secret"
	fv := up.add(t, path, "v1.0.1", "b")
	checker := &fakeChecker{known: map[string]string{
		path + " v1.0.1":        "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // not the zip's
		path + " v1.0.1/go.mod": hashGoMod(t, []byte(fv.mod)),
	}}
	r := cachingRegistry(t, up, checker)
	r.publish(t, alice, path, "v1.0.0", moduleZip(t, path, "v1.0.0", "a"))
	ctx := context.Background()
	lookups := func() int {
		checker.mu.Lock()
		defer checker.mu.Unlock()
		return checker.calls
	}

	// Not upstream: a private version, never looked up.
	for _, kind := range []storage.Kind{storage.Mod, storage.Zip} {
		if _, _, err := r.Open(ctx, path, "v1.0.2", kind); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("Open(v1.0.2%s) = %v; want ErrNotFound", kind, err)
		}
	}
	if n := lookups(); n != 0 {
		t.Fatalf("the checksum database was asked %d times about a version no upstream has; want never", n)
	}

	// Upstream: public, and verified.
	if got := r.read(t, path, "v1.0.1", storage.Mod); string(got) != fv.mod {
		t.Errorf(".mod = %q; want %q", got, fv.mod)
	}
	if n := lookups(); n != 1 {
		t.Errorf("checksum-database lookups after a .mod the upstream served = %d; want 1", n)
	}
	_, _, err := r.Open(ctx, path, "v1.0.1", storage.Zip)
	if !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("Open(.zip) of a zip the checksum database contradicts = %v; want ErrUpstream about the checksum database", err)
	}
}

// TestFetchOverlapsRoundTrips checks that a miss asks the checksum database
// while it fetches from the upstream and, for the zip of a version not
// recorded yet, fetches the .mod and the zip at the same time. Each request
// is held until all the others have started, so requests made one after
// another fail instead.
func TestFetchOverlapsRoundTrips(t *testing.T) {
	const wait = 5 * time.Second // only ever reached when the requests are sequential
	for _, kind := range []storage.Kind{storage.Mod, storage.Zip} {
		t.Run(string(kind), func(t *testing.T) {
			up := newFakeUpstream()
			const path, version = "example.com/dep", "v1.2.0"
			fv := up.add(t, path, version, "a")
			checker := &fakeChecker{
				known: map[string]string{
					path + " " + version:             hashZipBytes(t, fv.zip),
					path + " " + version + "/go.mod": hashGoMod(t, []byte(fv.mod)),
				},
				lookingUp:  make(chan struct{}),
				rendezvous: make(chan struct{}),
			}
			started := map[string]chan struct{}{"mod": make(chan struct{})}
			if kind == storage.Zip {
				started["zip"] = make(chan struct{})
			}
			var passed sync.Once
			up.gate = func(k string) error {
				close(started[k])
				others := []chan struct{}{checker.lookingUp}
				for other, ch := range started {
					if other != k {
						others = append(others, ch)
					}
				}
				for _, ch := range others {
					select {
					case <-ch:
					case <-time.After(wait):
						return fmt.Errorf("upstream .%s request: the other round trips did not start meanwhile", k)
					}
				}
				passed.Do(func() { close(checker.rendezvous) })
				return nil
			}
			r := cachingRegistry(t, up, checker)

			want := fv.mod
			if kind == storage.Zip {
				want = string(fv.zip)
			}
			if got := r.read(t, path, version, kind); string(got) != want {
				t.Fatalf("%s served differs from the upstream's", kind)
			}
			v, err := r.meta.Version(context.Background(), path, version)
			if err != nil {
				t.Fatal(err)
			}
			if v.ModHash != hashGoMod(t, []byte(fv.mod)) || kind == storage.Zip && v.ZipHash != hashZipBytes(t, fv.zip) {
				t.Errorf("record = %+v; want the verified hashes", v)
			}
		})
	}
}

func TestFetchConcurrentMissesFetchOnce(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	// The upstream's zip is held until every request joined the fetch
	// under way (or, were they not shared, each reached the upstream).
	const n = 50
	a := newArrivals(n)
	up.gate = func(kind string) error {
		if kind == "zip" {
			a.arrive(&a.upstream)
			<-a.all
		}
		return nil
	}
	r := cachingRegistry(t, up, nil)
	ctx := waitingContext{context.Background(), a}

	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			f, _, err := r.Open(ctx, path, version, storage.Zip)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			if b, _ := io.ReadAll(f); !bytes.Equal(b, fv.zip) {
				t.Error("served zip differs")
			}
		})
	}
	wg.Wait()
	if got := up.count("zip"); got != 1 {
		t.Errorf("upstream .zip requests for %d concurrent misses = %d; want 1", n, got)
	}
}

// arrivals holds the upstream's answers to lookups until n requests
// arrived: n requests at the upstream, or n requests waiting for one
// under way (see waitingContext). Requests that share one upstream request
// are held until each of them joined it; requests that do not share it
// each reach the upstream.
type arrivals struct {
	n   int
	all chan struct{}

	mu              sync.Mutex
	upstream, waits int
	released        bool
}

func newArrivals(n int) *arrivals { return &arrivals{n: n, all: make(chan struct{})} }

func (a *arrivals) arrive(count *int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if *count++; *count == a.n && !a.released {
		a.released = true
		close(a.all)
	}
}

// heldLookups is a fakeUpstream whose .info and @latest answers arrivals
// holds.
type heldLookups struct {
	*fakeUpstream
	a *arrivals
}

func (u heldLookups) Info(ctx context.Context, path, query string) (*upstream.Info, string, error) {
	u.a.arrive(&u.a.upstream)
	<-u.a.all
	return u.fakeUpstream.Info(ctx, path, query)
}

func (u heldLookups) Latest(ctx context.Context, path string) (*upstream.Info, string, error) {
	u.a.arrive(&u.a.upstream)
	<-u.a.all
	return u.fakeUpstream.Latest(ctx, path)
}

// waitingContext is a request's context that tells arrivals when the
// request waits on it: a request sharing an upstream request selects on
// its Done channel once it joined.
type waitingContext struct {
	context.Context
	a *arrivals
}

func (c waitingContext) Done() <-chan struct{} {
	c.a.arrive(&c.a.waits)
	return c.Context.Done()
}

// TestConcurrentLookupMissesAskOnce checks that concurrent requests for a
// query (master.info) and for @latest of a module without tags, which
// only the upstream can answer, share one upstream request, as misses of
// a file do: a build's go commands ask for them all at once.
func TestConcurrentLookupMissesAskOnce(t *testing.T) {
	const path, n = "example.com/untagged", 20
	pseudo := "v0.0.0-20261120101010-abcdefabcdef"
	for _, tt := range []struct {
		kind   string // of the upstream request
		lookup func(ctx context.Context, r *testRegistry) (*modproxy.Version, error)
	}{
		{"info", func(ctx context.Context, r *testRegistry) (*modproxy.Version, error) {
			f, v, err := r.Open(ctx, path, "master", storage.Info)
			if err == nil {
				f.Close()
			}
			return v, err
		}},
		{"latest", func(ctx context.Context, r *testRegistry) (*modproxy.Version, error) {
			return r.Latest(ctx, path)
		}},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			up := newFakeUpstream()
			up.add(t, path, pseudo, "a")
			up.lists[path] = nil // no tags
			up.latest[path] = pseudo
			up.queries[path+"@master"] = pseudo
			r := cachingRegistry(t, up, nil)
			a := newArrivals(n)
			r.refetchFrom(heldLookups{up, a}, nil)
			if _, err := r.List(context.Background(), path); err != nil { // the list, kept: no tags
				t.Fatal(err)
			}
			ctx := waitingContext{context.Background(), a}

			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					if v, err := tt.lookup(ctx, r); err != nil || v.Version != pseudo {
						t.Errorf("lookup = %+v, %v; want %s", v, err, pseudo)
					}
				})
			}
			wg.Wait()
			if got := up.count(tt.kind); got != 1 {
				t.Errorf("upstream %s requests for %d concurrent misses = %d; want 1", tt.kind, n, got)
			}
		})
	}
}

func TestFetchOutlivesTheClient(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	up.hold = make(chan struct{})
	r := cachingRegistry(t, up, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := r.Open(ctx, path, version, storage.Zip)
		done <- err
	}()
	for up.count("zip") == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Open after the client went away = %v; want context.Canceled", err)
	}
	close(up.hold)
	// The fetch finishes for whoever asks next; it is not repeated.
	r.read(t, path, version, storage.Zip)
	if got := up.count("zip"); got != 1 {
		t.Errorf("upstream .zip requests = %d; want 1", got)
	}
}

func TestFetchErrors(t *testing.T) {
	up := newFakeUpstream()
	up.add(t, "example.com/dep", "v1.0.0", "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	// Not found upstream: 404, so that the go command tries its next proxy.
	if _, _, err := r.Open(ctx, "example.com/dep", "v1.9.9", storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("unknown version: %v; want ErrNotFound", err)
	}
	// A private path is never fetched.
	if _, _, err := r.Open(ctx, "private.example/x", "v1.0.0", storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("private path: %v; want ErrNotFound", err)
	}
	// An upstream that fails for a version recorded here (its .info was
	// served): a bad gateway, not a missing module.
	if _, _, err := r.Open(ctx, "example.com/dep", "v1.0.0", storage.Info); err != nil {
		t.Fatal(err)
	}
	up.setDown(errors.New("connection refused"))
	if _, _, err := r.Open(ctx, "example.com/dep", "v1.0.0", storage.Mod); !errors.Is(err, modproxy.ErrUpstream) {
		t.Errorf("upstream down: %v; want ErrUpstream", err)
	}
	up.setDown(nil)
	if n := up.count("mod"); n != 2 {
		t.Errorf("upstream .mod requests = %d; want 2 (none for the private path)", n)
	}
	// A version that cannot exist for the path is not even asked for.
	if _, _, err := r.Open(ctx, "example.com/dep", "v2.0.0", storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("v2 version of a v1 path: %v; want ErrNotFound", err)
	} else if n := strings.Count(err.Error(), "example.com/dep@v2.0.0"); n != 1 {
		t.Errorf("the error names the version %d times; want once: %v", n, err)
	}
	if n := up.count("mod"); n != 2 {
		t.Errorf("upstream .mod requests = %d; want still 2", n)
	}

	// An invalid zip is refused and nothing is stored.
	bad := fakeVersion{info: t0, mod: goMod("example.com/bad"), zip: []byte("not a zip")}
	up.versions["example.com/bad@v1.0.0"] = bad
	if _, _, err := r.Open(ctx, "example.com/bad", "v1.0.0", storage.Zip); !errors.Is(err, modproxy.ErrUpstream) {
		t.Errorf("invalid zip: %v; want ErrUpstream", err)
	}
	if _, err := r.meta.Version(ctx, "example.com/bad", "v1.0.0"); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("record of a refused zip: %v; want none", err)
	}
}

// TestFetchRefusesModThatIsNoGoMod checks that a .mod an upstream serves
// with 200 but that is no go.mod (an empty body, an error page, a body cut
// short) is refused, fetched alone or alongside a zip without a go.mod,
// and nothing of it stored: the go command refuses to use a go.mod that
// does not parse or has no module line, and once stored, the .mod of a
// version never changes, and its zip, whose go.mod differs, would be
// refused for good. Without a checksum database to verify it (a path in
// AGORA_NOSUMDB), nothing else stops it. A go.mod declaring another path,
// as a fork's does, is a go.mod: the go command uses it in a replace.
func TestFetchRefusesModThatIsNoGoMod(t *testing.T) {
	const path, version = "example.com/dep", "v1.0.0"
	for _, tt := range []struct{ name, mod string }{
		{"an empty body", ""},
		{"an error page", "<html><body><h1>502 Bad Gateway</h1></body></html>\n"},
		{"a body cut short", "modu"},
		{"no module line", "go 1.22\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream()
			fv := up.add(t, path, version, "a")
			good := fv
			fv.mod = tt.mod
			up.versions[path+"@"+version] = fv
			legacy := fakeVersion{info: t0, mod: tt.mod, zip: buildZip(t, []zipFile{{"example.com/legacy@v1.0.0/m.go", "package m\n"}})}
			up.versions["example.com/legacy@v1.0.0"] = legacy
			r := cachingRegistry(t, up, nil)
			ctx := context.Background()

			if _, _, err := r.Open(ctx, path, version, storage.Mod); !errors.Is(err, modproxy.ErrUpstream) || !strings.Contains(err.Error(), "go.mod") {
				t.Errorf("Open(.mod) of %s = %v; want ErrUpstream saying it is no go.mod", tt.name, err)
			}
			if _, _, err := r.Open(ctx, "example.com/legacy", "v1.0.0", storage.Zip); !errors.Is(err, modproxy.ErrUpstream) {
				t.Errorf("Open(.zip) of a zip without go.mod, with %s as its .mod = %v; want ErrUpstream", tt.name, err)
			}
			if files := r.storedNames(t); len(files) != 0 {
				t.Errorf("stored %q; want nothing", files)
			}

			// The upstream mends: the version is fetched whole.
			up.versions[path+"@"+version] = good
			if got := r.read(t, path, version, storage.Mod); string(got) != good.mod {
				t.Errorf(".mod once the upstream mends = %q; want %q", got, good.mod)
			}
			if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, good.zip) {
				t.Errorf(".zip once the upstream mends differs from the upstream's")
			}
			legacy.mod = "module example.com/legacy\n"
			up.versions["example.com/legacy@v1.0.0"] = legacy
			r.read(t, "example.com/legacy", "v1.0.0", storage.Zip)
			up.setDown(errors.New("connection refused")) // the .mod came with the zip
			if got := r.read(t, "example.com/legacy", "v1.0.0", storage.Mod); string(got) != legacy.mod {
				t.Errorf(".mod fetched with the zip once the upstream mends = %q; want %q", got, legacy.mod)
			}
		})
	}

	up := newFakeUpstream()
	fv := up.add(t, path, version, "a")
	fv.mod = goMod("example.com/original")
	up.versions[path+"@"+version] = fv
	r := cachingRegistry(t, up, nil)
	if got := r.read(t, path, version, storage.Mod); string(got) != fv.mod {
		t.Errorf(".mod of a fork = %q; want %q", got, fv.mod)
	}
}

// TestFetchRefusesZipBreakingModuleRules checks that a zip an upstream
// serves is held to the rules of module zips (x/mod/zip's CheckZip), not
// only opened, read for its go.mod and hashed: each zip here is a readable
// archive with the right go.mod, and breaks one rule.
func TestFetchRefusesZipBreakingModuleRules(t *testing.T) {
	const path, version = "example.com/dep", "v1.0.0"
	const prefix = path + "@" + version + "/"
	for _, tt := range []struct {
		name  string
		extra zipFile
		rule  string // in the error
	}{
		{"a file outside path@version/", zipFile{"example.com/other@v1.0.0/x.go", "package x\n"}, "does not have prefix"},
		{"two names differing only in case", zipFile{prefix + "M.go", "package m\n"}, "case-insensitive file name collision"},
		{"a ../ entry", zipFile{prefix + "../escape.go", "package escape\n"}, "invalid path element"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream()
			fv := up.add(t, path, version, "a")
			fv.zip = buildZip(t, []zipFile{{prefix + "go.mod", fv.mod}, {prefix + "m.go", "package m\n"}, tt.extra})
			up.versions[path+"@"+version] = fv
			r := cachingRegistry(t, up, nil)
			ctx := context.Background()

			if _, _, err := r.Open(ctx, path, version, storage.Zip); !errors.Is(err, modproxy.ErrUpstream) {
				t.Fatalf("Open(.zip) of a zip with %s = %v; want ErrUpstream", tt.name, err)
			} else if !strings.Contains(err.Error(), tt.rule) {
				t.Errorf("Open(.zip) of a zip with %s = %v; want it refused for %q", tt.name, err, tt.rule)
			}
			if _, err := r.meta.Version(ctx, path, version); !errors.Is(err, modproxy.ErrNotFound) {
				t.Errorf("record of a refused zip: %v; want none", err)
			}
			if files := r.storedNames(t); len(files) != 0 {
				t.Errorf("stored %q after a refused zip; want nothing", files)
			}
		})
	}
}

func TestFetchedVersionDeletedStaysGone(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.0.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	r.read(t, path, version, storage.Zip)
	if err := r.Delete(ctx, admin, path, version, modproxy.DeleteOptions{Reason: "CVE", Block: true}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range storage.Kinds {
		if _, _, err := r.Open(ctx, path, version, kind); !errors.Is(err, modproxy.ErrGone) {
			t.Errorf("Open(%s) of a blocked fetched version = %v; want ErrGone", kind, err)
		}
	}
	if list, err := r.List(ctx, path); err != nil || len(list) != 0 {
		t.Errorf("List = %q, %v; want the blocked version left out", list, err)
	}
	if n := up.count("zip"); n != 1 {
		t.Errorf("upstream .zip requests = %d; want 1 (never fetched again)", n)
	}
}

func TestListMergesUpstreamAndStored(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	up.add(t, path, "v1.0.0", "a")
	up.add(t, path, "v1.1.0", "b")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	// A version uploaded here that the upstream does not have.
	r.publish(t, admin, path, "v1.0.1", moduleZip(t, path, "v1.0.1", "c"))

	list, err := r.List(ctx, path)
	if want := []string{"v1.0.0", "v1.0.1", "v1.1.0"}; err != nil || !slices.Equal(list, want) {
		t.Fatalf("List = %q, %v; want %q", list, err, want)
	}
	// Reused within the TTL.
	up.add(t, path, "v1.2.0", "d")
	r.List(ctx, path)
	if n := up.count("list"); n != 1 {
		t.Errorf("upstream list requests within the TTL = %d; want 1", n)
	}
	// After the TTL, asked again.
	r.clock.Advance(2 * time.Minute)
	list, _ = r.List(ctx, path)
	if !slices.Contains(list, "v1.2.0") {
		t.Errorf("List after the TTL = %q; want v1.2.0 from the upstream", list)
	}
	// The upstream fails: its last list is served (stale if error).
	up.setDown(errors.New("503"))
	r.clock.Advance(2 * time.Minute)
	list, err = r.List(ctx, path)
	if want := []string{"v1.0.0", "v1.0.1", "v1.1.0", "v1.2.0"}; err != nil || !slices.Equal(list, want) {
		t.Errorf("List with the upstream failing = %q, %v; want the last list %q", list, err, want)
	}

	latest, err := r.Latest(ctx, path)
	if err == nil {
		t.Errorf("Latest with the upstream down = %s; want an error (v1.2.0's .info was never fetched)", latest.Version)
	}
	up.setDown(nil)
	r.clock.Advance(2 * time.Minute)
	latest, err = r.Latest(ctx, path)
	if err != nil || latest.Version != "v1.2.0" {
		t.Errorf("Latest = %v, %v; want v1.2.0", latest, err)
	}
}

// TestListFileNamesVersionsWithMod checks the storage tree's @v/list
// file, which a GOPROXY=file:// of the tree serves: it names only versions
// whose .mod is stored, as the go command's own module cache does, since
// the go command takes the latest version listed and reads its .mod and
// zip. A version fetched for its .info alone (go list -m -u all) is left
// out until its .mod is stored. The list Agora serves still names it.
func TestListFileNamesVersionsWithMod(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	up.add(t, path, "v1.0.0", "a")
	up.add(t, path, "v1.1.0", "b")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	for _, kind := range storage.Kinds {
		r.read(t, path, "v1.0.0", kind)
	}
	r.read(t, path, "v1.1.0", storage.Info)
	checkListFile(t, r, path, []string{"v1.0.0"})
	if list, err := r.List(ctx, path); err != nil || !slices.Equal(list, []string{"v1.0.0", "v1.1.0"}) {
		t.Errorf("List = %q, %v; want both versions", list, err)
	}

	r.read(t, path, "v1.1.0", storage.Mod)
	checkListFile(t, r, path, []string{"v1.0.0", "v1.1.0"})
}

func TestListModuleUnknownEverywhere(t *testing.T) {
	up := newFakeUpstream()
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	if _, err := r.List(ctx, "example.com/nothing"); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("List of an unknown module = %v; want ErrNotFound", err)
	}
}

// TestListNotFoundKept checks that a module unknown upstream and here is
// asked about once per list TTL, as a list is: the go command looks up
// every prefix of a package's path on every 'go get' of it, most of them
// no module. A version stored under the path drops the answer.
func TestListNotFoundKept(t *testing.T) {
	up := newFakeUpstream()
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	const path = "example.com/dep/pkg"
	for range 3 {
		if _, err := r.List(ctx, path); !errors.Is(err, modproxy.ErrNotFound) {
			t.Fatalf("List of an unknown module = %v; want ErrNotFound", err)
		}
	}
	if n := up.count("list"); n != 1 {
		t.Errorf("upstream list requests = %d; want 1 within the TTL", n)
	}
	r.clock.Advance(2 * time.Minute)
	if _, err := r.List(ctx, path); !errors.Is(err, modproxy.ErrNotFound) || up.count("list") != 2 {
		t.Errorf("List after the TTL = %v, %d upstream requests; want ErrNotFound from a second one", err, up.count("list"))
	}

	// The module appears upstream and is fetched: listed at once.
	up.add(t, path, "v1.0.0", "a")
	if _, _, err := r.Open(ctx, path, "v1.0.0", storage.Mod); err != nil {
		t.Fatal(err)
	}
	if list, err := r.List(ctx, path); err != nil || !slices.Equal(list, []string{"v1.0.0"}) {
		t.Errorf("List after a fetch = %q, %v; want v1.0.0", list, err)
	}
}

// TestFallbackWarnings checks that serving stored versions because the
// upstream failed is a warning, but not while the upstream is down
// (upstream.ErrDown), which its client logged once: a line for every list
// would drown the log during an outage.
func TestFallbackWarnings(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.0.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	var logs bytes.Buffer
	r.refetchFrom(up, func(c *modproxy.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()
	if _, _, err := r.Open(ctx, path, version, storage.Info); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		err  error
		warn bool
	}{
		{fmt.Errorf("https://upstream.test not asked: %w", upstream.ErrDown), false},
		{errors.New("connection refused"), true},
	} {
		logs.Reset()
		up.setDown(tt.err)
		r.clock.Advance(2 * time.Minute)
		if list, err := r.List(ctx, path); err != nil || !slices.Equal(list, []string{version}) {
			t.Errorf("List with the upstream failing (%v) = %q, %v; want the stored version", tt.err, list, err)
		}
		if warned := strings.Contains(logs.String(), "level=WARN"); warned != tt.warn {
			t.Errorf("upstream failing with %q: warned %v, want %v:\n%s", tt.err, warned, tt.warn, logs.String())
		}
	}
}

// TestLookupsWithTheUpstreamDown checks that, while the upstream fails,
// lookups of what is not stored are not found, saying why, and so are the
// files of a version without a record here, and that files of a known
// version are a bad gateway. The go command looks up every prefix of a
// package's path at once (list, @latest, or the .info of a version) and
// gives up at any answer but 404 and 410: with a 502 for the prefix that
// is no module, 'go get example.com/dep/pkg' would fail though
// example.com/dep is stored. And it goes down its GOPROXY list for each
// file anew: after a 404 for a version's .info here it may take the
// version from the next proxy, then ask here first for its .mod and zip.
func TestLookupsWithTheUpstreamDown(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.0.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	if _, _, err := r.Open(ctx, path, version, storage.Info); err != nil {
		t.Fatal(err)
	}
	up.setDown(errors.New("connection refused"))
	const pkg = path + "/pkg" // a package of example.com/dep, no module

	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, modproxy.ErrNotFound) || !strings.Contains(err.Error(), "the upstream failed: connection refused") {
			t.Errorf("%s = %v; want ErrNotFound saying that the upstream failed", what, err)
		}
	}
	_, err := r.List(ctx, pkg)
	notFound("List", err)
	_, err = r.Latest(ctx, pkg)
	notFound("Latest", err)
	_, _, err = r.Open(ctx, pkg, version, storage.Info)
	notFound("Open(.info)", err)
	_, _, err = r.Open(ctx, pkg, "main", storage.Info)
	notFound("Open(main.info)", err)
	_, _, err = r.Open(ctx, path, "v1.1.0", storage.Info)
	notFound("Open(.info) of a version of a stored module", err)

	// The stored module is served: the lookup of the prefix that is one
	// succeeds.
	if _, _, err := r.Open(ctx, path, version, storage.Info); err != nil {
		t.Errorf("Open(.info) of the stored version: %v", err)
	}
	if list, err := r.List(ctx, path); err != nil || !slices.Equal(list, []string{version}) {
		t.Errorf("List of the stored module = %q, %v; want %s", list, err, version)
	}

	// Nor are the files of a version with no record here: the .info was
	// not found here just now, and the go command may have taken the
	// version from its next proxy.
	_, _, err = r.Open(ctx, path, "v1.1.0", storage.Mod)
	notFound("Open(.mod) of a version without a record", err)
	_, _, err = r.Open(ctx, path, "v1.1.0", storage.Zip)
	notFound("Open(.zip) of a version without a record", err)

	// Files of a version the go command has settled on here are no lookup.
	for _, kind := range []storage.Kind{storage.Mod, storage.Zip} {
		if _, _, err := r.Open(ctx, path, version, kind); !errors.Is(err, modproxy.ErrUpstream) {
			t.Errorf("Open(%s) with the upstream down = %v; want ErrUpstream", kind, err)
		}
	}
}

// TestTimelessInfo checks the .info of a version stored without one (here
// fetched for its .mod alone): while the upstream cannot give it, because
// it is down or no longer knows the version, the .info names the version
// without a time, as the protocol allows, so that go list -m works on what
// is stored; nothing is stored for it, and once the upstream answers, its
// .info is stored and served.
func TestTimelessInfo(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	r.read(t, path, version, storage.Mod)

	wantTimeless := func(why string) {
		t.Helper()
		f, v, err := r.Open(ctx, path, version, storage.Info)
		if err != nil {
			t.Fatalf("Open(.info) %s: %v", why, err)
		}
		defer f.Close()
		body, _ := io.ReadAll(f)
		if want := `{"Version":"v1.2.0"}`; string(body) != want || !v.Time.IsZero() {
			t.Errorf("Open(.info) %s = %s, time %v; want %s and a zero time", why, body, v.Time, want)
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(body)) {
			t.Errorf("Stat of the .info %s = %v, %v; want its size", why, fi, err)
		}
		if v, err := r.Latest(ctx, path); err != nil || v.Version != version || !v.Time.IsZero() {
			t.Errorf("Latest %s = %+v, %v; want %s without a time", why, v, err, version)
		}
		if files := r.storedNames(t); slices.Contains(files, path+"/@v/"+version+".info") {
			t.Errorf("stored files %s = %q; want no .info", why, files)
		}
	}
	up.setDown(errors.New("connection refused"))
	wantTimeless("with the upstream down")

	up.setDown(nil)
	up.mu.Lock()
	delete(up.versions, path+"@"+version) // a tag deleted upstream
	up.mu.Unlock()
	r.Invalidate(path, version) // and the list's latest forgotten
	wantTimeless("with the upstream not knowing the version")

	up.mu.Lock()
	up.versions[path+"@"+version] = fv
	up.mu.Unlock()
	r.Invalidate(path, version)
	if info := r.read(t, path, version, storage.Info); !bytes.Contains(info, []byte(`"Origin"`)) {
		t.Errorf(".info with the upstream back = %s; want the upstream's", info)
	}
	if v, err := r.meta.Version(ctx, path, version); err != nil || !v.Time.Equal(fv.info) {
		t.Errorf("record = %+v, %v; want the upstream's time %v", v, err, fv.info)
	}
}

// TestTimelessUpstreamInfo checks that an upstream's .info without a time,
// which the protocol allows and which an upstream Agora serves for a
// version it stores without an .info, is served, for the version, a query
// and @latest, and not refused as a bad gateway, which would stop the go
// command. It is not stored: a zero time records no .info, and the
// upstream may give the time later. The version's other files are
// fetched as usual.
func TestTimelessUpstreamInfo(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	fv := up.add(t, path, version, "a")
	fv.info = time.Time{}
	up.versions[path+"@"+version] = fv
	up.queries[path+"@master"] = version
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	wantTimeless := func(when string) {
		t.Helper()
		for _, query := range []string{version, "master"} {
			f, v, err := r.Open(ctx, path, query, storage.Info)
			if err != nil {
				t.Errorf("Open(%s.info) %s: %v", query, when, err)
				continue
			}
			body, _ := io.ReadAll(f)
			f.Close()
			if want := `{"Version":"v1.2.0"}`; string(body) != want || v.Version != version || !v.Time.IsZero() {
				t.Errorf("Open(%s.info) %s = %s, %s at %v; want %s and a zero time", query, when, body, v.Version, v.Time, want)
			}
		}
		if v, err := r.Latest(ctx, path); err != nil || v.Version != version || !v.Time.IsZero() {
			t.Errorf("Latest %s = %+v, %v; want %s without a time", when, v, err, version)
		}
		for _, f := range r.storedNames(t) {
			if strings.HasSuffix(f, ".info") || strings.Contains(f, "master") {
				t.Errorf("stored %s %s; want no .info, nothing under the query's name", f, when)
			}
		}
	}
	wantTimeless("before any other file")
	if files := r.storedNames(t); len(files) != 0 {
		t.Errorf("stored %q for an .info without a time; want nothing", files)
	}

	if got := r.read(t, path, version, storage.Mod); string(got) != fv.mod {
		t.Errorf(".mod = %q; want %q", got, fv.mod)
	}
	if got := r.read(t, path, version, storage.Zip); !bytes.Equal(got, fv.zip) {
		t.Error("served zip differs from the upstream's")
	}
	v, err := r.meta.Version(ctx, path, version)
	if err != nil || !v.Has(storage.Mod) || !v.Has(storage.Zip) || v.Has(storage.Info) {
		t.Errorf("record = %+v, %v; want the .mod and the zip, no .info", v, err)
	}
	r.clock.Advance(2 * time.Minute) // past the list TTL: the fetch changed the list
	wantTimeless("with the .mod and the zip stored")
}

func TestLatestOfModuleWithoutTags(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/untagged"
	pseudo := "v0.0.0-20261120101010-abcdefabcdef"
	up.add(t, path, pseudo, "a")
	up.lists[path] = nil // the upstream lists no tags: an empty list, not a 404
	up.latest[path] = pseudo
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	list, err := r.List(ctx, path)
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %q, %v; want an empty list", list, err)
	}
	v, err := r.Latest(ctx, path)
	if err != nil || v.Version != pseudo {
		t.Fatalf("Latest = %v, %v; want %s from the upstream's @latest", v, err, pseudo)
	}
	var info struct{ Version string }
	if err := json.Unmarshal(r.read(t, path, pseudo, storage.Info), &info); err != nil || info.Version != pseudo {
		t.Errorf("stored .info = %+v, %v", info, err)
	}
	// Storing the .info changed the list, so the next answer asks the
	// upstream again (a stored pseudo-version may be behind its @latest);
	// after that, answers come from memory within the TTL.
	for range 3 {
		if v, err := r.Latest(ctx, path); err != nil || v.Version != pseudo {
			t.Fatalf("Latest again = %v, %v; want %s", v, err, pseudo)
		}
	}
	if n := up.count("latest"); n != 2 {
		t.Errorf("upstream @latest requests = %d; want 2", n)
	}
}

// untaggedUpstream returns an upstream of one module without tags, path,
// of two pseudo-versions, older and newer; its @latest names newer.
func untaggedUpstream(t *testing.T) (up *fakeUpstream, path, older, newer string) {
	up = newFakeUpstream()
	path = "example.com/untagged"
	older, newer = "v0.0.0-20250101000000-aaaaaaaaaaaa", "v0.0.0-20261120101010-bbbbbbbbbbbb"
	up.add(t, path, older, "a")
	up.add(t, path, newer, "b")
	up.lists[path] = nil
	up.latest[path] = newer
	return up, path, older, newer
}

// A module without tags has the upstream's @latest, not a pseudo-version
// stored here earlier, which may be behind it; the stored one answers
// only when the upstream cannot.
func TestLatestWithoutTagsFollowsUpstream(t *testing.T) {
	up, path, older, newer := untaggedUpstream(t)
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	// A request for an older commit stored it.
	r.read(t, path, older, storage.Info)

	// The upstream is down: the stored pseudo-version answers.
	up.setDown(errors.New("connection refused"))
	r.clock.Advance(2 * time.Minute) // past the list TTL
	if v, err := r.Latest(ctx, path); err != nil || v.Version != older {
		t.Fatalf("Latest with the upstream down = %v, %v; want the stored %s", v, err, older)
	}

	// It is back: its @latest answers, not the stored one behind it.
	up.setDown(nil)
	r.clock.Advance(2 * time.Minute)
	if v, err := r.Latest(ctx, path); err != nil || v.Version != newer {
		t.Fatalf("Latest = %v, %v; want the upstream's %s, not the stored %s", v, err, newer, older)
	}
}

// heldLatest is an upstream whose @latest answers only once released,
// and says on started when it is asked.
type heldLatest struct {
	*fakeUpstream
	started, release chan struct{}
}

func (u heldLatest) Latest(ctx context.Context, path string) (*upstream.Info, string, error) {
	u.started <- struct{}{}
	<-u.release
	return u.fakeUpstream.Latest(ctx, path)
}

// TestLatestGivenUpIsNoUpstreamFailure checks that a request for @latest
// whose client goes away while the upstream's @latest is under way ends
// with the client's context error: it used to be taken for the upstream's
// failure, and logged as a warning that the stored pseudo-version was
// served instead.
func TestLatestGivenUpIsNoUpstreamFailure(t *testing.T) {
	fake, path, older, _ := untaggedUpstream(t)
	up := heldLatest{fake, make(chan struct{}), make(chan struct{})}
	r := cachingRegistry(t, fake, nil)
	var logs bytes.Buffer
	r.refetchFrom(up, func(c *modproxy.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	r.read(t, path, older, storage.Info) // stored: a request for an older commit

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Latest(ctx, path)
		done <- err
	}()
	<-up.started
	cancel() // the client goes away
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Latest given up by its client = %v; want context.Canceled", err)
	}
	close(up.release)
	if err := r.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a client that went away was logged as the upstream failing:\n%s", logs.String())
	}
}

// TestPhantomTagNotListedForGood checks that a tag an upstream named once
// but never served (its @latest named it, and its .mod and zip are not
// found) does not stay in the module's list and @latest once the upstream
// mends: the go command takes the highest tag of a list as the latest
// version and downloads it, which nobody can, and @latest of a module
// with tags is the highest one listed, without asking the upstream.
func TestPhantomTagNotListedForGood(t *testing.T) {
	up := newFakeUpstream()
	const path, phantom = "example.com/untagged", "v1.9.9"
	pseudo := "v0.0.0-20261120101010-abcdefabcdef"
	up.add(t, path, pseudo, "a")
	up.add(t, path, phantom, "b")
	up.lists[path] = nil // the upstream lists no tags
	up.latest[path] = phantom
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	// As the upstream says: the go command, asking it, would be told so too.
	if v, err := r.Latest(ctx, path); err != nil || v.Version != phantom {
		t.Fatalf("Latest = %v, %v; want the upstream's %s", v, err, phantom)
	}
	delete(up.versions, path+"@"+phantom) // never served
	if _, _, err := r.Open(ctx, path, phantom, storage.Mod); !errors.Is(err, modproxy.ErrNotFound) {
		t.Fatalf("Open(%s.mod) = %v; want ErrNotFound", phantom, err)
	}

	// The upstream mends its @latest.
	up.latest[path] = pseudo
	r.clock.Advance(2 * time.Minute) // past the list TTL
	if v, err := r.Latest(ctx, path); err != nil || v.Version != pseudo {
		t.Errorf("Latest once the upstream mends = %v, %v; want its %s", v, err, pseudo)
	}
	if list, err := r.List(ctx, path); err != nil || slices.Contains(list, phantom) {
		t.Errorf("List once the upstream mends = %q, %v; want %s left out", list, err, phantom)
	}
}

// storedNames returns the paths of every stored file, sorted.
func (r *testRegistry) storedNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for name := range r.storedFiles(t) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestFetchInconsistentUpstreamRefusedAndAudited(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.0.0"
	fv := up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()

	// The .mod is fetched and recorded first; later the upstream serves a
	// zip whose go.mod is another.
	r.read(t, path, version, storage.Mod)
	up.mu.Lock()
	fv.mod = goMod(path) + "// changed\n"
	fv.zip = zipWithGoMod(t, path, version, fv.mod)
	up.versions[path+"@"+version] = fv
	up.mu.Unlock()

	_, _, err := r.Open(ctx, path, version, storage.Zip)
	if !errors.Is(err, modproxy.ErrUpstream) {
		t.Fatalf("Open(.zip) whose go.mod differs from the recorded .mod = %v; want ErrUpstream", err)
	}
	events := r.meta.Events()
	if len(events) != 1 || events[0].Action != modproxy.ActionFetchRejected {
		t.Errorf("audit events = %+v; want one %s", events, modproxy.ActionFetchRejected)
	}
	if got := r.read(t, path, version, storage.Mod); !strings.HasPrefix(string(got), goMod(path)) || strings.Contains(string(got), "changed") {
		t.Errorf(".mod after the refused zip = %q; want the recorded one", got)
	}
}

// zipWithGoMod is a module zip of path@version whose go.mod is gomod.
func zipWithGoMod(t *testing.T, path, version, gomod string) []byte {
	t.Helper()
	prefix := path + "@" + version + "/"
	return buildZip(t, []zipFile{{prefix + "go.mod", gomod}, {prefix + "m.go", "package m\n"}})
}

// hookedStore is a storage.Store that runs beforeZip once, when a zip is
// first stored: another node's change at the worst moment of a fetch.
type hookedStore struct {
	storage.Store
	beforeZip  func()
	beforeList func() // before the first PutList, which then writes what it was given
}

func (s *hookedStore) PutList(ctx context.Context, path string, versions []string) error {
	if hook := s.beforeList; hook != nil {
		s.beforeList = nil
		hook()
	}
	return s.Store.PutList(ctx, path, versions)
}

func (s *hookedStore) PutFile(ctx context.Context, path, version string, kind storage.Kind, src string) error {
	if hook := s.beforeZip; kind == storage.Zip && hook != nil {
		s.beforeZip = nil
		hook()
	}
	return s.Store.PutFile(ctx, path, version, kind, src)
}

// TestFetchZipOfVersionPurgedMeanwhile checks a zip fetched for a version
// recorded with its .mod alone, which checks the zip against the recorded
// go.mod hash and fetches no .mod, when an administrator purges the
// version meanwhile: the record the fetch leaves must announce only files
// that are stored. Else the purged .mod is announced, and every request for
// it "restores" a file that was never lost, which an operator is alerted to.
func TestFetchZipOfVersionPurgedMeanwhile(t *testing.T) {
	const path, version = "example.com/dep", "v1.2.0"
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		// purgeDuring makes purge run while the zip is fetched.
		purgeDuring func(r *testRegistry, up *fakeUpstream, purge func(*modproxy.Service)) *modproxy.Service
	}{
		{"before the zip is stored, here", func(r *testRegistry, up *fakeUpstream, purge func(*modproxy.Service)) *modproxy.Service {
			var once sync.Once
			up.gate = func(kind string) error {
				if kind == "zip" {
					once.Do(func() { purge(r.Service) })
				}
				return nil
			}
			return r.Service
		}},
		{"while the zip is stored, on another node", func(r *testRegistry, up *fakeUpstream, purge func(*modproxy.Service)) *modproxy.Service {
			store := &hookedStore{Store: r.disk, beforeZip: func() { purge(r.Service) }}
			return r.node(t, func(c *modproxy.Config) {
				c.Blobs, c.Upstream = store, func(string) modproxy.Upstream { return up }
			})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newFakeUpstream()
			fv := up.add(t, path, version, "a")
			r := cachingRegistry(t, up, nil)
			r.read(t, path, version, storage.Mod) // recorded with the .mod only

			fetcher := tt.purgeDuring(r, up, func(s *modproxy.Service) {
				if err := s.Purge(ctx, admin, path, version, "published by mistake"); err != nil {
					t.Error(err)
				}
			})
			f, _, err := fetcher.Open(ctx, path, version, storage.Zip)
			if err != nil {
				t.Fatalf("Open(.zip) while the version was purged: %v", err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if !bytes.Equal(got, fv.zip) {
				t.Error("served zip differs from the upstream's")
			}
			v, err := r.meta.Version(ctx, path, version)
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range v.Files() {
				if _, err := os.Stat(r.storedFile(path, version, kind)); err != nil {
					t.Errorf("the record announces a %s file that is not stored: %v", kind, err)
				}
			}
		})
	}
}

// TestFetchZipOfVersionBlockedMeanwhile checks that a zip fetched on one
// node while another node blocks the version is not left in storage: the
// block removed the version's files before the zip was stored, and the
// storage tree, a GOPROXY=file:// directory, would serve it.
func TestFetchZipOfVersionBlockedMeanwhile(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	ctx := context.Background()
	r.read(t, path, version, storage.Mod) // recorded with the .mod only

	store := &hookedStore{Store: r.disk, beforeZip: func() {
		if err := r.Delete(ctx, admin, path, version, modproxy.DeleteOptions{Reason: "malware", Block: true}); err != nil {
			t.Error(err)
		}
	}}
	other := r.node(t, func(c *modproxy.Config) {
		c.Blobs, c.Upstream = store, func(string) modproxy.Upstream { return up }
	})
	if _, _, err := other.Open(ctx, path, version, storage.Zip); !errors.Is(err, modproxy.ErrGone) {
		t.Errorf("Open(.zip) while another node blocked the version = %v; want ErrGone", err)
	}
	for _, f := range r.storedNames(t) {
		if strings.HasPrefix(f, path+"/@v/"+version+".") {
			t.Errorf("stored %s of the blocked version", f)
		}
	}
}

// TestWaitForDetachedFetches checks that Wait waits for a fetch that its
// client gave up on, which goes on without it (a server shutting down
// waits for it before it closes the database), and names what it gave up
// waiting for.
func TestWaitForDetachedFetches(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	arrived, release := make(chan struct{}), make(chan struct{})
	up.gate = func(kind string) error {
		if kind == "zip" {
			close(arrived)
			<-release
		}
		return nil
	}
	r := cachingRegistry(t, up, nil)
	if err := r.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with nothing running = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := r.Open(ctx, path, version, storage.Zip)
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Open after the client went away = %v; want context.Canceled", err)
	}

	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	err := r.Wait(expired)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path+"@"+version+".zip") {
		t.Errorf("Wait with the fetch held = %v; want DeadlineExceeded naming %s@%s.zip", err, path, version)
	}

	close(release)
	if err := r.Wait(context.Background()); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	// Waited for to its end: stored, without another request.
	if files := r.storedNames(t); !slices.Contains(files, path+"/@v/"+version+".zip") {
		t.Errorf("stored after Wait: %q; want the zip", files)
	}
}

// heldZipUpstream is an upstream whose zips never come: a zip request
// waits until its context ends.
type heldZipUpstream struct {
	*fakeUpstream
	arrived chan struct{}
}

func (u heldZipUpstream) Zip(ctx context.Context, path, version string) (io.ReadCloser, string, error) {
	close(u.arrived)
	<-ctx.Done()
	return nil, "", ctx.Err()
}

// hangUp has a client of s ask for path@version's zip, which u is to
// give, and go away once u is asked for it; Open must then return
// context.Canceled. Call it once per u.
func (u heldZipUpstream) hangUp(t *testing.T, s *modproxy.Service, path, version string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := s.Open(ctx, path, version, storage.Zip)
		done <- err
	}()
	<-u.arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Open after the client went away = %v; want context.Canceled", err)
	}
}

// TestAbandonDetachedFetches checks that a fetch that outlived its client
// and the shutdown's wait ends when it is abandoned, leaving nothing in
// the temporary directory or in storage, while the database is still
// there to say so; Wait then returns.
func TestAbandonDetachedFetches(t *testing.T) {
	up := newFakeUpstream()
	const path, version = "example.com/dep", "v1.2.0"
	up.add(t, path, version, "a")
	r := cachingRegistry(t, up, nil)
	held := heldZipUpstream{up, make(chan struct{})}
	tempDir := t.TempDir()
	s := r.node(t, func(c *modproxy.Config) {
		c.TempDir, c.Upstream = tempDir, func(string) modproxy.Upstream { return held }
	})

	held.hangUp(t, s, path, version)
	expired, stop := context.WithTimeout(context.Background(), 0)
	defer stop()
	if err := s.Wait(expired); err == nil {
		t.Fatal("Wait returned with the fetch held")
	}

	s.Abandon()
	wctx, stop := context.WithTimeout(context.Background(), 10*time.Second) // else 15 minutes
	defer stop()
	if err := s.Wait(wctx); err != nil {
		t.Fatalf("Wait after Abandon = %v", err)
	}
	if entries, err := os.ReadDir(tempDir); err != nil || len(entries) != 0 {
		t.Errorf("temporary directory after the abandoned fetch: %v, %v; want it empty", entries, err)
	}
	if files := r.storedNames(t); slices.Contains(files, path+"/@v/"+version+".zip") {
		t.Errorf("stored after the abandoned fetch: %q", files)
	}
}
