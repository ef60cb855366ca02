package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"

	"agora/internal/slots"
	"agora/internal/testutil"
	"agora/upstream"
)

const goKey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"

var parseDBTests = []struct {
	in      string
	want    Config
	wantErr string
}{
	{in: "off", want: Config{}},
	{in: "", want: Config{Name: "sum.golang.org", Key: goKey}},
	{in: "sum.golang.org", want: Config{Name: "sum.golang.org", Key: goKey}},
	{in: " sum.golang.org ", want: Config{Name: "sum.golang.org", Key: goKey}},
	{in: "sum.golang.google.cn", want: Config{Name: "sum.golang.org", Key: goKey, URL: "https://sum.golang.google.cn"}},
	{in: goKey, want: Config{Name: "sum.golang.org", Key: goKey}},
	{in: goKey + " https://mirror.example.com/sumdb/", want: Config{Name: "sum.golang.org", Key: goKey, URL: "https://mirror.example.com/sumdb"}},
	{in: "sum.golang.org https://sum.golang.google.cn", want: Config{Name: "sum.golang.org", Key: goKey, URL: "https://sum.golang.google.cn"}},
	{in: "sum.example.com", wantErr: `unknown checksum database "sum.example.com": give its key`},
	{in: "sum.golang.org+033de0ae+AAAA", wantErr: "invalid checksum database key"},
	{in: goKey + " https://a https://b", wantErr: "too many fields"},
	{in: goKey + " ftp://mirror.example.com", wantErr: "invalid checksum database URL"},
	{in: goKey + " https://", wantErr: "invalid checksum database URL"},
}

func TestParseDB(t *testing.T) {
	for _, tt := range parseDBTests {
		got, err := ParseDB(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDB(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDB(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestNewRejectsWrongKey(t *testing.T) {
	f := newFakeProxy(t)
	opts := f.options(t.TempDir())
	opts.Name = "sum.golang.org"
	if _, err := New(opts); err == nil {
		t.Fatal("New with a key of another database: no error")
	}
}

func TestVerify(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	f.add("example.com/b", "v1.2.0", "h1:zipB=", "h1:modB=")
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	opts := f.options(dir)
	opts.NoSumDB = "corp.example.com,*.internal"
	ctx := context.Background()

	if err := verify(ctx, db, "example.com/a", "v1.0.0", "h1:zipA=", "h1:modA="); err != nil {
		t.Fatalf("Verify of the recorded hashes: %v", err)
	}
	if err := verify(ctx, db, "example.com/b", "v1.2.0", "", "h1:modB="); err != nil {
		t.Fatalf("Verify of go.mod only: %v", err)
	}

	err := verify(ctx, db, "example.com/a", "v1.0.0", "h1:tampered=", "h1:modA=")
	var mm *MismatchError
	if !errors.Is(err, ErrMismatch) || !errors.As(err, &mm) || mm.File != "zip" {
		t.Fatalf("Verify of a tampered zip = %v; want a zip *MismatchError", err)
	}
	for _, s := range []string{"SECURITY ERROR", "h1:tampered=", "h1:zipA=", "example.com/a@v1.0.0", fakeName} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("mismatch error %q does not mention %q", err, s)
		}
	}
	err = verify(ctx, db, "example.com/b", "v1.2.0", "", "h1:tampered=")
	if !errors.As(err, &mm) || mm.File != "go.mod" || mm.Recorded != "h1:modB=" {
		t.Fatalf("Verify of a tampered go.mod = %v; want a go.mod *MismatchError", err)
	}

	err = verify(ctx, db, "example.com/private", "v1.0.0", "h1:x=", "h1:y=")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "AGORA_NOSUMDB") {
		t.Fatalf("Verify of a module not in the database = %v; want ErrNotFound naming AGORA_NOSUMDB", err)
	}
	if err := verify(ctx, db, "example.com/a", "v1.0.0", "sha256:x", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify of a non-h1 hash = %v; want ErrInvalid", err)
	}
	if err := verify(ctx, db, "example.com/a", "master", "h1:x=", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify of a non-canonical version = %v; want ErrInvalid", err)
	}

	// Skipped paths contact nothing.
	nosum := newDB(t, opts)
	before := f.total()
	for _, p := range []string{"corp.example.com/x", "git.internal/y"} {
		if err := verify(ctx, nosum, p, "v1.0.0", "h1:whatever=", "h1:whatever="); err != nil {
			t.Errorf("Verify(%s) matching NoSumDB: %v", p, err)
		}
	}
	if n := f.total(); n != before {
		t.Errorf("Verify of NoSumDB paths made %d requests", n-before)
	}

	// What Verify proved is on disk, where clients read it through Get.
	for _, name := range []string{"verified-latest", "lookup/example.com/a@v1.0.0", "tile/8/0/000.p/2"} {
		if _, err := os.Stat(filepath.Join(dir, fakeName, name)); err != nil {
			t.Errorf("after Verify: %v", err)
		}
	}
}

// TestLookupThenCheck asks for a version's hashes before knowing what to
// compare them with, as a fetch does, then checks hashes against them.
func TestLookupThenCheck(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	dir := t.TempDir()
	opts := f.options(dir)
	opts.NoSumDB = "corp.example.com"
	db := newDB(t, opts)
	ctx := context.Background()

	sums, err := db.Lookup(ctx, "example.com/a", "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sums.Zip, []string{"h1:zipA="}) || !slices.Equal(sums.Mod, []string{"h1:modA="}) || sums.DB != fakeName {
		t.Fatalf("Lookup = %+v; want the recorded zip and go.mod hashes", sums)
	}
	for _, tc := range []struct {
		zip, mod string
		want     error
	}{
		{"h1:zipA=", "h1:modA=", nil},
		{"", "h1:modA=", nil},
		{"h1:zipA=", "", nil},
		{"", "", nil},
		{"h1:other=", "h1:modA=", ErrMismatch},
		{"h1:zipA=", "h1:other=", ErrMismatch},
		{"sha256:x", "", ErrInvalid},
	} {
		if err := sums.Check(tc.zip, tc.mod); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Check(%q, %q) = %v; want %v", tc.zip, tc.mod, err, tc.want)
		}
	}
	modOnly := &Sums{DB: fakeName, Path: "example.com/b", Version: "v1.0.0", Mod: []string{"h1:modB="}}
	if err := modOnly.Check("h1:zipB=", "h1:modB="); !errors.Is(err, ErrNotFound) {
		t.Errorf("Check of a zip the database has no hash of = %v; want ErrNotFound", err)
	}

	before := f.total()
	sums, err = db.Lookup(ctx, "corp.example.com/x", "v1.0.0")
	if err != nil || sums != nil {
		t.Fatalf("Lookup of a NoSumDB path = %+v, %v; want nil Sums", sums, err)
	}
	if err := sums.Check("h1:anything=", "h1:anything="); err != nil {
		t.Errorf("nil Sums refused a hash: %v", err)
	}
	if n := f.total(); n != before {
		t.Errorf("Lookup of a NoSumDB path made %d requests", n-before)
	}
	if _, err := db.Lookup(ctx, "example.com/a", "master"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Lookup of a non-canonical version = %v; want ErrInvalid", err)
	}
	if _, err := db.Lookup(ctx, "example.com/unknown", "v1.0.0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of a version not in the database = %v; want ErrNotFound", err)
	}
}

// TestVerifyGrowingTree verifies modules while the tree grows past a full
// tile, then again with a new DB that starts from the stored tree head.
func TestVerifyGrowingTree(t *testing.T) {
	f := newFakeProxy(t)
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	ctx := context.Background()
	const n = 300 // more than a tile of 256
	hashes := func(i int) (string, string) { return fmt.Sprintf("h1:zip%d=", i), fmt.Sprintf("h1:mod%d=", i) }
	for i := range n {
		z, m := hashes(i)
		f.add(fmt.Sprintf("example.com/m%d", i), "v1.0.0", z, m)
	}
	for i := range n {
		z, m := hashes(i)
		if err := verify(ctx, db, fmt.Sprintf("example.com/m%d", i), "v1.0.0", z, m); err != nil {
			t.Fatalf("Verify #%d: %v", i, err)
		}
	}
	db2 := newDB(t, f.options(dir))
	z, m := hashes(7)
	if err := verify(ctx, db2, "example.com/m7", "v1.0.0", z, m); err != nil {
		t.Fatalf("Verify with a new DB: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fakeName, "tile/8/0/000")); err != nil {
		t.Errorf("full tile not cached: %v", err)
	}

	// A new cache proves every kind of tile a client may ask for against
	// the latest tree (300 records), caching those of the proof too.
	fresh := newDB(t, f.options(t.TempDir()))
	for i, rel := range []string{"tile/8/0/000", "tile/8/0/001.p/44", "tile/8/0/001.p/3", "tile/8/1/000.p/1", "tile/8/data/001.p/44", "tile/8/data/000"} {
		if _, cached, err := fresh.Load(ctx, rel); err != nil || i == 0 && cached {
			t.Errorf("Load(%s): cached %v, %v", rel, cached, err)
		}
		if _, err := os.Stat(filepath.Join(fresh.dir, rel)); err != nil {
			t.Errorf("Load(%s) did not cache it: %v", rel, err)
		}
	}
}

func TestGetCachesOnDisk(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	f.add("example.com/b", "v1.0.0", "h1:zipB=", "h1:modB=")
	f.add("example.com/c", "v1.0.0", "h1:zipC=", "h1:modC=")
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	ctx := context.Background()
	rels := []string{"lookup/example.com/a@v1.0.0", "lookup/example.com/b@v1.0.0", "tile/8/0/000.p/3", "tile/8/data/000.p/3"}
	for i, rel := range rels {
		if i == 2 {
			// The database records c without Agora knowing: the tiles
			// of the grown tree are new.
			if _, err := f.ts.Lookup(ctx, module.Version{Path: "example.com/c", Version: "v1.0.0"}); err != nil {
				t.Fatal(err)
			}
		}
		data, cached, err := db.Load(ctx, rel)
		if err != nil || cached || len(data) == 0 {
			t.Fatalf("first Load(%s) = %d bytes, cached %v, %v; want fetched", rel, len(data), cached, err)
		}
	}
	before := f.total()
	for _, rel := range rels {
		if _, cached, err := db.Load(ctx, rel); err != nil || !cached {
			t.Fatalf("second Load(%s): cached %v, %v; want cached", rel, cached, err)
		}
	}
	if n := f.total(); n != before {
		t.Errorf("cached answers made %d requests", n-before)
	}

	// A new DB on the same directory, with the upstream gone.
	f.srv.Close()
	db2 := newDB(t, f.options(dir))
	for _, rel := range rels {
		if _, err := db2.Get(ctx, rel); err != nil {
			t.Errorf("Get(%s) with the upstream gone: %v", rel, err)
		}
	}
	if _, err := db2.Get(ctx, "lookup/example.com/other@v1.0.0"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get of an uncached lookup with the upstream gone = %v; want ErrUnavailable", err)
	}
}

func TestGetNotFoundIsNotCached(t *testing.T) {
	f := newFakeProxy(t)
	db := newDB(t, f.options(t.TempDir()))
	for range 2 {
		if _, err := db.Get(context.Background(), "lookup/example.com/nope@v1.0.0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of an unknown module = %v; want ErrNotFound", err)
		}
	}
	if n := f.count("lookup/"); n != 2 {
		t.Errorf("%d lookups upstream; want 2 (not found is not cached)", n)
	}
}

func TestLatest(t *testing.T) {
	f := newFakeProxy(t)
	dir := t.TempDir()
	clock := testutil.NewClock(time.Unix(1e9, 0))
	db := newDB(t, f.options(dir))
	db.now = clock.Now
	ctx := context.Background()

	load := func(wantCached bool, wantRequests int) []byte {
		t.Helper()
		data, cached, err := db.Load(ctx, "latest")
		if err != nil || cached != wantCached {
			t.Fatalf("Load(latest): cached %v, %v; want cached %v", cached, err, wantCached)
		}
		if n := f.count("latest"); n != wantRequests {
			t.Fatalf("%d upstream requests for latest; want %d", n, wantRequests)
		}
		return data
	}
	first := load(false, 1)
	load(true, 1)
	clock.Advance(DefaultLatestTTL + time.Second)
	load(false, 2)

	// The upstream fails (each failure tried DefaultRetries more times):
	// the last tree is served, and asked again only after another TTL.
	f.failing.Store(true)
	clock.Advance(DefaultLatestTTL + time.Second)
	if got := load(true, 3+DefaultRetries); string(got) != string(first) {
		t.Errorf("stale latest = %q; want %q", got, first)
	}
	load(true, 3+DefaultRetries)

	// A new DB on the same directory finds the stale tree on disk.
	db2 := newDB(t, f.options(dir))
	if data, err := db2.Get(ctx, "latest"); err != nil || string(data) != string(first) {
		t.Errorf("Get(latest) from disk with the upstream failing = %q, %v", data, err)
	}
	// Without one, the failure shows.
	db3 := newDB(t, f.options(t.TempDir()))
	if _, err := db3.Get(ctx, "latest"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get(latest) with the upstream failing and no cache = %v; want ErrUnavailable", err)
	}
}

func TestProxyOrder(t *testing.T) {
	f := newFakeProxy(t)
	var notFound, broken int
	var mu sync.Mutex
	p404 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		notFound++
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer p404.Close()
	p500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		broken++
		mu.Unlock()
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer p500.Close()
	dead := testutil.RefusedURL(t)
	ctx := context.Background()
	target, _ := url.Parse(f.srv.URL)

	tests := []struct {
		name      string
		proxies   []upstream.Proxy
		direct    string
		transport http.RoundTripper
		wantErr   error
	}{
		{name: "second proxy", proxies: []upstream.Proxy{{URL: p404.URL}, {URL: "file:///skipped"}, {URL: f.srv.URL + "/"}}},
		{name: "explicit direct URL", proxies: []upstream.Proxy{{URL: p404.URL}}, direct: f.srv.URL + "/sumdb/" + fakeName},
		{name: "https://name", proxies: []upstream.Proxy{{URL: p404.URL}},
			transport: hostRewriter{host: fakeName, target: target, prefix: "/sumdb/" + fakeName}},
		// After a ',' only a 404 or 410 moves on; after a '|', any error.
		{name: "failing proxy", proxies: []upstream.Proxy{{URL: p500.URL}, {URL: f.srv.URL}}, wantErr: ErrUnavailable},
		{name: "failing proxy, then |", proxies: []upstream.Proxy{{URL: p500.URL, FallThrough: true}, {URL: f.srv.URL}}},
		{name: "dead proxy, then |", proxies: []upstream.Proxy{{URL: dead, FallThrough: true}, {URL: f.srv.URL}}},
		{name: "failing proxy, then | direct", proxies: []upstream.Proxy{{URL: p500.URL, FallThrough: true}},
			direct: f.srv.URL + "/sumdb/" + fakeName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.options(t.TempDir())
			opts.Proxies, opts.Direct, opts.Transport = tt.proxies, tt.direct, tt.transport
			db := newDB(t, opts)
			before := f.count("latest")
			for range 2 {
				db.latestNext = time.Time{}
				_, err := db.Get(ctx, "latest")
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get(latest) = %v; want %v", err, tt.wantErr)
				}
				if err != nil {
					if n := f.count("latest"); n != before {
						t.Fatalf("a failing first proxy fell through to the next one")
					}
					return
				}
			}
			if n := f.count("latest"); n != before+2 {
				t.Errorf("%d requests for latest reached the database; want 2", n-before)
			}
		})
	}
	if notFound != 3 {
		t.Errorf("the proxy without a database was asked %d times; want 3 (once per DB)", notFound)
	}
	if broken != 3*(1+DefaultRetries) {
		t.Errorf("the broken proxy was asked %d times; want %d (once per DB, and DefaultRetries more)", broken, 3*(1+DefaultRetries))
	}
}

func TestOffline(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	f.add("example.com/b", "v1.0.0", "h1:zipB=", "h1:modB=")
	dir := t.TempDir()
	ctx := context.Background()
	online := newDB(t, f.options(dir))
	if err := verify(ctx, online, "example.com/a", "v1.0.0", "h1:zipA=", "h1:modA="); err != nil {
		t.Fatal(err)
	}
	if _, err := online.Get(ctx, "latest"); err != nil {
		t.Fatal(err)
	}

	opts := f.options(dir)
	opts.Offline = true
	offline := newDB(t, opts)
	before := f.total()
	if err := verify(ctx, offline, "example.com/a", "v1.0.0", "h1:zipA=", "h1:modA="); err != nil {
		t.Errorf("offline Verify of a cached module: %v", err)
	}
	if err := verify(ctx, offline, "example.com/a", "v1.0.0", "h1:tampered=", ""); !errors.Is(err, ErrMismatch) {
		t.Errorf("offline Verify of a tampered zip = %v; want ErrMismatch", err)
	}
	for _, rel := range []string{"latest", "lookup/example.com/a@v1.0.0"} {
		if _, cached, err := offline.Load(ctx, rel); err != nil || !cached {
			t.Errorf("offline Load(%s): cached %v, %v", rel, cached, err)
		}
	}
	if _, err := offline.Get(ctx, "lookup/example.com/b@v1.0.0"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("offline Get of an uncached lookup = %v; want ErrUnavailable", err)
	}
	if err := verify(ctx, offline, "example.com/b", "v1.0.0", "h1:zipB=", ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("offline Verify of an uncached module = %v; want ErrUnavailable", err)
	}
	if n := f.total(); n != before {
		t.Errorf("offline DB made %d requests", n-before)
	}
	empty := opts
	empty.CacheDir = t.TempDir()
	if _, err := newDB(t, empty).Get(ctx, "latest"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("offline Get(latest) with nothing cached = %v; want ErrUnavailable", err)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	f.gate, f.arrived = make(chan struct{}), make(chan struct{}, 100)
	db := newDB(t, f.options(t.TempDir()))
	const rel = "lookup/example.com/a@v1.0.0"

	// A caller that gives up does not cancel the fetch.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := db.Get(ctx, rel)
		done <- err
	}()
	<-f.arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a canceled context = %v; want context.Canceled", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := db.Get(context.Background(), rel); err != nil {
				errs <- err
			}
		})
	}
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Get: %v", err)
	}
	if n := f.count("lookup/"); n != 1 {
		t.Errorf("%d upstream lookups; want 1", n)
	}
}

// TestFetchesAreBounded checks that the fetches from the upstream under way
// are bounded: they go on after their callers give up, so without a bound a
// client of the /sumdb/ proxy could leave any number of them running, one
// distinct lookup per request. Beyond the fetches that may run, fetches
// wait; beyond those that may wait, they are refused at once (ErrBusy), and
// fetched once there is room.
func TestFetchesAreBounded(t *testing.T) {
	f := newFakeProxy(t)
	var rels []string
	for i := range 5 {
		path := fmt.Sprintf("example.com/m%d", i)
		f.add(path, "v1.0.0", "h1:zip=", "h1:mod=")
		rels = append(rels, "lookup/"+path+"@v1.0.0")
	}
	f.gate, f.arrived = make(chan struct{}), make(chan struct{}, 100)
	var open sync.Once
	openGate := func() { open.Do(func() { close(f.gate) }) }
	t.Cleanup(openGate) // before the proxy closes, which waits for its requests
	db := newDB(t, f.options(t.TempDir()))
	db.fetches = slots.New("fetches", 2, 2)

	// Four distinct lookups whose callers give up at once: two are
	// fetched, two wait.
	for _, rel := range rels[:4] {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := db.Get(ctx, rel); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get(%s) with a canceled context = %v; want context.Canceled", rel, err)
		}
	}
	<-f.arrived
	<-f.arrived
	for deadline := time.Now().Add(10 * time.Second); db.fetches.Waiting() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fetches waiting for a slot: %d; want 2", db.fetches.Waiting())
		}
	}

	// A fifth is refused at once, and reaches no upstream.
	if _, err := db.Get(context.Background(), rels[4]); !errors.Is(err, ErrBusy) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("a lookup with every slot taken and enough waiting: %v; want ErrBusy and ErrUnavailable", err)
	}
	select {
	case <-f.arrived:
		t.Error("a third lookup reached the upstream while two were under way")
	default:
	}

	openGate()
	for _, rel := range rels[:4] { // the detached fetches, joined or cached
		if _, err := db.Get(context.Background(), rel); err != nil {
			t.Errorf("Get(%s) once the upstream answers: %v", rel, err)
		}
	}
	// There is room again.
	if _, err := db.Get(context.Background(), rels[4]); err != nil {
		t.Errorf("the refused lookup, asked again: %v", err)
	}
	if n := f.count("lookup/"); n != 5 {
		t.Errorf("%d upstream lookups; want 5 (the refused one did not reach it)", n)
	}
}

// TestCanceledLookupLeavesNoFailure checks that a Lookup whose caller gives
// up while the client fails does not leave the failure behind, in the
// client's memory, for the next Lookup of the version to meet once the
// upstream is healthy again.
func TestCanceledLookupLeavesNoFailure(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipa=", "h1:moda=")
	synctest.Test(t, func(t *testing.T) {
		opts := f.options(t.TempDir())
		opts.Transport = handlerTransport{f.srv.Config.Handler}
		opts.Retries = -1 // synctest.Wait returns while a retry waits out its backoff
		db := newDB(t, opts)
		f.failTiles.Store(true)
		f.gate, f.arrived = make(chan struct{}), make(chan struct{}, 10)

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			_, err := db.Lookup(ctx, "example.com/a", "v1.0.0")
			done <- err
		}()
		<-f.arrived          // Lookup gets the record,
		f.gate <- struct{}{} // which is passed on unproven: the tiles fail;
		<-f.arrived          // the client reads the record too,
		cancel()             // and the caller gives up.
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Lookup with a canceled context = %v; want context.Canceled", err)
		}
		close(f.gate) // The client goes on, and fails on the tiles.
		synctest.Wait()

		f.failTiles.Store(false)
		if err := verify(context.Background(), db, "example.com/a", "v1.0.0", "h1:zipa=", "h1:moda="); err != nil {
			t.Errorf("Verify once the upstream is healthy: %v", err)
		}
	})
}

var invalidRels = []string{
	"",
	"supported",
	"/latest",
	"latest/",
	"lookup/",
	"lookup/example.com/a",
	"lookup/example.com/a@",
	"lookup/example.com/a@latest",
	"lookup/example.com/a@v1.0",
	"lookup/example.com/a@v1.0.0@v1.0.0",
	"lookup/Example.com/a@v1.0.0",
	"lookup/../a@v1.0.0",
	"lookup/example.com/../../a@v1.0.0",
	"lookup/example.com/a@v2.0.0",
	"lookup/example.com/a@v1.0.0/go.mod",
	"tile/8/0/",
	"tile/8/0/01",
	"tile/8/0/000.p/256",
	"tile/8/0/000.p/0",
	"tile/9/0/000",
	"tile/8/-1/000",
	"tile/8/0/x001/../000",
	"tile/8/0/000/../../../../etc/passwd",
	"tiles/8/0/000",
	"tile/8/7/000",
	"tile/8/6/064",
	"tile/8/0/x999/x999/x999/x999/x999/x999/x999/000",
}

func TestGetRejectsInvalidRel(t *testing.T) {
	f := newFakeProxy(t)
	db := newDB(t, f.options(t.TempDir()))
	for _, rel := range invalidRels {
		if _, err := db.Get(context.Background(), rel); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%q) = %v; want ErrInvalid", rel, err)
		}
	}
	if n := f.total(); n != 0 {
		t.Errorf("invalid requests made %d upstream requests", n)
	}
}

// TestGetRejectsBadAnswers checks that what the upstream serves is checked
// before it is cached or served.
func TestGetRejectsBadAnswers(t *testing.T) {
	f := newFakeProxy(t)
	other := newFakeProxy(t) // same name, another key
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/sumdb/"+fakeName) {
		case "/supported":
		case "/latest":
			w.Write(other.signTree(5))
		case "/tile/8/0/000.p/1":
			w.Write([]byte("short"))
		case "/tile/8/data/000.p/2":
			w.Write([]byte("example.com/a v1.0.0 h1:x=\n\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer bad.Close()
	opts := f.options(t.TempDir())
	opts.Proxies = []upstream.Proxy{{URL: bad.URL}}
	db := newDB(t, opts)
	for _, rel := range []string{"latest", "tile/8/0/000.p/1", "tile/8/data/000.p/2"} {
		if _, err := db.Get(context.Background(), rel); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Get(%s) of a bad answer = %v; want ErrUnavailable", rel, err)
		}
	}
	if _, err := os.Stat(filepath.Join(opts.CacheDir, fakeName)); !os.IsNotExist(err) {
		t.Errorf("bad answers were cached (%v)", err)
	}
}

func TestWriteConfigIsCompareAndSwap(t *testing.T) {
	f := newFakeProxy(t)
	db := newDB(t, f.options(t.TempDir()))
	ops := &clientOps{db}
	file := fakeName + "/latest"
	t1, t2 := f.signTree(1), f.signTree(2)
	if got, err := ops.ReadConfig(file); err != nil || len(got) != 0 {
		t.Fatalf("ReadConfig before any write = %q, %v; want empty", got, err)
	}
	if err := ops.WriteConfig(file, nil, t1); err != nil {
		t.Fatal(err)
	}
	if err := ops.WriteConfig(file, nil, t2); err != sumdb.ErrWriteConflict {
		t.Fatalf("WriteConfig with a stale old value = %v; want ErrWriteConflict", err)
	}
	if err := ops.WriteConfig(file, t1, t2); err != nil {
		t.Fatal(err)
	}
	if got, _ := ops.ReadConfig(file); string(got) != string(t2) {
		t.Fatalf("ReadConfig = %q; want %q", got, t2)
	}
	if got, _ := ops.ReadConfig("key"); string(got) != f.vkey {
		t.Fatalf("ReadConfig(key) = %q", got)
	}

	// A stored tree the key does not verify is ignored, consistently.
	if err := os.WriteFile(db.verifiedPath(), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := ops.ReadConfig(file); len(got) != 0 {
		t.Fatalf("ReadConfig of a damaged tree = %q; want empty", got)
	}
	if err := ops.WriteConfig(file, nil, t1); err != nil {
		t.Fatalf("WriteConfig over a damaged tree: %v", err)
	}
}

// TestTamperedAnswersAreRefused checks that lookups and tiles are proven
// against the signed tree before they are served or cached, so that an
// upstream cannot poison the cache.
func TestTamperedAnswersAreRefused(t *testing.T) {
	f := newFakeProxy(t)
	for _, m := range []string{"a", "b", "c"} {
		f.add("example.com/"+m, "v1.0.0", "h1:zip"+m+"=", "h1:mod"+m+"=")
	}
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	ctx := context.Background()
	for _, rel := range []string{"lookup/example.com/a@v1.0.0", "lookup/example.com/b@v1.0.0"} {
		if _, err := db.Get(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.ts.Lookup(ctx, module.Version{Path: "example.com/c", Version: "v1.0.0"}); err != nil {
		t.Fatal(err)
	}

	replace := func(prefix, old, new string) func(string, []byte) []byte {
		return func(path string, body []byte) []byte {
			if strings.HasPrefix(path, prefix) {
				return []byte(strings.ReplaceAll(string(body), old, new))
			}
			return body
		}
	}
	flip := func(path string, body []byte) []byte {
		if strings.HasPrefix(path, "/tile/8/0/") && len(body) > 0 {
			body = append([]byte(nil), body...)
			body[len(body)-1] ^= 1
		}
		return body
	}
	tests := []struct {
		rel     string
		rewrite func(string, []byte) []byte
	}{
		{"tile/8/0/000.p/3", flip},
		{"tile/8/data/000.p/3", replace("/tile/8/data/", "h1:zipa=", "h1:evil=")},
		{"lookup/example.com/c@v1.0.0", replace("/lookup/", "h1:zipc=", "h1:evil=")},
	}
	for _, tt := range tests {
		f.rewrite.Store(&tt.rewrite)
		if _, err := db.Get(ctx, tt.rel); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Get(%s) of a tampered answer = %v; want ErrUnavailable", tt.rel, err)
		}
		if _, err := os.Stat(filepath.Join(dir, fakeName, tt.rel)); !os.IsNotExist(err) {
			t.Errorf("tampered %s was cached (%v)", tt.rel, err)
		}
	}
	if err := verify(ctx, db, "example.com/c", "v1.0.0", "h1:evil=", ""); err == nil {
		t.Errorf("Verify of the hash a tampered lookup claims: no error")
	}

	f.rewrite.Store(nil)
	for _, tt := range tests {
		if _, err := db.Get(ctx, tt.rel); err != nil {
			t.Errorf("Get(%s) once the upstream is honest again: %v", tt.rel, err)
		}
	}
	if err := verify(ctx, db, "example.com/c", "v1.0.0", "h1:zipc=", "h1:modc="); err != nil {
		t.Errorf("Verify once the upstream is honest again: %v", err)
	}
}

// TestForkIsRefused checks that answers from a fork of the database's log,
// signed with its key but not one history with the tree Lookup verified,
// are refused rather than proven against the fork's own tree and cached:
// once the upstream is honest again, the versions they concern verify.
func TestForkIsRefused(t *testing.T) {
	f := newFakeProxy(t)
	for _, m := range []string{"a", "b", "c"} {
		f.add("example.com/"+m, "v1.0.0", "h1:zip"+m+"=", "h1:mod"+m+"=")
	}
	dir := t.TempDir()
	ctx := context.Background()
	db := newDB(t, f.options(dir))
	for _, m := range []string{"a", "b", "c"} {
		if err := verify(ctx, db, "example.com/"+m, "v1.0.0", "h1:zip"+m+"=", "h1:mod"+m+"="); err != nil {
			t.Fatal(err)
		}
	}

	// Agora restarts behind an upstream that serves a fork in which x,
	// not c, follows a and b.
	fork := f.fork()
	for _, m := range []string{"a", "b", "x", "d"} {
		fork.add("example.com/"+m, "v1.0.0", "h1:zip"+m+"=", "h1:mod"+m+"=")
		if _, err := fork.ts.Lookup(ctx, module.Version{Path: "example.com/" + m, Version: "v1.0.0"}); err != nil {
			t.Fatal(err)
		}
	}
	opts := f.options(dir)
	opts.Proxies = []upstream.Proxy{{URL: fork.srv.URL}}
	forked := newDB(t, opts)
	if err := verify(ctx, forked, "example.com/d", "v1.0.0", "h1:zipd=", "h1:modd="); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "SECURITY ERROR") {
		t.Errorf("Verify through the fork = %v; want ErrUnavailable, a SECURITY ERROR", err)
	}
	rels := []string{"lookup/example.com/d@v1.0.0", "tile/8/0/000.p/4", "tile/8/data/000.p/4"}
	for _, rel := range rels {
		if _, err := forked.Get(ctx, rel); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Get(%s) through the fork = %v; want ErrUnavailable", rel, err)
		}
		if _, err := os.Stat(filepath.Join(dir, fakeName, rel)); !os.IsNotExist(err) {
			t.Errorf("%s of the fork was cached (%v)", rel, err)
		}
	}

	// The upstream is honest again, and the database records d.
	f.add("example.com/d", "v1.0.0", "h1:zipd=", "h1:modd=")
	if _, err := f.ts.Lookup(ctx, module.Version{Path: "example.com/d", Version: "v1.0.0"}); err != nil {
		t.Fatal(err)
	}
	honest := newDB(t, f.options(dir))
	if err := verify(ctx, honest, "example.com/d", "v1.0.0", "h1:zipd=", "h1:modd="); err != nil {
		t.Errorf("Verify once the upstream is honest again: %v", err)
	}
	for _, rel := range rels {
		if _, err := honest.Get(ctx, rel); err != nil {
			t.Errorf("Get(%s) once the upstream is honest again: %v", rel, err)
		}
	}
}

// TestUnprovableAnswersPassUncached checks that an answer whose proof the
// upstream fails to serve is passed on, but not cached.
func TestUnprovableAnswersPassUncached(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipa=", "h1:moda=")
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	f.failTiles.Store(true)
	const rel = "lookup/example.com/a@v1.0.0"
	for range 2 {
		if data, cached, err := db.Load(context.Background(), rel); err != nil || cached || len(data) == 0 {
			t.Fatalf("Load(%s) without tiles = %d bytes, cached %v, %v; want it passed on", rel, len(data), cached, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, fakeName, rel)); !os.IsNotExist(err) {
		t.Errorf("an unproven lookup was cached (%v)", err)
	}
	if err := verify(context.Background(), db, "example.com/a", "v1.0.0", "h1:zipa=", ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Verify without tiles = %v; want ErrUnavailable", err)
	}
	f.failTiles.Store(false)
	if err := verify(context.Background(), db, "example.com/a", "v1.0.0", "h1:zipa=", ""); err != nil {
		t.Errorf("Verify once tiles are served again: %v", err)
	}
}

// TestRetries checks that a request that fails with a 5xx is tried again,
// and that a 404 is an answer, asked once.
func TestRetries(t *testing.T) {
	f := newFakeProxy(t)
	db := newDB(t, f.options(t.TempDir()))
	ctx := context.Background()

	if _, err := db.Get(ctx, "latest"); err != nil { // finds the database behind the proxy
		t.Fatal(err)
	}
	f.failNext.Store(DefaultRetries) // the last attempt succeeds
	db.latestNext = time.Time{}
	if _, err := db.Get(ctx, "latest"); err != nil {
		t.Fatalf("Get(latest) after %d failures = %v", DefaultRetries, err)
	}
	if n := f.count("latest"); n != 2+DefaultRetries {
		t.Errorf("%d requests for latest; want %d", n, 2+DefaultRetries)
	}

	f.failNext.Store(DefaultRetries + 1) // every attempt fails
	if _, err := db.Get(ctx, "lookup/example.com/m@v1.0.0"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("Get(lookup) with every attempt failing = %v; want ErrUnavailable after 3 attempts", err)
	}

	before := f.count("lookup")
	if _, err := db.Get(ctx, "lookup/example.com/unknown@v1.0.0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(lookup) of an unknown module = %v; want ErrNotFound", err)
	}
	if n := f.count("lookup") - before; n != 1 {
		t.Errorf("a 404 was asked %d times; want 1", n)
	}
}

// verify checks hashes of path@version against db as a fetch does: Lookup,
// then Sums.Check.
func verify(ctx context.Context, db *DB, path, version, zipHash, modHash string) error {
	sums, err := db.Lookup(ctx, path, version)
	if err != nil {
		return err
	}
	return sums.Check(zipHash, modHash)
}

// TestHealthFailsFastWhileTheProxyHangs checks that with Options.Health a
// proxy that accepts connections and never answers is asked only until it
// is known to be down: then requests fail at once, instead of each waiting
// out the timeout, as a go command's tile and lookup requests through
// Agora's /sumdb/ would.
func TestHealthFailsFastWhileTheProxyHangs(t *testing.T) {
	var asked atomic.Int32
	release := make(chan struct{})
	left := make(chan struct{}, 100) // a request the hung proxy had has ended
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		defer func() { left <- struct{}{} }()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	f := newFakeProxy(t)
	opts := f.options(t.TempDir())
	opts.Proxies = []upstream.Proxy{{URL: hung.URL}}
	opts.Timeout = 50 * time.Millisecond
	down := make(chan string, 1)
	opts.Health = upstream.NewHealth(nil, downObserver(down))
	db := newDB(t, opts)
	ctx := context.Background()

	for i := 0; len(down) == 0; i++ {
		if i == 10 {
			t.Fatalf("the proxy that hangs was not found down after %d requests", i)
		}
		if _, err := db.Get(ctx, fmt.Sprintf("lookup/example.com/m@v1.0.%d", i)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("lookup %d from a proxy that hangs = %v; want ErrUnavailable", i, err)
		}
	}
	if got := <-down; got != hung.URL {
		t.Errorf("the proxy found down is %s; want %s", got, hung.URL)
	}
	// A caller gives up when the fetch it waits for does: wait for the
	// requests under way to end, each at its timeout.
	before := asked.Load()
	for range before {
		select {
		case <-left:
		case <-time.After(time.Minute): // a bound for the failure
			t.Fatal("the requests to the proxy that hangs did not end at their timeout")
		}
	}
	for _, rel := range []string{"lookup/example.com/m@v1.0.9", "tile/8/0/000", "latest"} {
		// ErrDown, and no request below, show that Get did not wait
		// for the proxy's timeout.
		_, err := db.Get(ctx, rel)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, upstream.ErrDown) {
			t.Errorf("Get(%s) once the proxy is down = %v; want ErrUnavailable wrapping upstream.ErrDown", rel, err)
		}
	}
	if n := asked.Load() - before; n != 0 {
		t.Errorf("the proxy was asked %d times once down; want 0", n)
	}
}

// TestHealthIsShared checks that the checksum database does not ask a
// proxy that the module fetches sharing its Options.Health found down, and
// that answers, even 404s, keep a proxy up.
func TestHealthIsShared(t *testing.T) {
	f := newFakeProxy(t)
	opts := f.options(t.TempDir())
	opts.Health = upstream.NewHealth(nil, nil)
	db := newDB(t, opts)
	ctx := context.Background()

	for i := range 4 {
		if _, err := db.Get(ctx, fmt.Sprintf("lookup/example.com/unknown@v1.0.%d", i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("lookup %d of an unknown module = %v; want ErrNotFound", i, err)
		}
	}
	if n := f.count("lookup"); n != 4 {
		t.Errorf("%d lookups reached the proxy; want 4: a 404 is an answer", n)
	}

	// The module fetches, sharing the Health, got no answer three times.
	for range 3 {
		opts.Health.Do(ctx, f.srv.URL, func() error { return upstream.NoAnswer(errors.New("connection refused")) })
	}
	before := f.total()
	if _, err := db.Get(ctx, "lookup/example.com/unknown@v1.0.9"); !errors.Is(err, upstream.ErrDown) {
		t.Errorf("lookup once the module fetches found the proxy down = %v; want upstream.ErrDown", err)
	}
	if n := f.total() - before; n != 0 {
		t.Errorf("the proxy was asked %d times once down; want 0", n)
	}
}

// downObserver sends the name of a proxy that goes down to its channel,
// if there is room.
type downObserver chan<- string

func (o downObserver) ProxyDown(proxy string, down bool) {
	if down {
		select {
		case o <- proxy:
		default:
		}
	}
}

// TestObserver checks that Options.Observer is told of every request to
// the upstream, as the module fetches' observer is, with kind sumdb.
func TestObserver(t *testing.T) {
	f := newFakeProxy(t)
	opts := f.options(t.TempDir())
	var rec fetchRecorder
	opts.Observer = &rec
	db := newDB(t, opts)
	ctx := context.Background()

	if _, err := db.Get(ctx, "lookup/example.com/unknown@v1.0.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup of an unknown module = %v; want ErrNotFound", err)
	}
	if _, err := db.Get(ctx, "latest"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		f.srv.URL + " sumdb 200 0 <nil>",      // supported
		f.srv.URL + " sumdb 404 20 not found", // its body's bytes too
		f.srv.URL + " sumdb 200 " + fmt.Sprint(len(f.signTree(0))) + " <nil>",
	}
	if got := rec.calls(); !slices.Equal(got, want) {
		t.Errorf("observed %q\nwant %q", got, want)
	}
}

// fetchRecorder is an upstream.Observer that records each call as
// "proxy kind status bytes error-kind".
type fetchRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *fetchRecorder) Fetch(proxy, kind string, status int, bytes int64, d time.Duration, err error) {
	errKind := "<nil>"
	switch {
	case errors.Is(err, ErrNotFound):
		errKind = "not found"
	case err != nil:
		errKind = "error"
	}
	r.mu.Lock()
	r.got = append(r.got, fmt.Sprintf("%s %s %d %d %s", proxy, kind, status, bytes, errKind))
	r.mu.Unlock()
}

func (r *fetchRecorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestPartialTilesOfFullTilesAreNotCached checks that a partial tile
// whose full tile the tree already has is served cut from the full tile,
// which alone is fetched and cached: anyone may ask /sumdb/ for the 255
// partial tiles of every full tile, and each would otherwise be fetched
// and kept on disk, a file of its own, about 128 times the disk and 255
// times the files of the full tiles.
func TestPartialTilesOfFullTilesAreNotCached(t *testing.T) {
	f := newFakeProxy(t)
	ctx := context.Background()
	for i := range 300 {
		path := fmt.Sprintf("example.com/m%d", i)
		f.add(path, "v1.0.0", "h1:zip=", "h1:mod=")
		if _, err := f.ts.Lookup(ctx, module.Version{Path: path, Version: "v1.0.0"}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	db := newDB(t, f.options(dir))
	for _, level := range []string{"0", "data"} {
		var partial [][]byte
		for _, w := range []int{1, 2, 100, 255} {
			rel := fmt.Sprintf("tile/8/%s/000.p/%d", level, w)
			data, _, err := db.Load(ctx, rel)
			if err != nil {
				t.Fatalf("Load(%s): %v", rel, err)
			}
			partial = append(partial, data)
		}
		full, _, err := db.Load(ctx, "tile/8/"+level+"/000")
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range []int{1, 2, 100, 255} {
			rel, data := fmt.Sprintf("tile/8/%s/000.p/%d", level, w), partial[i]
			want := full[:w*32]
			if level == "data" {
				want = full[:len(strings.Join(strings.SplitAfterN(string(full), "\n\n", w+1)[:w], ""))]
			}
			if string(data) != string(want) {
				t.Errorf("Load(%s) = %d bytes, want the first %d bytes of the full tile", rel, len(data), len(want))
			}
		}
	}
	var cached []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		// Tile 001 and level 1's tile 000 are partial in the tree.
		if err == nil && (strings.Contains(path, "/0/000.p/") || strings.Contains(path, "/data/000.p/")) {
			cached = append(cached, path)
		}
		return nil
	})
	if len(cached) > 0 {
		t.Errorf("partial tiles of full tiles cached: %v", cached)
	}
	if n := f.count("tile/8/0/000.p/") + f.count("tile/8/data/000.p/"); n > 0 {
		t.Errorf("%d partial tiles of full tiles fetched, want none", n)
	}
}

// TestNoRedirectToPlainHTTP checks that a database reached over https is
// not followed to plain http, as the go command's checksum database client
// does not follow it: what it looks up (the module paths a build needs)
// would cross the network in the clear. A redirect to https is followed.
func TestNoRedirectToPlainHTTP(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/a", "v1.0.0", "h1:zipA=", "h1:modA=")
	secure := httptest.NewTLSServer(f.srv.Config.Handler)
	defer secure.Close()
	var to atomic.Pointer[string]
	p := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/supported") {
			return
		}
		http.Redirect(w, r, *to.Load()+r.URL.Path, http.StatusFound)
	}))
	defer p.Close()
	opts := f.options(t.TempDir())
	opts.Proxies = []upstream.Proxy{{URL: p.URL}}
	opts.Transport = p.Client().Transport
	opts.Retries = -1
	db := newDB(t, opts)

	to.Store(&secure.URL)
	if _, err := db.Get(context.Background(), "lookup/example.com/a@v1.0.0"); err != nil {
		t.Fatalf("lookup through a redirect to https: %v", err)
	}
	before := f.count("lookup/")
	to.Store(&f.srv.URL)
	_, err := db.Get(context.Background(), "lookup/example.com/a@v1.0.1")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "redirected from secure URL") {
		t.Errorf("lookup redirected to http = %v; want ErrUnavailable, the redirect refused", err)
	}
	if n := f.count("lookup/") - before; n != 0 {
		t.Errorf("the lookup redirected to http reached it: %d requests", n)
	}
}

// TestObserverCountsBytesOfFailures checks that the bytes of an answer that
// fails are counted as received, as the module fetches' observer counts
// them: an answer over its limit, the body of an error.
func TestObserverCountsBytesOfFailures(t *testing.T) {
	f := newFakeProxy(t)
	opts := f.options(t.TempDir())
	var rec fetchRecorder
	opts.Observer = &rec
	opts.Retries = -1
	db := newDB(t, opts)
	ctx := context.Background()

	huge := func(path string, body []byte) []byte {
		if path == "/latest" {
			return bytes.Repeat([]byte("x"), maxLatest+100)
		}
		return body
	}
	f.rewrite.Store(&huge)
	if _, err := db.Get(ctx, "latest"); err == nil {
		t.Fatal("a latest over its limit was taken")
	}
	f.rewrite.Store(nil)
	f.failing.Store(true)
	if _, err := db.Get(ctx, "lookup/example.com/m@v1.0.0"); err == nil {
		t.Fatal("a lookup was answered while the proxy answers 500")
	}
	calls := rec.calls()
	if len(calls) != 3 {
		t.Fatalf("observed %q; want supported, latest, and the request answered 500", calls)
	}
	// The reading stops one byte past the limit.
	if want := f.srv.URL + " sumdb 200 " + fmt.Sprint(maxLatest+1) + " error"; calls[1] != want {
		t.Errorf("latest over its limit observed as %q; want %q", calls[1], want)
	}
	if !strings.HasPrefix(calls[2], f.srv.URL+" sumdb 500 ") || strings.HasPrefix(calls[2], f.srv.URL+" sumdb 500 0 ") {
		t.Errorf("a request answered 500 observed as %q; want the bytes of its body", calls[2])
	}
}

// TestProtocolSwitchIsNotRead checks that a 101 Switching Protocols is a
// failure at once, its connection closed unread: net/http hands the
// connection over as its body, which neither the fetch's context nor its
// timeout ends, so reading it would hold the fetch, and every caller
// sharing it, for as long as the server keeps the connection open.
func TestProtocolSwitchIsNotRead(t *testing.T) {
	f := newFakeProxy(t)
	conns := make(chan net.Conn, 1)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/supported") {
			return
		}
		testutil.SwitchProtocols(t, w, conns) // kept open
	}))
	defer p.Close()
	opts := f.options(t.TempDir())
	opts.Proxies = []upstream.Proxy{{URL: p.URL}}
	opts.Timeout = time.Second
	db := newDB(t, opts)
	done := make(chan error, 1)
	go func() {
		_, err := db.Get(context.Background(), "latest")
		done <- err
	}()
	conn := <-conns
	defer conn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "101 Switching Protocols") {
			t.Errorf("Get(latest) = %v; want ErrUnavailable, the 101 answer", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Get(latest) still reads the connection of a 101 answer after 20s; the timeout is 1s")
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("reading the server's end of the connection: %v; want EOF: the client closed it", err)
	}
}

// TestCorruptEncodingIsAnAnswer checks that a body that is not the gzip
// its Content-Encoding says (net/http asks for gzip, and decodes it) is
// the server's answer: not retried, and not counted as no answer in
// Options.Health, which the module fetches share, so that answers a proxy
// stores with the wrong Content-Encoding do not take it down for them all.
func TestCorruptEncodingIsAnAnswer(t *testing.T) {
	f := newFakeProxy(t)
	f.add("example.com/good", "v1.0.0", "h1:zip=", "h1:mod=")
	var bad atomic.Int32
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/lookup/example.com/bad") {
			bad.Add(1)
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte("example.com/bad v1.0.0 h1:zip=\n"))
			return
		}
		f.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer p.Close()
	opts := f.options(t.TempDir())
	opts.Proxies = []upstream.Proxy{{URL: p.URL}}
	down := make(chan string, 1)
	opts.Health = upstream.NewHealth(nil, downObserver(down))
	db := newDB(t, opts)
	ctx := context.Background()
	for i := range 3 {
		rel := fmt.Sprintf("lookup/example.com/bad@v1.0.%d", i)
		if _, err := db.Get(ctx, rel); !errors.Is(err, ErrUnavailable) || errors.Is(err, upstream.ErrDown) {
			t.Errorf("Get(%s) of a body that is not gzip = %v; want ErrUnavailable, the decoding error", rel, err)
		}
	}
	if n := bad.Load(); n != 3 {
		t.Errorf("%d requests for 3 lookups of bodies that are not gzip; want 3: not retried", n)
	}
	if _, err := db.Get(ctx, "lookup/example.com/good@v1.0.0"); err != nil {
		t.Errorf("Get(lookup) after bodies that are not gzip: %v; want it: the proxy is up", err)
	}
	if len(down) != 0 {
		t.Errorf("%s was found down", <-down)
	}
}
