package modproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agora/modproxy"
	"agora/upstream"
)

// goProxyNotFound is the body of proxy.golang.org's 404 for a path that is
// no module (the go command's error for the repository it could not clone),
// with the path twice.
const goProxyNotFound = "not found: module %s: git ls-remote -q origin in /tmp/gopath/pkg/mod/cache/vcs/0c0a7b5f4b0e4e2fd3b9b1c1c7f3e2a9d8f6c5b4a3e2d1c0b9a8f7e6d5c4b3a2: exit status 128:\n" +
	"\tremote: Repository not found.\n" +
	"\tfatal: repository 'https://%s/' not found\n"

// TestListNotFoundSmall checks that the answer kept for a path that is no
// module is small: the go command looks up every prefix of a package's
// path, so anyone can make a public Agora keep one for each path they
// make up, until the list cache is full. It keeps the status and the first
// line of the upstream's answer, not its whole body; and every request
// within the TTL gets the same answer.
func TestListNotFoundSmall(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/@v/list")
		http.Error(w, fmt.Sprintf(goProxyNotFound, path, path), http.StatusNotFound)
	}))
	defer srv.Close()
	proxies, err := upstream.ParseList(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	up := upstream.New(proxies, upstream.Options{})
	r := newTestRegistry(t)
	r.Service = r.node(t, func(c *modproxy.Config) {
		c.Upstream = func(string) modproxy.Upstream { return up }
		c.ListTTL = time.Minute
	})
	ctx := context.Background()

	// The answer, first computed then kept: a 404 that names the module
	// and says what the upstream answered, in a line.
	const path = "example.com/nomodule/pkg"
	first, err := r.List(ctx, path)
	if err == nil {
		t.Fatalf("List = %q; want not found", first)
	}
	for range 2 {
		_, again := r.List(ctx, path)
		switch {
		case !errors.Is(again, modproxy.ErrNotFound):
			t.Fatalf("List = %v; want ErrNotFound", again)
		case again.Error() != err.Error():
			t.Errorf("List again = %q; want the first answer, %q", again, err)
		case !strings.HasPrefix(again.Error(), path+": ") || !strings.Contains(again.Error(), "404 Not Found"):
			t.Errorf("List = %q; want it to name the module and the upstream's status", again)
		case len(again.Error()) > 300 || strings.Contains(again.Error(), "\n"):
			t.Errorf("List = %q; want a line of at most 300 bytes", again)
		}
	}

	// What each such answer holds, the map's share included, its key not:
	// the paths are made before.
	const n = 1024
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("example.com/nomodule%04d/pkg", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, p := range paths {
		if _, err := r.List(ctx, p); !errors.Is(err, modproxy.ErrNotFound) {
			t.Fatalf("List(%s) = %v; want ErrNotFound", p, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("a not-found list answer holds %d bytes besides its path", perEntry)
	if perEntry > 400 {
		t.Errorf("a not-found list answer holds %d bytes besides its path; want at most 400", perEntry)
	}
	// All of them kept: none is asked of the upstream again.
	asked.Store(0)
	for _, p := range paths {
		if _, err := r.List(ctx, p); !errors.Is(err, modproxy.ErrNotFound) {
			t.Fatalf("List(%s) = %v; want ErrNotFound", p, err)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("%d upstream requests for lists kept; want none", n)
	}
	runtime.KeepAlive(paths)
}

// TestListCacheFullDropsExpired checks that a full list cache drops the
// answers that have expired, not every list: made-up paths that are no
// module must not cost the lists of real modules once their answers have
// expired, nor stay beyond that.
func TestListCacheFullDropsExpired(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	up.add(t, path, "v1.0.0", "a")
	r := cachingRegistry(t, up, nil)
	modproxy.SetListCacheSize(r.Service, 8)
	ctx := context.Background()
	list := func(p string) error {
		t.Helper()
		_, err := r.List(ctx, p)
		if err != nil && !errors.Is(err, modproxy.ErrNotFound) {
			t.Fatalf("List(%s): %v", p, err)
		}
		return err
	}
	for i := range 7 {
		list(fmt.Sprintf("example.com/nomodule%d", i))
	}
	r.clock.Advance(2 * time.Minute) // the not-found answers expire
	if err := list(path); err != nil {
		t.Fatal(err)
	}
	// The cache is full: the expired answers go, and this one comes.
	list("example.com/nomodule7")
	asked := up.count("list")
	if err := list(path); err != nil {
		t.Fatal(err)
	}
	if up.count("list") != asked {
		t.Error("the fresh list of a module was dropped when the cache was full of expired answers")
	}
	list("example.com/nomodule7")
	if up.count("list") != asked {
		t.Error("the answer put in the full cache was not kept")
	}

	// Full of fresh answers, it is emptied: made-up paths never take more
	// than its size.
	for i := range 7 {
		list(fmt.Sprintf("example.com/fresh%d", i))
	}
	asked = up.count("list")
	list(path)
	if up.count("list") != asked+1 {
		t.Error("a cache full of fresh answers kept them all")
	}
}
