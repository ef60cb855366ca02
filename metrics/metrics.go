// Package metrics is Agora's Prometheus instrumentation: cache hits and
// misses of the download protocol, fetches from upstream proxies, requests
// to the checksum-database proxy, and the usual HTTP request metrics, served
// in the Prometheus text format at GET /metrics.
//
// Every metric lives in a registry of its own (not the process-wide default
// one), together with the Go runtime and process collectors. Labels take
// values from small fixed sets only: a request is labelled with its route
// (see Route), never with its path, so that the number of series stays
// bounded however many modules are served.
//
// ObserveRequest runs for every request and is built not to allocate: the
// series of the fixed label sets are resolved once, in New or on first use,
// and found again by array index.
//
// A nil *Metrics is valid and counts nothing, so that code under test needs
// none.
package metrics

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Kinds of download-protocol request, as CacheRequest and Fetch take them.
const (
	KindInfo   = "info"   // GET /{module}/@v/{version}.info
	KindMod    = "mod"    // GET /{module}/@v/{version}.mod
	KindZip    = "zip"    // GET /{module}/@v/{version}.zip
	KindList   = "list"   // GET /{module}/@v/list
	KindLatest = "latest" // GET /{module}/@latest
	// KindQuery is GET /{module}/@v/{query}.info of a query rather than a
	// canonical version: a branch, a commit, a version such as v1.2, which
	// the upstream resolves to a version each time.
	KindQuery = "query"
)

// KindSumDB is the kind, for Fetch only, of a request to the checksum
// database through an upstream proxy's /sumdb/ (or to the database itself):
// the lookups, tiles and tree heads Agora fetches to verify what it fetches
// and to answer /sumdb/.
const KindSumDB = "sumdb"

// Kinds of checksum-database request, as SumDBRequest takes them.
const (
	SumDBSupported = "supported" // GET /sumdb/{name}/supported
	SumDBLatest    = "latest"    // GET /sumdb/{name}/latest
	SumDBLookup    = "lookup"    // GET /sumdb/{name}/lookup/{module}@{version}
	SumDBTile      = "tile"      // GET /sumdb/{name}/tile/...
)

// other is the label value of anything outside a fixed label set.
const other = "other"

// Label values of the fixed sets, in index order. The last entry of each is
// "other", where values outside the set are counted.
var (
	protoKinds = []string{KindInfo, KindMod, KindZip, KindList, KindLatest, KindQuery, other}
	fetchKinds = []string{KindInfo, KindMod, KindZip, KindList, KindLatest, KindQuery, KindSumDB, other}
	sumdbKinds = []string{SumDBSupported, SumDBLatest, SumDBLookup, SumDBTile, other}
	methods    = []string{
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodDelete, http.MethodPatch, http.MethodOptions, other,
	}
)

// Results of a fetch from an upstream proxy (agora_upstream_fetches_total).
const (
	resultOK       = "ok"
	resultNotFound = "not_found"
	resultError    = "error"
)

var fetchResults = []string{resultOK, resultNotFound, resultError}

// Results of a checksum-database request (agora_sumdb_requests_total): hit
// (answered from the cache), miss (fetched from upstream), error.
var sumdbResults = []string{"hit", "miss", resultError}

// Histogram buckets, in seconds. Requests served from disk take well under
// a millisecond, so the HTTP buckets start at 100 µs; upstream fetches of
// large zips may take minutes.
var (
	requestBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	fetchBuckets   = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// Metrics holds Agora's metrics and the registry they are served from. It is
// safe for concurrent use. Create one with New; a nil *Metrics counts
// nothing.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	cache [numKinds][2]prometheus.Counter // [kind][0 miss, 1 hit]

	fetches       *prometheus.CounterVec
	fetchDuration [numFetchKinds]prometheus.Observer
	fetchBytes    [numFetchKinds]prometheus.Counter
	upstreams     sync.Map // proxy URL → *upstreamSeries
	upstreamDown  *prometheus.GaugeVec

	sumdb [numSumDBKinds][3]prometheus.Counter // [kind][sumdbResults]

	restores [numKinds][2]prometheus.Counter // [kind][failed, ok]

	requests      *prometheus.CounterVec
	requestSeries [numRoutes][numMethods][numCodes]atomic.Pointer[prometheus.Counter]
	duration      [numRoutes]prometheus.Observer
	respBytes     [numRoutes]prometheus.Counter
	inFlight      prometheus.Gauge
	inFlightDone  func()
}

// Sizes of the fixed label sets.
const (
	numKinds      = 7 // len(protoKinds)
	numFetchKinds = 8 // len(fetchKinds)
	numSumDBKinds = 5 // len(sumdbKinds)
	numMethods    = 8 // len(methods)
)

// New returns Metrics with every series of the fixed label sets at zero, in
// a registry of their own that also holds the Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	factory := func(c prometheus.Collector) { m.reg.MustRegister(c) }

	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_cache_requests_total",
		Help: "Download-protocol requests by kind (info, mod, zip, list, latest; query: the .info of a branch, a commit or another non-canonical version), answered from what is stored (result=hit) or not (result=miss: needing an upstream, neither stored nor fetched, or lost by storage, restored or not: see agora_storage_restores_total).",
	}, []string{"kind", "result"})
	factory(cache)
	for k, kind := range protoKinds {
		m.cache[k][0] = cache.WithLabelValues(kind, "miss")
		m.cache[k][1] = cache.WithLabelValues(kind, "hit")
	}

	m.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_upstream_fetches_total",
		Help: "Requests to upstream proxies by proxy, kind (info, mod, zip, list, latest; query: the .info of a non-canonical version; sumdb: the checksum database through the proxy's /sumdb/, or the database itself) and result (ok, not_found: 404/410/403, error: any other failure).",
	}, []string{"upstream", "kind", "result"})
	factory(m.fetches)
	fetchDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agora_upstream_fetch_duration_seconds",
		Help:    "Duration of requests to upstream proxies by kind, whole body included, whatever the result.",
		Buckets: fetchBuckets,
	}, []string{"kind"})
	factory(fetchDuration)
	fetchBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_upstream_fetch_bytes_total",
		Help: "Response body bytes received from upstream proxies by kind.",
	}, []string{"kind"})
	factory(fetchBytes)
	for k, kind := range fetchKinds {
		m.fetchDuration[k] = fetchDuration.WithLabelValues(kind)
		m.fetchBytes[k] = fetchBytes.WithLabelValues(kind)
	}

	m.upstreamDown = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agora_upstream_down",
		Help: "1 while an upstream proxy is down (several requests in a row got no answer, so requests to it fail at once until it answers again), else 0; a proxy appears once it was asked.",
	}, []string{"upstream"})
	factory(m.upstreamDown)

	restores := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_storage_restores_total",
		Help: "Files (info, mod, zip) that the database records but storage had lost, by kind and result (ok: put back from the record, the stored zip or the upstream; failed). Any is a sign of trouble with storage. Each restore counts once, however many requests waited for it; each of those is a miss in agora_cache_requests_total.",
	}, []string{"kind", "result"})
	factory(restores)
	for _, kind := range []string{KindInfo, KindMod, KindZip} {
		m.restores[kindIndex(kind)][0] = restores.WithLabelValues(kind, "failed")
		m.restores[kindIndex(kind)][1] = restores.WithLabelValues(kind, "ok")
	}

	sumdb := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_sumdb_requests_total",
		Help: "Requests to the checksum-database proxy by kind (supported, latest, lookup, tile) and result (hit: from the cache, miss: fetched, error).",
	}, []string{"kind", "result"})
	factory(sumdb)
	for k, kind := range sumdbKinds {
		for r, result := range sumdbResults {
			m.sumdb[k][r] = sumdb.WithLabelValues(kind, result)
		}
	}

	// The request counter's series are created on first use (see
	// requestCounter): there are too many route, method and code
	// combinations to show them all at zero.
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_http_requests_total",
		Help: "HTTP requests by route (see metrics.Route), method and status code.",
	}, []string{"route", "method", "code"})
	factory(m.requests)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agora_http_request_duration_seconds",
		Help:    "Duration of HTTP requests by route, until the response was written.",
		Buckets: requestBuckets,
	}, []string{"route"})
	factory(duration)
	respBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_http_response_bytes_total",
		Help: "HTTP response body bytes by route.",
	}, []string{"route"})
	factory(respBytes)
	for r, route := range routes {
		m.duration[r] = duration.WithLabelValues(route)
		m.respBytes[r] = respBytes.WithLabelValues(route)
	}
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agora_http_requests_in_flight",
		Help: "HTTP requests being served.",
	})
	factory(m.inFlight)
	m.inFlightDone = m.inFlight.Dec

	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Registry returns the registry that Handler serves, for adding collectors
// of other packages (nil for a nil *Metrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler returns the handler of GET /metrics: every metric in the
// Prometheus text format (version 0.0.4), whatever the Accept header asks
// for; OpenMetrics is not served. Other methods than GET and HEAD are
// answered 405. For a nil *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		m.handler.ServeHTTP(w, r)
	})
}

// CacheRequest counts a download-protocol request of kind (info, mod, zip,
// list, latest, query; anything else counts as other) that was answered from what
// is stored (hit) or not (miss: it needed the upstream, what it asked for
// is neither stored nor fetched, or storage had lost the file, which the
// request restored or not). It implements modproxy.Observer.
func (m *Metrics) CacheRequest(kind string, hit bool) {
	if m == nil {
		return
	}
	m.cache[kindIndex(kind)][index(hit)].Inc()
}

// StorageRestore counts a file of kind (info, mod, zip) that the database
// records but storage had lost, which a request restored (ok) or could not
// restore. It implements modproxy.Observer.
func (m *Metrics) StorageRestore(kind string, ok bool) {
	if m == nil {
		return
	}
	if c := m.restores[kindIndex(kind)][index(ok)]; c != nil { // a file's kind
		c.Inc()
	}
}

// index returns the index of a counter pair's series: 1 for true.
func index(b bool) int {
	if b {
		return 1
	}
	return 0
}

// upstreamSeries are the fetch counters of one upstream proxy, by kind and
// result.
type upstreamSeries [numFetchKinds][3]prometheus.Counter

// Fetch records one request to the upstream proxy at URL proxy: its kind
// (info, mod, zip, list, latest, query, sumdb), the HTTP status (0 when none was
// received), the response body bytes read, how long it took, and its error.
// A nil error counts as result ok; an error with status 404, 410 or 403 as
// not_found; any other error as error. It implements upstream.Observer.
//
// The proxy URL is a label value without its user information, so that no
// password in AGORA_UPSTREAM reaches /metrics.
func (m *Metrics) Fetch(proxy, kind string, status int, bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	k := fetchKindIndex(kind)
	result := 0
	if err != nil {
		result = 2
		switch status {
		case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
			result = 1
		}
	}
	m.upstream(proxy)[k][result].Inc()
	m.fetchDuration[k].Observe(d.Seconds())
	if bytes > 0 {
		m.fetchBytes[k].Add(float64(bytes))
	}
}

// ProxyDown records that proxy went down or answers again. It implements
// upstream.HealthObserver.
func (m *Metrics) ProxyDown(proxy string, down bool) {
	if m == nil {
		return
	}
	v := 0.0
	if down {
		v = 1
	}
	m.upstream(proxy) // its series exist, the gauge at 0 among them
	m.upstreamDown.WithLabelValues(redactURL(proxy)).Set(v)
}

// upstream returns the fetch counters of proxy, creating them on first use.
func (m *Metrics) upstream(proxy string) *upstreamSeries {
	if s, ok := m.upstreams.Load(proxy); ok {
		return s.(*upstreamSeries)
	}
	label := redactURL(proxy)
	s := new(upstreamSeries)
	for k, kind := range fetchKinds {
		for r, result := range fetchResults {
			s[k][r] = m.fetches.WithLabelValues(label, kind, result)
		}
	}
	m.upstreamDown.WithLabelValues(label).Add(0) // shown at 0 from the first request
	actual, _ := m.upstreams.LoadOrStore(proxy, s)
	return actual.(*upstreamSeries)
}

// redactURL returns u without its user information (and without a query,
// which might hold a token).
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "invalid"
	}
	p.User = nil
	p.RawQuery, p.ForceQuery, p.Fragment = "", false, ""
	return p.String()
}

// SumDBRequest counts a request to the checksum-database proxy of kind
// (supported, latest, lookup, tile; anything else counts as other),
// answered from the cache (cached) or fetched, or failed (err not nil).
func (m *Metrics) SumDBRequest(kind string, cached bool, err error) {
	if m == nil {
		return
	}
	result := 1
	switch {
	case err != nil:
		result = 2
	case cached:
		result = 0
	}
	m.sumdb[sumdbIndex(kind)][result].Inc()
}

// ObserveRequest records a finished HTTP request: its route (one of Route's
// values; anything else counts as other), method, status code, duration and
// response body bytes. It does not allocate once the route, method and code
// were seen before.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration, bytes int64) {
	if m == nil {
		return
	}
	r := routeIndex(route)
	m.requestCounter(r, methodIndex(method), status).Inc()
	m.duration[r].Observe(d.Seconds())
	if bytes > 0 {
		m.respBytes[r].Add(float64(bytes))
	}
}

// requestCounter returns the series of agora_http_requests_total for route
// r, method mt and status, creating it on first use.
func (m *Metrics) requestCounter(r, mt, status int) prometheus.Counter {
	c := codeIndex(status)
	if c < 0 { // a rare status: no slot of its own
		return m.requests.WithLabelValues(routes[r], methods[mt], strconv.Itoa(status))
	}
	slot := &m.requestSeries[r][mt][c]
	if p := slot.Load(); p != nil {
		return *p
	}
	counter := m.requests.WithLabelValues(routes[r], methods[mt], strconv.Itoa(status))
	slot.CompareAndSwap(nil, &counter) // a concurrent first use stored the same series
	return counter
}

// InFlight counts a request as being served (agora_http_requests_in_flight)
// until the function it returns is called:
//
//	defer m.InFlight()()
//
// It does not allocate.
func (m *Metrics) InFlight() (done func()) {
	if m == nil {
		return noop
	}
	m.inFlight.Inc()
	return m.inFlightDone
}

func noop() {}

// kindIndex returns the index of kind in protoKinds; unknown kinds are other.
func kindIndex(kind string) int {
	switch kind {
	case KindInfo:
		return 0
	case KindMod:
		return 1
	case KindZip:
		return 2
	case KindList:
		return 3
	case KindLatest:
		return 4
	case KindQuery:
		return 5
	}
	return numKinds - 1
}

// fetchKindIndex returns the index of kind in fetchKinds; unknown kinds are
// other.
func fetchKindIndex(kind string) int {
	if kind == KindSumDB {
		return numFetchKinds - 2
	}
	if k := kindIndex(kind); k < numKinds-1 {
		return k
	}
	return numFetchKinds - 1
}

// sumdbIndex returns the index of kind in sumdbKinds; unknown kinds are
// other.
func sumdbIndex(kind string) int {
	switch kind {
	case SumDBSupported:
		return 0
	case SumDBLatest:
		return 1
	case SumDBLookup:
		return 2
	case SumDBTile:
		return 3
	}
	return numSumDBKinds - 1
}

// methodIndex returns the index of method in methods; unknown methods are
// other.
func methodIndex(method string) int {
	switch method {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodPatch:
		return 5
	case http.MethodOptions:
		return 6
	}
	return numMethods - 1
}

// codes are the status codes with a slot of their own in
// Metrics.requestSeries: those Agora answers (499 being nginx's "client
// closed request", which package actions records for a client that went
// away). Other codes are still counted, through the slower path, which
// allocates.
var codes = []int{
	200, 201, 204, 206, 301, 302, 303, 304, 307, 308,
	400, 401, 403, 404, 405, 408, 409, 410, 412, 413, 416, 429, 499,
	500, 502, 503, 504, 507, 508,
}

// numCodes is len(codes).
const numCodes = 29

// codeSlots maps a status code to its index in codes, plus one (0: none).
var codeSlots = func() (s [600]uint8) {
	for i, c := range codes {
		s[c] = uint8(i + 1)
	}
	return s
}()

// codeIndex returns the index of status in codes, or -1.
func codeIndex(status int) int {
	if status < 0 || status >= len(codeSlots) {
		return -1
	}
	return int(codeSlots[status]) - 1
}
