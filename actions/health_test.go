package actions_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gobuffalo/pop/v6"

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
		if len(checks) != 2 || checks["database"] != "ok" || checks["storage"] != "ok" {
			t.Errorf("/readyz = %v", checks)
		}
		if leftovers := s.storageTree(t); len(leftovers) > 0 {
			t.Errorf("/readyz left files in storage: %v", leftovers)
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
	})
}
