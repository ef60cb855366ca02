package actions_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/actions"
	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
)

func TestHealth(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		// Health checks need no token, even when downloads do.
		s := newServer(t, conn, readAuthToken)

		r := s.get(t, "/healthz")
		wantStatus(t, r, http.StatusOK)
		if strings.TrimSpace(string(r.body)) != "ok" {
			t.Errorf("/healthz body %q", r.body)
		}

		r = s.get(t, "/readyz")
		wantStatus(t, r, http.StatusOK)
		var checks map[string]string
		decodeJSON(t, r, &checks)
		if len(checks) != 3 || checks["database"] != "ok" || checks["storage"] != "ok" || checks["tmp"] != "ok" {
			t.Errorf("/readyz = %v", checks)
		}
		if leftovers := s.storageTree(t); len(leftovers) > 0 {
			t.Errorf("/readyz left files in storage: %v", leftovers)
		}
		s.wantNoUploadsLeft(t)
	})
}

// TestReadyzShuttingDown checks that /readyz answers 503 once the server
// shuts down, though every check would pass, and at once, not after the
// answer it reuses for a second; /healthz stays 200, so that the process
// is not taken for dead while it drains.
func TestReadyzShuttingDown(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		var shuttingDown atomic.Bool
		s := newServer(t, conn, func(s *serverSetup) { s.deps.ShuttingDown = shuttingDown.Load })
		wantStatus(t, s.get(t, "/readyz"), http.StatusOK)
		shuttingDown.Store(true)
		r := s.get(t, "/readyz")
		wantStatus(t, r, http.StatusServiceUnavailable)
		var checks map[string]string
		decodeJSON(t, r, &checks)
		if len(checks) != 1 || checks["server"] != "shutting down" {
			t.Errorf("/readyz while shutting down = %v; want server: shutting down", checks)
		}
		wantStatus(t, s.get(t, "/healthz"), http.StatusOK)
	})
}

// TestReadyzSharesItsChecks checks that /readyz, which anyone may ask,
// does not write and sync a file on the server's disks for every request:
// requests that come while its checks run, or soon after, share their
// answer, so that a client cannot keep the disks busy syncing.
func TestReadyzSharesItsChecks(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		probes := actions.CountStorageProbes(t)
		actions.SetReadyReuse(t, time.Hour) // however slow the machine
		s := newServer(t, conn)
		const n = 20
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				resp, err := s.client.Get(s.URL + "/readyz")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("/readyz: %s", resp.Status)
				}
			})
		}
		wg.Wait()
		for range n {
			wantStatus(t, s.get(t, "/readyz"), http.StatusOK)
		}
		if got := probes(); got != 1 {
			t.Errorf("%d requests for /readyz at once, then %d one after another, wrote to storage %d times; want 1", n, n, got)
		}

		// Once the answer is old, the checks run again, and see what
		// changed: a storage that takes no writes.
		actions.SetReadyReuse(t, 0)
		if err := os.RemoveAll(s.disk.Root()); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, s.get(t, "/readyz"), http.StatusServiceUnavailable)
		if got := probes(); got != 2 {
			t.Errorf("/readyz after its answer aged wrote to storage %d times in all; want 2", got)
		}
	})
}

func TestReadyzStorageUnusable(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		missing := filepath.Join(t.TempDir(), "missing")
		s := newServer(t, conn, func(s *serverSetup) { s.cfg.StorageDir = missing })
		r := s.get(t, "/readyz")
		wantStatus(t, r, http.StatusServiceUnavailable)
		var checks map[string]string
		decodeJSON(t, r, &checks)
		if checks["database"] != "ok" || checks["storage"] == "ok" || checks["storage"] == "" {
			t.Errorf("/readyz = %v, want the database ok and storage failing", checks)
		}
		// /readyz is open to anyone: it tells what fails, not where the
		// server keeps its files.
		if strings.Contains(string(r.body), missing) {
			t.Errorf("/readyz = %s; it names the storage directory", r.body)
		}
	})
}

// TestReadyzTempDirGone checks that a temporary directory removed under a
// running server (a cleanup script, an operator) is made again: every
// upload and fetch used to fail until a restart while /readyz said ready.
func TestReadyzTempDirGone(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		token := s.token(t, "alice", auth.RolePublisher)
		if err := os.RemoveAll(s.tempDir); err != nil {
			t.Fatal(err)
		}
		r := s.get(t, "/readyz")
		wantStatus(t, r, http.StatusOK)
		var checks map[string]string
		decodeJSON(t, r, &checks)
		if checks["tmp"] != "ok" {
			t.Errorf("/readyz = %v; want tmp ok", checks)
		}
		if err := os.RemoveAll(s.tempDir); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, s.publish(t, token, newModule(t, "example.com/m", "v1.0.0", "")), http.StatusCreated)
		s.wantNoUploadsLeft(t)
	})
}

// TestReadyzTempDirUnusable checks that /readyz fails when uploads and
// fetches cannot be staged, as it does when storage cannot be written.
func TestReadyzTempDirUnusable(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		if err := os.RemoveAll(s.tempDir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.tempDir, nil, 0o600); err != nil { // no directory can be made
			t.Fatal(err)
		}
		r := s.get(t, "/readyz")
		wantStatus(t, r, http.StatusServiceUnavailable)
		var checks map[string]string
		decodeJSON(t, r, &checks)
		if checks["database"] != "ok" || checks["storage"] != "ok" || checks["tmp"] == "ok" || checks["tmp"] == "" {
			t.Errorf("/readyz = %v, want the database and storage ok and tmp failing", checks)
		}
		if strings.Contains(string(r.body), s.tempDir) {
			t.Errorf("/readyz = %s; it names the temporary directory", r.body)
		}
	})
}

// TestHealthHEAD checks that monitors that ask with HEAD get the status
// that GET gives, not 405.
func TestHealthHEAD(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		s := newServer(t, conn)
		for _, path := range []string{"/healthz", "/readyz"} {
			r := s.do(t, http.MethodHead, path, nil)
			wantStatus(t, r, http.StatusOK)
			if len(r.body) != 0 {
				t.Errorf("HEAD %s body %q; want none", path, r.body)
			}
		}
	})
}

// TestDatabaseUnavailable checks that a request that needs a database out
// of reach is a 503, which passes, and not a 500, the server's own fault;
// and that it does not tell the client where the database is.
func TestDatabaseUnavailable(t *testing.T) {
	t.Run("postgres stopped", func(t *testing.T) {
		p := modelstest.NewProxy(t)
		s := newServer(t, modelstest.OpenURL(t, p.URL))
		tok := s.token(t, "alice", auth.RolePublisher)
		s.mustPublish(t, tok, newModule(t, "example.com/a", "v1.0.0", ""))
		p.Stop()
		address := strings.TrimPrefix(strings.Split(p.URL, "/")[2], "postgres@")
		r := s.get(t, "/example.com/a/@v/list")
		wantProtocolError(t, r, http.StatusServiceUnavailable)
		if strings.Contains(string(r.body), address) {
			t.Errorf("list: %v names the database's address %s", r, address)
		}
		r = s.get(t, "/api/v1/modules", bearer(tok))
		if e := wantError(t, r, http.StatusServiceUnavailable, "unavailable"); strings.Contains(e.Error, address) {
			t.Errorf("modules: %v names the database's address %s", r, address)
		}
	})
	t.Run("postgres not answering", func(t *testing.T) {
		// /readyz gives the database 5 s, and must say so when it does
		// not answer: lib/pq does not give up a query whose context ends,
		// but asks the server to cancel it, and waits for its answer.
		actions.SetReadyReuse(t, 0) // the second /readyz checks again
		p := modelstest.NewProxy(t)
		s := newServer(t, modelstest.OpenURL(t, p.URL))
		wantStatus(t, s.get(t, "/readyz"), http.StatusOK)
		p.Stall()
		type answer struct {
			r   *response
			err error
		}
		answered := make(chan answer, 1)
		go func() {
			r, err := s.send(http.MethodGet, "/readyz", nil)
			answered <- answer{r, err}
		}()
		select {
		case a := <-answered:
			if a.err != nil {
				t.Fatal(a.err)
			}
			wantStatus(t, a.r, http.StatusServiceUnavailable)
			var checks map[string]string
			decodeJSON(t, a.r, &checks)
			if checks["database"] == "ok" {
				t.Errorf("/readyz = %v, want the database failing", checks)
			}
		case <-time.After(15 * time.Second):
			p.Stop() // let the request end
			t.Fatal("/readyz did not answer 15 s after the database stopped answering")
		}
	})
	t.Run("postgres not answering a request", func(t *testing.T) {
		// A client that waits as long as it takes gets a 503 once
		// models.StatementTimeout has passed, not an answer never.
		defer func(d time.Duration) { models.StatementTimeout = d }(models.StatementTimeout)
		models.StatementTimeout = 300 * time.Millisecond
		p := modelstest.NewProxy(t)
		s := newServer(t, modelstest.OpenURL(t, p.URL))
		tok := s.token(t, "alice", auth.RolePublisher)
		s.mustPublish(t, tok, newModule(t, "example.com/a", "v1.0.0", ""))
		address := strings.TrimPrefix(strings.Split(p.URL, "/")[2], "postgres@")
		p.Stall()
		for _, req := range []struct {
			path string
			api  bool
		}{
			{"/example.com/b/@v/v1.0.0.info", false}, // not stored: asks the database
			{"/api/v1/modules", true},
		} {
			type answer struct {
				r   *response
				err error
			}
			answered := make(chan answer, 1)
			go func() {
				var opts []requestOption
				if req.api {
					opts = append(opts, bearer(tok))
				}
				r, err := s.send(http.MethodGet, req.path, nil, opts...)
				answered <- answer{r, err}
			}()
			select {
			case a := <-answered:
				if a.err != nil {
					t.Fatal(a.err)
				}
				r := a.r
				if req.api {
					wantError(t, r, http.StatusServiceUnavailable, "unavailable")
				} else {
					wantProtocolError(t, r, http.StatusServiceUnavailable)
				}
				if strings.Contains(string(r.body), address) {
					t.Errorf("GET %s: %v names the database's address %s", req.path, r, address)
				}
			case <-time.After(15 * time.Second):
				p.Stop() // let the request end
				t.Fatalf("GET %s did not answer 15 s after the database stopped answering", req.path)
			}
		}
	})
	t.Run("sqlite locked", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "agora.db")
		s := newServer(t, modelstest.OpenURL(t, "sqlite3://"+file+"?_busy_timeout=50"))
		tok := s.token(t, "alice", auth.RolePublisher)
		// Another process (agora import) writes, past the busy timeout.
		release := modelstest.LockSQLite(t, file)
		m := newModule(t, "example.com/a", "v1.0.0", "")
		wantError(t, s.publish(t, tok, m), http.StatusServiceUnavailable, "unavailable")
		release()
		s.mustPublish(t, tok, m)
	})
}
