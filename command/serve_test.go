package command

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"agora/checksum"
	"agora/config"
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

// TestSumDBUsesTheUpstreamTransport checks that the checksum database is
// reached with the transport it is given, the upstream proxies' keep-alive
// one, not with http.DefaultTransport, which keeps two idle connections
// per host: concurrent lookups would then open connections all the time.
func TestSumDBUsesTheUpstreamTransport(t *testing.T) {
	_, vkey, err := note.GenerateKey(rand.Reader, "sum.test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	db, err := openSumDB(cfg, upstream.Options{Transport: transport, Logger: slog.New(slog.DiscardHandler)})
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
}
