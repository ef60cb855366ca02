package command

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"agora/checksum"
	"agora/config"
	"agora/metrics"
	"agora/upstream"
)

// countingTransport counts the requests it carries.
type countingTransport struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// TestSumDBUsesTheUpstreamOptions checks that the checksum database is
// reached as the upstream proxies are: with the transport it is given, the
// upstream proxies' keep-alive one, not with http.DefaultTransport, which
// keeps two idle connections per host (concurrent lookups would then open
// connections all the time); with Agora's User-Agent; and told to the
// metrics.
func TestSumDBUsesTheUpstreamOptions(t *testing.T) {
	_, vkey, err := note.GenerateKey(rand.Reader, "sum.test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		agents []string
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		if r.URL.Path == "/sumdb/sum.test.invalid/supported" {
			return
		}
		http.NotFound(w, r)
	}))
	defer proxy.Close()
	cfg := &config.Config{
		DataDir:  t.TempDir(),
		Upstream: []upstream.Proxy{{URL: proxy.URL}},
		SumDB:    vkey,
	}
	transport := &countingTransport{next: http.DefaultTransport}
	m := metrics.New()
	db, err := openSumDB(cfg, upstream.Options{Transport: transport, UserAgent: userAgent, Observer: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}

	_, err = db.Lookup(context.Background(), "example.com/m", "v1.0.0")
	if !errors.Is(err, checksum.ErrNotFound) || !strings.Contains(err.Error(), "example.com/m@v1.0.0") {
		t.Fatalf("Lookup = %v; want ErrNotFound from the proxy's 404", err)
	}
	// The probe of /supported and the lookup.
	if n := transport.n.Load(); n != 2 {
		t.Errorf("requests through the transport given = %d; want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(agents, []string{userAgent, userAgent}) {
		t.Errorf("User-Agents = %q; want %q", agents, userAgent)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`agora_upstream_fetches_total{kind="sumdb",result="ok",upstream="` + proxy.URL + `"} 1`,
		`agora_upstream_fetches_total{kind="sumdb",result="not_found",upstream="` + proxy.URL + `"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
