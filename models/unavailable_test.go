package models_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
)

// TestUnavailable checks that the failures of a database out of reach are
// told apart from the others, on each driver: PostgreSQL stopped, its
// connections ended by a restart, and an SQLite database that another
// process holds locked past the busy timeout.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("postgres stopped", func(t *testing.T) {
		conn, stop := connectThroughProxy(t)
		r := models.NewRegistry(conn)
		tok := newToken(t, conn, "ci", auth.ScopeRead)
		insert(t, r, newVersion("example.com/a", "v1.0.0"))
		if _, err := r.Version(ctx, "example.com/a", "v1.0.0"); err != nil || models.Unavailable(err) {
			t.Fatalf("Version while the server runs: %v", err)
		}
		stop()
		if _, err := r.Version(ctx, "example.com/a", "v1.0.0"); !models.Unavailable(err) {
			t.Errorf("Version once the server stopped: %v; want the database unavailable", err)
		}
		if _, err := models.Authenticate(ctx, conn, tok); !models.Unavailable(err) {
			t.Errorf("Authenticate once the server stopped: %v; want the database unavailable", err)
		}
	})
	t.Run("postgres restarted", func(t *testing.T) {
		conn, _ := openPostgres(t)
		r := models.NewRegistry(conn)
		err := r.Update(ctx, func(tx modproxy.MetadataTx) error {
			if _, err := tx.Version("example.com/a", "v1.0.0"); !errors.Is(err, modproxy.ErrNotFound) || models.Unavailable(err) {
				t.Errorf("Version of none: %v; want ErrNotFound only", err)
			}
			// What a restart does to the transaction's connection.
			err := conn.RawQuery("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Exec()
			if err != nil {
				t.Fatal(err)
			}
			return tx.InsertVersion(newVersion("example.com/a", "v1.0.0"))
		})
		if !models.Unavailable(err) {
			t.Errorf("a transaction whose connection the server ended: %v; want the database unavailable", err)
		}
	})
	t.Run("sqlite locked", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "agora.db")
		conn := modelstest.OpenURL(t, "sqlite3://"+file+"?_busy_timeout=50")
		release := modelstest.LockSQLite(t, file) // another process's write transaction
		r := models.NewRegistry(conn)
		err := r.Update(ctx, func(tx modproxy.MetadataTx) error {
			return tx.InsertVersion(newVersion("example.com/a", "v1.0.0"))
		})
		if !models.Unavailable(err) {
			t.Errorf("Update while another process writes: %v; want the database unavailable", err)
		}
		release()
		insert(t, r, newVersion("example.com/a", "v1.0.0"))
		err = r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(newVersion("example.com/a", "v1.0.0")) })
		if !errors.Is(err, modproxy.ErrExists) || models.Unavailable(err) {
			t.Errorf("inserting a recorded version: %v; want ErrExists, and not the database unavailable", err)
		}
	})
}

// connectThroughProxy returns a connection to a fresh, migrated PostgreSQL
// database that stop makes unreachable (see modelstest.Proxy).
func connectThroughProxy(t *testing.T) (_ *pop.Connection, stop func()) {
	t.Helper()
	p := modelstest.NewProxy(t) // skips without a server
	return modelstest.OpenURL(t, p.URL), p.Stop
}
