package e2e

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestUpstreamOffReachesNothing runs the real server with AGORA_UPSTREAM=off
// and every outgoing HTTP and HTTPS request sent to a proxy that counts
// them (http.ProxyFromEnvironment exempts only loopback, and NO_PROXY is
// unset): asking for modules Agora does not store, and for one it does,
// must not make a single request to it, nor count an upstream fetch. It
// fails if off falls back to some upstream anyway.
func TestUpstreamOffReachesNothing(t *testing.T) {
	var (
		mu       sync.Mutex
		requests []string
	)
	outbound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.Host+r.URL.Path)
		mu.Unlock()
		http.Error(w, "the test's outbound proxy: no request may leave Agora", http.StatusBadGateway)
	}))
	defer outbound.Close()

	// startAgora passes on none of the test's environment but PATH and
	// HOME, so no NO_PROXY exempts anything; these say so explicitly.
	s := startAgora(t, agoraBinary(t), "sqlite3",
		"AGORA_UPSTREAM=off",
		"HTTPS_PROXY="+outbound.URL, "https_proxy="+outbound.URL,
		"HTTP_PROXY="+outbound.URL, "http_proxy="+outbound.URL,
		"NO_PROXY=", "no_proxy=")
	stored := fixtures[0]
	if status, _, body := s.publish(t, s.createPublisher(t, "alice"), stored); status != http.StatusCreated {
		t.Fatalf("publishing %v: %d %s", stored, status, body)
	}

	for _, file := range []string{
		"/golang.org/x/text/@v/list",
		"/golang.org/x/text/@latest",
		"/golang.org/x/text/@v/v0.14.0.info",
		"/golang.org/x/text/@v/v0.14.0.mod",
		"/golang.org/x/text/@v/v0.14.0.zip",
		"/github.com/stretchr/testify/@latest",
		"/github.com/stretchr/testify/@v/v1.9.0.zip",
		"/example.com/hello/@v/v9.9.9.info", // an unknown version of a stored module
	} {
		if status, body := s.do(t, http.MethodGet, file, "", nil, nil); status != http.StatusNotFound {
			t.Errorf("GET %s with AGORA_UPSTREAM=off: %d %s; want %d", file, status, body, http.StatusNotFound)
		}
	}
	for _, file := range []string{"/example.com/hello/@v/list", "/example.com/hello/@latest", "/example.com/hello/@v/v1.0.0.info", "/example.com/hello/@v/v1.0.0.zip"} {
		if status, body := s.do(t, http.MethodGet, file, "", nil, nil); status != http.StatusOK {
			t.Errorf("GET %s, stored: %d %s; want %d", file, status, body, http.StatusOK)
		}
	}

	mu.Lock()
	if len(requests) != 0 {
		t.Errorf("with AGORA_UPSTREAM=off, Agora sent %d requests out: %q", len(requests), requests)
	}
	mu.Unlock()
	status, body := s.do(t, http.MethodGet, "/metrics", "", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "agora_upstream_fetches_total") {
			if f := strings.Fields(line); f[len(f)-1] != "0" {
				t.Errorf("with AGORA_UPSTREAM=off, /metrics counts upstream fetches: %s", line)
			}
		}
	}
}
