package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"agora/internal/testutil"
)

// switchable answers 503 while down is set, else serves the module.
func switchable(down *atomic.Bool) http.HandlerFunc {
	files := serveFiles(modFiles)
	return func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "fake: down for maintenance", http.StatusServiceUnavailable)
			return
		}
		files(w, r)
	}
}

func TestProxyDownFailsAtOnce(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	p := newFakeProxy(t, switchable(&down))
	clock := testutil.NewClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	var logs testutil.Buffer
	rec := &recorder{}
	c := newTestClient(t, p.URL, func(o *Options) {
		o.now = clock.Now
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Observer = rec
	})
	ctx := context.Background()
	attempts := 1 + c.opts.Retries

	// downAfter requests in a row get no answer, each retried.
	for i := range downAfter {
		_, _, err := c.Mod(ctx, modPath, "v1.0.0")
		if err == nil || errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("request %d: %v; want the 503", i+1, err)
		}
	}
	if n := p.count(); n != downAfter*attempts {
		t.Fatalf("%d requests reached the proxy; want %d", n, downAfter*attempts)
	}
	if !strings.Contains(logs.String(), "an upstream proxy is down") {
		t.Errorf("nothing logged of the proxy going down:\n%s", logs.String())
	}

	// Now it is down: requests fail at once, every kind of them.
	_, _, err := c.Mod(ctx, modPath, "v1.0.0")
	if !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "asked again in 5s") {
		t.Errorf("Mod while down: %v; want ErrDown, the last failure and when it is asked again", err)
	}
	if _, _, err := c.List(ctx, modPath); !errors.Is(err, ErrDown) {
		t.Errorf("List while down: %v; want ErrDown", err)
	}
	if n := p.count(); n != downAfter*attempts {
		t.Errorf("%d requests reached the proxy; want still %d", n, downAfter*attempts)
	}

	// After the cool-off one request is let through; it fails, and the
	// cool-off doubles.
	clock.Advance(firstCooloff)
	if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); err == nil || errors.Is(err, ErrDown) {
		t.Errorf("the request after the cool-off: %v; want it sent, and the 503", err)
	}
	if n := p.count(); n != (downAfter+1)*attempts {
		t.Errorf("%d requests reached the proxy; want %d", n, (downAfter+1)*attempts)
	}
	clock.Advance(firstCooloff)
	if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "asked again in 5s") {
		t.Errorf("Mod after a failed probe: %v; want ErrDown for another 5s (10s in all)", err)
	}

	// Back up: the next request let through succeeds, and so do all
	// after it.
	down.Store(false)
	clock.Advance(firstCooloff)
	for range 2 {
		if mod, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil || string(mod) != modMod {
			t.Errorf("Mod once the proxy is back: %q, %v", mod, err)
		}
	}
	// At the level of its going down, so that a log kept from warnings up
	// (AGORA_LOG_LEVEL=warn) does not show a proxy down for good.
	if !strings.Contains(logs.String(), `level=WARN msg="an upstream proxy answers again"`) {
		t.Errorf("the proxy coming back not logged as a warning, as its going down is:\n%s", logs.String())
	}
	if got, want := rec.healthChanges(), []string{"down " + p.URL, "up " + p.URL}; !slices.Equal(got, want) {
		t.Errorf("the Observer was told %q; want %q", got, want)
	}

	// Up again, it takes downAfter failures in a row again to go down,
	// and the cool-off starts over.
	down.Store(true)
	for range downAfter {
		if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); errors.Is(err, ErrDown) {
			t.Fatalf("Mod: %v; want it sent: the proxy answered since it was last down", err)
		}
	}
	if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "asked again in 5s") {
		t.Errorf("Mod: %v; want ErrDown for the first cool-off", err)
	}
	clock.Advance(maxCooloff * 10)
	for range 8 {
		c.Mod(ctx, modPath, "v1.0.0") // the probes fail, the cool-off grows
		clock.Advance(maxCooloff)
	}
	clock.Advance(-time.Second)
	if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "asked again in 1s") {
		t.Errorf("Mod: %v; want ErrDown with the cool-off capped at %v", err, maxCooloff)
	}
}

// TestProxyAnswersKeepItUp checks that answers, even refusals, and
// requests their callers gave up never take a proxy down.
func TestProxyAnswersKeepItUp(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusBadRequest} {
		p := newFakeProxy(t, serveStatus(status))
		c := newTestClient(t, p.URL, nil)
		for range 2 * downAfter {
			if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); errors.Is(err, ErrDown) {
				t.Fatalf("status %d: %v; an answer does not take a proxy down", status, err)
			}
		}
	}

	// The proxy hangs, and each request is given up by its caller once
	// it reached the proxy.
	cancels := make(chan context.CancelFunc, 1)
	h := hang(t)
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case cancel := <-cancels:
			cancel()
		case <-r.Context().Done():
		}
		h(w, r)
	})
	c := newTestClient(t, p.URL, nil)
	for range 2 * downAfter {
		ctx, cancel := context.WithCancel(ctx)
		cancels <- cancel
		_, _, err := c.Mod(ctx, modPath, "v1.0.0")
		cancel()
		if errors.Is(err, ErrDown) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%v; want context.Canceled: requests their callers gave up do not take a proxy down", err)
		}
	}
	if n := p.count(); n != 2*downAfter {
		t.Errorf("%d requests reached the proxy; want %d", n, 2*downAfter)
	}
}

// TestProxyDownOneProbe checks that, once the cool-off is over, one
// request finds out whether the proxy is back while the others wait for
// it, briefly, and fail with it, and that a proxy that never answers
// (connections accepted, no headers) goes down like one that refuses them.
func TestProxyDownOneProbe(t *testing.T) {
	// The first downAfter requests hang, their header timeouts fired by
	// the proxy; the probe after them waits for release, then gets a 502.
	timeouts := newFiredTimeouts(whatNoHeaders)
	hanging := hangAfterTimeout(t, timeouts)
	var requests atomic.Int32
	probing, release := make(chan struct{}), make(chan struct{})
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= downAfter {
			hanging(w, r)
			return
		}
		close(probing)
		<-release
		http.Error(w, "fake: bad gateway", http.StatusBadGateway)
	})
	clock := testutil.NewClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	c := newTestClient(t, p.URL, func(o *Options) { timeouts.set(o); o.now = clock.Now; o.Retries = -1 })
	c.opts.Health.probeWait = 50 * time.Millisecond
	ctx := context.Background()
	for range downAfter {
		if _, _, err := c.Info(ctx, modPath, "v1.0.0"); !isTimeout(err) {
			t.Fatalf("Info: %v; want a header timeout", err)
		}
	}
	clock.Advance(firstCooloff)
	probe := make(chan error)
	go func() {
		_, _, err := c.Info(ctx, modPath, "v1.0.0")
		probe <- err
	}()
	select {
	case <-probing:
	case err := <-probe:
		t.Fatalf("the probe: %v; want it to reach the proxy", err)
	}
	// A request during a probe that outlasts probeWait gives up then.
	if _, _, err := c.Info(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "under way") {
		t.Errorf("Info during the probe: %v; want ErrDown, saying that a request is under way", err)
	}
	// One that waits while the probe fails fails with it.
	c.opts.Health.probeWait = time.Hour
	waiter := make(chan error)
	go func() {
		_, _, err := c.Info(ctx, modPath, "v1.0.0")
		waiter <- err
	}()
	close(release)
	if err := <-probe; err == nil || errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "502") {
		t.Errorf("the probe: %v; want the 502", err)
	}
	if err := <-waiter; !errors.Is(err, ErrDown) {
		t.Errorf("Info waiting for the probe, which failed: %v; want ErrDown", err)
	}
	if n := p.count(); n != downAfter+1 {
		t.Errorf("%d requests reached the proxy; want %d", n, downAfter+1)
	}
	if _, _, err := c.Info(ctx, modPath, "v1.0.0"); !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), "asked again in 10s") {
		t.Errorf("Info after the failed probe: %v; want ErrDown for a doubled cool-off", err)
	}
}

// TestProxyBackServesWhoWaited checks that the requests that come while
// the probe after a cool-off is under way are sent once it finds the proxy
// back, instead of failing: the go command asks for many files at once,
// and a build would fail for each that came during the round trip that
// found the proxy back.
func TestProxyBackServesWhoWaited(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	probing, release := make(chan struct{}), make(chan struct{})
	var probes atomic.Int32
	files := switchable(&down)
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		if !down.Load() && probes.Add(1) == 1 {
			close(probing)
			<-release
		}
		files(w, r)
	})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // a failed test leaves no handler waiting
	clock := testutil.NewClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	c := newTestClient(t, p.URL, func(o *Options) { o.now = clock.Now; o.Retries = -1 })
	c.opts.Health.probeWait = time.Hour
	ctx := context.Background()
	for range downAfter {
		if _, _, err := c.Mod(ctx, modPath, "v1.0.0"); err == nil || errors.Is(err, ErrDown) {
			t.Fatalf("Mod: %v; want the 503", err)
		}
	}
	down.Store(false)
	clock.Advance(firstCooloff)

	const waiters = 5
	errs := make(chan error, waiters+1)
	go func() {
		_, _, err := c.Mod(ctx, modPath, "v1.0.0")
		errs <- err
	}()
	<-probing
	for range waiters {
		wctx := &waitSignal{Context: ctx, waiting: make(chan struct{})}
		go func() {
			_, _, err := c.Mod(wctx, modPath, "v1.0.0")
			errs <- err
		}()
		select {
		case <-wctx.waiting:
		case err := <-errs:
			t.Fatalf("Mod during the probe: %v before the probe ended; want it to wait", err)
		}
	}
	releaseOnce()
	for range waiters + 1 {
		if err := <-errs; err != nil {
			t.Errorf("Mod during the probe that found the proxy back: %v; want it sent and answered", err)
		}
	}
	if n := p.count(); n != downAfter+1+waiters {
		t.Errorf("%d requests reached the proxy; want %d", n, downAfter+1+waiters)
	}
}

// waitSignal is a request's context that closes waiting when the request
// first selects on its Done channel: when it starts to wait.
type waitSignal struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *waitSignal) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// TestProxyDownFallsThrough checks that, after '|', a proxy that is down
// passes its requests on to the next at once; after ',' it does not.
func TestProxyDownFallsThrough(t *testing.T) {
	ctx := context.Background()
	bad := newFakeProxy(t, serveStatus(http.StatusBadGateway))
	good := newFakeProxy(t, serveFiles(modFiles))
	c := newTestClient(t, bad.URL+"|"+good.URL, nil)
	for range downAfter + 2 {
		if mod, _, err := c.Mod(ctx, modPath, "v1.0.0"); err != nil || string(mod) != modMod {
			t.Fatalf("Mod: %q, %v; want the next proxy's go.mod", mod, err)
		}
	}
	if n, want := bad.count(), downAfter*(1+c.opts.Retries); n != want {
		t.Errorf("%d requests reached the failing proxy; want %d, none once it was down", n, want)
	}

	strict := newTestClient(t, refusedURL(t)+","+good.URL, nil)
	for range downAfter + 1 {
		_, _, err := strict.Mod(ctx, modPath, "v1.0.0")
		if err == nil {
			t.Fatal("Mod after ',' from a proxy that refuses connections: want its error")
		}
	}
	if n := good.count(); n != downAfter+2 {
		t.Errorf("%d requests reached the proxy after ','; want only the %d of the '|' list", n, downAfter+2)
	}
}

// TestRouterSharesHealth checks that the clients of one Router share what
// they learn of a proxy that more than one rule names.
func TestRouterSharesHealth(t *testing.T) {
	url := refusedURL(t)
	proxies, err := ParseList(url)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParseRules(strings.NewReader("corp.example.com/*  "+url+"\n"), "rules")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(proxies, rules, testOptions())
	ctx := context.Background()
	for range downAfter {
		r.For(modPath).Mod(ctx, modPath, "v1.0.0")
	}
	const corp = "corp.example.com/lib"
	if _, _, err := r.For(corp).Mod(ctx, corp, "v1.0.0"); !errors.Is(err, ErrDown) {
		t.Errorf("Mod through the rule's client: %v; want ErrDown, learnt through the default client", err)
	}
}
