package metrics

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

var routeTests = []struct {
	path string
	want string
}{
	{"/golang.org/x/mod/@v/v0.42.0.info", RouteInfo},
	{"/golang.org/x/mod/@v/v0.42.0.mod", RouteMod},
	{"/golang.org/x/mod/@v/v0.42.0.zip", RouteZip},
	{"/golang.org/x/mod/@v/list", RouteList},
	{"/golang.org/x/mod/@latest", RouteLatest},
	{"/github.com/!burnt!sushi/toml/@v/v1.4.1-0.20240526193622-a339e1f7089c.info", RouteInfo},
	{"/golang.org/x/mod/@v/master.info", RouteInfo},
	{"/golang.org/x/mod/@v/v1.0.0.txt", RouteOther},
	{"/golang.org/x/mod/@v/", RouteOther},
	{"/golang.org/x/mod", RouteOther},
	{"/sumdb/sum.golang.org/supported", RouteSumDB},
	{"/sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.42.0", RouteSumDB},
	{"/sumdb/sum.golang.org/tile/8/0/x123/456", RouteSumDB},
	{"/api/v1/modules/example.com/m/@v/v1.0.0.zip", RouteAPI},
	{"/api/v1/whoami", RouteAPI},
	{"/api/", RouteAPI},
	{"/admin", RouteAdmin},
	{"/admin/users/3", RouteAdmin},
	{"/administrator", RouteOther},
	{"/assets/app.css", RouteAssets},
	{"/healthz", RouteHealth},
	{"/readyz", RouteHealth},
	{"/metrics", RouteMetrics},
	{"/metrics/x", RouteOther},
	{"/", RouteOther},
	{"", RouteOther},
	{"/favicon.ico", RouteOther},
}

func TestRoute(t *testing.T) {
	for _, tt := range routeTests {
		if got := Route(tt.path); got != tt.want {
			t.Errorf("Route(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestRouteIndexCoversRoutes(t *testing.T) {
	if len(routes) != numRoutes || len(protoKinds) != numKinds || len(fetchKinds) != numFetchKinds || len(sumdbKinds) != numSumDBKinds ||
		len(methods) != numMethods || len(codes) != numCodes {
		t.Fatal("a label set's length constant is out of date")
	}
	for i, r := range routes {
		if got := routeIndex(r); got != i {
			t.Errorf("routeIndex(%q) = %d, want %d", r, got, i)
		}
	}
	for i, k := range protoKinds {
		if got := kindIndex(k); got != i {
			t.Errorf("kindIndex(%q) = %d, want %d", k, got, i)
		}
	}
	for i, k := range fetchKinds {
		if got := fetchKindIndex(k); got != i {
			t.Errorf("fetchKindIndex(%q) = %d, want %d", k, got, i)
		}
	}
	for i, k := range sumdbKinds {
		if got := sumdbIndex(k); got != i {
			t.Errorf("sumdbIndex(%q) = %d, want %d", k, got, i)
		}
	}
	for i, mt := range methods {
		if got := methodIndex(mt); got != i {
			t.Errorf("methodIndex(%q) = %d, want %d", mt, got, i)
		}
	}
	for i, c := range codes {
		if got := codeIndex(c); got != i {
			t.Errorf("codeIndex(%d) = %d, want %d", c, got, i)
		}
	}
	for _, c := range []int{-1, 0, 100, 418, 599, 600, 1000} {
		if got := codeIndex(c); got != -1 {
			t.Errorf("codeIndex(%d) = %d, want -1", c, got)
		}
	}
}

func TestCacheRequest(t *testing.T) {
	m := New()
	m.CacheRequest(KindInfo, true)
	m.CacheRequest(KindInfo, true)
	m.CacheRequest(KindInfo, false)
	m.CacheRequest(KindZip, false)
	m.CacheRequest(KindQuery, false)
	m.CacheRequest("bogus", true)
	c := m.reg
	wantByKindResult(t, c, "agora_cache_requests_total", []kindResult{
		{"info", "hit", 2},
		{"info", "miss", 1},
		{"query", "miss", 1},
		{"query", "hit", 0},
		{"zip", "miss", 1},
		{"zip", "hit", 0},
		{"mod", "hit", 0},
		{"other", "hit", 1},
	})
}

func TestFetch(t *testing.T) {
	m := New()
	const up = "https://proxy.example.com"
	m.Fetch(up, KindZip, 200, 1000, 2*time.Second, nil)
	m.Fetch(up, KindZip, 200, 500, time.Second, nil)
	m.Fetch(up, KindMod, 404, 20, time.Millisecond, errors.New("not found"))
	m.Fetch(up, KindMod, 410, 0, time.Millisecond, errors.New("gone"))
	m.Fetch(up, KindInfo, 403, 0, time.Millisecond, errors.New("forbidden"))
	m.Fetch(up, KindInfo, 502, 0, time.Millisecond, errors.New("bad gateway"))
	m.Fetch(up, KindList, 0, 0, time.Millisecond, errors.New("connection refused"))
	m.Fetch("https://user:secret@other.example.com/go?token=x", KindLatest, 200, 50, time.Millisecond, nil)
	m.Fetch(up, KindQuery, 200, 60, time.Millisecond, nil)
	m.Fetch(up, KindSumDB, 200, 8192, time.Millisecond, nil)
	m.Fetch(up, "tile", 200, 1, time.Millisecond, nil) // no kind of Fetch: other

	for _, tt := range []struct {
		upstream, kind, result string
		want                   float64
	}{
		{up, "zip", "ok", 2},
		{up, "mod", "not_found", 2},
		{up, "info", "not_found", 1},
		{up, "info", "error", 1},
		{up, "list", "error", 1},
		{up, "list", "ok", 0},
		{"https://other.example.com/go", "latest", "ok", 1},
		{up, "query", "ok", 1},
		{up, "info", "ok", 0},
		{up, "sumdb", "ok", 1},
		{up, "other", "ok", 1},
	} {
		if got := value(t, m.reg, "agora_upstream_fetches_total", "upstream", tt.upstream, "kind", tt.kind, "result", tt.result); got != tt.want {
			t.Errorf("agora_upstream_fetches_total{upstream=%q,kind=%q,result=%q} = %v, want %v", tt.upstream, tt.kind, tt.result, got, tt.want)
		}
	}
	if got := value(t, m.reg, "agora_upstream_fetch_bytes_total", "kind", "zip"); got != 1500 {
		t.Errorf("agora_upstream_fetch_bytes_total{kind=zip} = %v, want 1500", got)
	}
	if got := value(t, m.reg, "agora_upstream_fetch_bytes_total", "kind", "sumdb"); got != 8192 {
		t.Errorf("agora_upstream_fetch_bytes_total{kind=sumdb} = %v, want 8192", got)
	}
	body := scrape(t, m)
	if strings.Contains(body, "secret") || strings.Contains(body, "token") {
		t.Errorf("/metrics shows a proxy URL's credentials:\n%s", grep(body, "agora_upstream_fetches_total"))
	}
	for _, want := range []string{
		`agora_upstream_fetch_duration_seconds_count{kind="zip"} 2`,
		`agora_upstream_fetch_duration_seconds_sum{kind="zip"} 3`,
		`agora_upstream_fetch_duration_seconds_count{kind="mod"} 2`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(body, "agora_upstream_fetch_duration_seconds_"))
		}
	}
}

func TestProxyDown(t *testing.T) {
	m := New()
	const up = "https://proxy.example.com"
	m.Fetch(up, KindMod, 200, 10, time.Millisecond, nil)
	if got := value(t, m.reg, "agora_upstream_down", "upstream", up); got != 0 {
		t.Errorf("agora_upstream_down of a proxy that answered = %v, want 0", got)
	}
	m.ProxyDown(up, true)
	m.ProxyDown("https://user:secret@other.example.com", true)
	if got := value(t, m.reg, "agora_upstream_down", "upstream", up); got != 1 {
		t.Errorf("agora_upstream_down while down = %v, want 1", got)
	}
	m.ProxyDown(up, false)
	if got := value(t, m.reg, "agora_upstream_down", "upstream", up); got != 0 {
		t.Errorf("agora_upstream_down once back = %v, want 0", got)
	}
	if got := value(t, m.reg, "agora_upstream_down", "upstream", "https://other.example.com"); got != 1 {
		t.Errorf("agora_upstream_down of the other proxy = %v, want 1", got)
	}
	if body := scrape(t, m); strings.Contains(body, "secret") {
		t.Errorf("/metrics shows a proxy URL's credentials:\n%s", grep(body, "agora_upstream_down"))
	}
}

func TestSumDBRequest(t *testing.T) {
	m := New()
	m.SumDBRequest(SumDBTile, true, nil)
	m.SumDBRequest(SumDBTile, true, nil)
	m.SumDBRequest(SumDBTile, false, nil)
	m.SumDBRequest(SumDBLookup, false, errors.New("upstream down"))
	m.SumDBRequest(SumDBSupported, false, nil)
	wantByKindResult(t, m.reg, "agora_sumdb_requests_total", []kindResult{
		{"tile", "hit", 2},
		{"tile", "miss", 1},
		{"lookup", "error", 1},
		{"lookup", "hit", 0},
		{"supported", "miss", 1},
	})
}

func TestObserveRequest(t *testing.T) {
	m := New()
	m.ObserveRequest(RouteInfo, http.MethodGet, 200, time.Millisecond, 100)
	m.ObserveRequest(RouteInfo, http.MethodGet, 200, time.Millisecond, 100)
	m.ObserveRequest(RouteInfo, http.MethodHead, 200, time.Millisecond, 0)
	m.ObserveRequest(RouteZip, http.MethodGet, 404, time.Millisecond, 30)
	m.ObserveRequest(RouteAPI, "BREW", 418, time.Millisecond, 0)
	m.ObserveRequest("/some/raw/path", http.MethodGet, 200, time.Millisecond, 0)
	for _, tt := range []struct {
		route, method, code string
		want                float64
	}{
		{"info", "GET", "200", 2},
		{"info", "HEAD", "200", 1},
		{"zip", "GET", "404", 1},
		{"api", "other", "418", 1},
		{"other", "GET", "200", 1},
	} {
		if got := value(t, m.reg, "agora_http_requests_total", "route", tt.route, "method", tt.method, "code", tt.code); got != tt.want {
			t.Errorf("agora_http_requests_total{route=%q,method=%q,code=%q} = %v, want %v", tt.route, tt.method, tt.code, got, tt.want)
		}
	}
	if got := value(t, m.reg, "agora_http_response_bytes_total", "route", "info"); got != 200 {
		t.Errorf("agora_http_response_bytes_total{route=info} = %v, want 200", got)
	}
	body := scrape(t, m)
	if want := `agora_http_request_duration_seconds_count{route="info"} 3`; !strings.Contains(body, want+"\n") {
		t.Errorf("/metrics lacks %q:\n%s", want, grep(body, "agora_http_request_duration_seconds_count"))
	}
	if strings.Contains(body, "/some/raw/path") {
		t.Error("a raw path became a label value")
	}
	// Only the combinations seen have a series.
	if n := testutil.CollectAndCount(m.requests); n != 5 {
		t.Errorf("agora_http_requests_total has %d series, want 5", n)
	}
}

func TestObserveRequestConcurrent(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				m.ObserveRequest(RouteMod, http.MethodGet, 200, time.Microsecond, 10)
				m.InFlight()()
			}
		})
	}
	wg.Wait()
	if got := value(t, m.reg, "agora_http_requests_total", "route", "mod", "method", "GET", "code", "200"); got != 8000 {
		t.Errorf("agora_http_requests_total{route=mod,method=GET,code=200} = %v, want 8000", got)
	}
}

func TestInFlight(t *testing.T) {
	m := New()
	done1 := m.InFlight()
	done2 := m.InFlight()
	if got := testutil.ToFloat64(m.inFlight); got != 2 {
		t.Errorf("in flight = %v, want 2", got)
	}
	done1()
	done2()
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight = %v, want 0", got)
	}
}

func TestHandler(t *testing.T) {
	m := New()
	m.CacheRequest(KindMod, true)
	body := scrape(t, m)
	for _, want := range []string{
		`agora_cache_requests_total{kind="mod",result="hit"} 1`,
		`agora_cache_requests_total{kind="latest",result="miss"} 0`,
		`agora_sumdb_requests_total{kind="tile",result="hit"} 0`,
		`agora_http_requests_in_flight 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: %d, Allow %q; want 405, Allow \"GET, HEAD\"", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestHandlerFormat checks that /metrics answers a Prometheus server, which
// asks for OpenMetrics first, in the text format, and that what it serves
// passes the checks of promtool check metrics (HELP and TYPE lines, units
// and _total in names), with every series of every metric shown.
func TestHandlerFormat(t *testing.T) {
	m := New()
	m.CacheRequest(KindInfo, true)
	m.Fetch("https://proxy.example.com", KindZip, 200, 10, time.Second, nil)
	m.ProxyDown("https://proxy.example.com", true)
	m.SumDBRequest(SumDBTile, false, nil)
	m.StorageRestore(KindZip, true)
	m.ObserveRequest(RouteZip, http.MethodGet, 200, time.Millisecond, 10)
	m.ObserveRequest(RouteOther, "FOO", 499, time.Millisecond, 0)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	m.Handler().ServeHTTP(rec, r)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q; want the text format, version 0.0.4", ct)
	}
	problems, err := promlint.New(bytes.NewReader(rec.Body.Bytes())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestOwnRegistry checks that New registers nothing in the process-wide
// default registry, so that two can exist (as in tests).
func TestOwnRegistry(t *testing.T) {
	New().CacheRequest(KindInfo, true)
	New().CacheRequest(KindInfo, true)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "agora_") {
			t.Errorf("%s is in the default registry", mf.GetName())
		}
	}
}

func TestNil(t *testing.T) {
	var m *Metrics
	m.CacheRequest(KindInfo, true)
	m.Fetch("https://proxy.example.com", KindZip, 200, 10, time.Second, nil)
	m.SumDBRequest(SumDBTile, true, nil)
	m.ObserveRequest(RouteInfo, http.MethodGet, 200, time.Millisecond, 10)
	m.InFlight()()
	if m.Registry() != nil {
		t.Error("Registry() of a nil *Metrics is not nil")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics of a nil *Metrics: %d, want 404", rec.Code)
	}
}

func TestObserveRequestAllocs(t *testing.T) {
	m := New()
	m.ObserveRequest(RouteInfo, http.MethodGet, 200, time.Millisecond, 100) // creates the series
	allocs := testing.AllocsPerRun(1000, func() {
		m.ObserveRequest(Route("/golang.org/x/mod/@v/v0.42.0.info"), http.MethodGet, 200, 150*time.Microsecond, 180)
		m.InFlight()()
		m.CacheRequest(KindInfo, true)
	})
	if allocs != 0 {
		t.Errorf("ObserveRequest, InFlight and CacheRequest: %v allocations per call, want 0", allocs)
	}
}

// TestObserveRequestAllocsByStatus checks that no status Agora answers
// allocates once seen: 499 above all, which every go command that gives up
// during a fetch is counted with, and the statuses of conditional requests.
func TestObserveRequestAllocsByStatus(t *testing.T) {
	for _, status := range []int{
		200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409, 410, 412,
		413, 416, 499, 500, 502, 503, 507, 508,
	} {
		m := New()
		m.ObserveRequest(RouteZip, http.MethodGet, status, time.Millisecond, 100) // creates the series
		allocs := testing.AllocsPerRun(100, func() {
			m.ObserveRequest(RouteZip, http.MethodGet, status, time.Millisecond, 100)
		})
		if allocs != 0 {
			t.Errorf("ObserveRequest with status %d: %v allocations per call, want 0", status, allocs)
		}
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	path := "/golang.org/x/mod/@v/v0.42.0.info"
	b.ReportAllocs()
	for b.Loop() {
		done := m.InFlight()
		m.ObserveRequest(Route(path), http.MethodGet, 200, 150*time.Microsecond, 180)
		done()
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := New()
	path := "/golang.org/x/mod/@v/v0.42.0.info"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done := m.InFlight()
			m.ObserveRequest(Route(path), http.MethodGet, 200, 150*time.Microsecond, 180)
			done()
		}
	})
}

// value returns the value of the counter or gauge name{labels} in reg
// (pairs of label name and value), failing the test if there is no such
// series.
// kindResult is the wanted value of a series of a counter labelled by kind
// and result.
type kindResult struct {
	kind, result string
	want         float64
}

// wantByKindResult checks the series of counter name that want lists.
func wantByKindResult(t *testing.T, reg prometheus.Gatherer, name string, want []kindResult) {
	t.Helper()
	for _, w := range want {
		if got := value(t, reg, name, "kind", w.kind, "result", w.result); got != w.want {
			t.Errorf("%s{kind=%q,result=%q} = %v, want %v", name, w.kind, w.result, got, w.want)
		}
	}
}

func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, metric := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range metric.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if metric.Gauge != nil {
				return metric.GetGauge().GetValue()
			}
			return metric.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// scrape returns the body of GET /metrics.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// grep returns the lines of s that contain substr.
func grep(s, substr string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestStorageRestore(t *testing.T) {
	m := New()
	m.StorageRestore(KindZip, true)
	m.StorageRestore(KindZip, false)
	m.StorageRestore(KindMod, true)
	m.StorageRestore(KindList, true) // not a file: not counted
	wantByKindResult(t, m.reg, "agora_storage_restores_total", []kindResult{
		{"zip", "ok", 1},
		{"zip", "failed", 1},
		{"mod", "ok", 1},
		{"info", "ok", 0},
	})
	if body := scrape(t, m); strings.Contains(body, `agora_storage_restores_total{kind="list"`) {
		t.Error("restores are counted for list, which is no file")
	}
}
