package actions_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"agora/actions"
	"agora/auth"
	"agora/config"
	"agora/metrics"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// BenchmarkDownload measures Agora's own work for a download of a stored
// version's .info and .mod, the most frequent requests: the whole handler as
// command/serve.go wires it (request log and metrics included, the log
// formatted and discarded), called directly, so that net/http's server and
// the network, which the handler cannot change, are left out. Run with
// -benchmem: the allocations are most of what it can save.
func BenchmarkDownload(b *testing.B) {
	h, m := handlerServing(b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, kind := range []string{".info", ".mod"} {
		b.Run(kind[1:], func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/"+m.Path+"/@v/"+m.Version+kind, nil)
			w := &discardWriter{header: http.Header{}}
			h.ServeHTTP(w, r)
			if w.status != http.StatusOK || w.n == 0 {
				b.Fatalf("GET %s: status %d, %d bytes", r.URL.Path, w.status, w.n)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.header)
				h.ServeHTTP(w, r)
			}
		})
	}
}

// handlerServing returns Agora's handler, as command/serve.go wires it, with
// metrics, logging to log, on a fresh SQLite database and storage holding
// the one module version it returns.
func handlerServing(tb testing.TB, log *slog.Logger) (http.Handler, *testModule) {
	tb.Helper()
	conn := modelstest.Open(tb, "sqlite3")
	disk, err := storage.NewDisk(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	reg := modproxy.New(modproxy.Config{Metadata: models.NewRegistry(conn), Blobs: disk, TempDir: tb.TempDir(), Logger: log})
	m := newModule(tb, "example.com/bench/module", "v1.2.3", "bench")
	who := auth.Principal{UserID: 1, User: "bench", Role: auth.RolePublisher, Scope: auth.ScopePublish}
	if _, err := reg.Publish(context.Background(), who, m.Path, m.Version, bytes.NewReader(m.Zip)); err != nil {
		tb.Fatal(err)
	}
	cfg := &config.Config{Env: "test", ReadAuth: config.ReadPublic, Data: config.Data{DataDir: tb.TempDir(), StorageDir: disk.Root()}}
	h, err := actions.Handler(&actions.Deps{Config: cfg, DB: conn, Registry: reg, Logger: log, Metrics: metrics.New()})
	if err != nil {
		tb.Fatal(err)
	}
	return h, m
}

// discardWriter is a ResponseWriter that keeps the status and the size only.
type discardWriter struct {
	header http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header    { return w.header }
func (w *discardWriter) WriteHeader(status int) { w.status = status }
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
