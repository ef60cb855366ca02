package models_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
)

// TestPostgresGivesUpWhenContextEnds checks that a query, the beginning of
// a transaction, a query in one, connecting and the making of a connection all end
// soon after their context does
// when the PostgreSQL server has stopped answering (hung, or behind a
// network partition), as the request they serve has: lib/pq on its own
// waits for an answer that never comes.
func TestPostgresGivesUpWhenContextEnds(t *testing.T) {
	const wait = 200 * time.Millisecond // the context's life once the server stalls
	// Long enough for a loaded machine; well under the 5 s of the test
	// URL's connect_timeout, and lib/pq's wait is unbounded.
	const within = 3 * time.Second

	// givesUp runs fn with a context that ends wait after fn starts, and
	// checks that it fails within the bound.
	givesUp := func(t *testing.T, fn func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(wait, cancel)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- fn(ctx) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("succeeded against a server that does not answer")
			}
			// The context ended, not the database: a request's client
			// that went away is a 499, not a 503 logged as an error.
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%v: want the context's end", err)
			}
			t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(wait + within):
			t.Fatalf("still waiting for the database %v after the context ended", within)
		}
	}
	open := func(t *testing.T) (*modelstest.Proxy, *pop.Connection, *models.Registry) {
		p := modelstest.NewProxy(t) // skips without a server
		conn := modelstest.OpenURL(t, p.URL)
		r := models.NewRegistry(conn)
		insert(t, r, newVersion("example.com/a", "v1.0.0"))
		return p, conn, r
	}

	t.Run("query", func(t *testing.T) {
		p, _, r := open(t)
		p.Stall()
		givesUp(t, func(ctx context.Context) error {
			_, err := r.Version(ctx, "example.com/a", "v1.0.0")
			return err
		})
	})
	t.Run("begin", func(t *testing.T) {
		p, _, r := open(t)
		p.Stall()
		givesUp(t, func(ctx context.Context) error {
			return r.Update(ctx, func(tx modproxy.MetadataTx) error {
				return tx.InsertVersion(newVersion("example.com/a", "v1.1.0"))
			})
		})
	})
	t.Run("in a transaction", func(t *testing.T) {
		p, _, r := open(t)
		givesUp(t, func(ctx context.Context) error {
			return r.Update(ctx, func(tx modproxy.MetadataTx) error {
				p.Stall()
				return tx.InsertVersion(newVersion("example.com/a", "v1.1.0"))
			})
		})
	})
	t.Run("connect", func(t *testing.T) {
		// What a server does at start, the 10 s it gives the database
		// cut short by a signal.
		p := modelstest.NewProxy(t)
		p.Stall()
		givesUp(t, func(ctx context.Context) error {
			conn, err := models.ConnectContext(ctx, p.URL)
			if err == nil {
				conn.Close()
			}
			return err
		})
	})
	t.Run("new connection", func(t *testing.T) {
		p, conn, r := open(t)
		// Every pooled connection is busy, so the query needs a new one,
		// whose handshake the stalled server accepts and never answers.
		conn.Store.(interface{ SetMaxIdleConns(int) }).SetMaxIdleConns(0)
		p.Stall()
		givesUp(t, func(ctx context.Context) error {
			_, err := r.Version(ctx, "example.com/a", "v1.0.0")
			return err
		})
	})
}

// reads are the reads of models that a request makes, each run on a
// connection that openReadable opened, with its token.
var reads = []struct {
	name string
	read func(ctx context.Context, conn *pop.Connection, token string) error
}{
	{"Version", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.NewRegistry(conn).Version(ctx, "example.com/a", "v1.0.0")
		return err
	}},
	{"Versions", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.NewRegistry(conn).Versions(ctx, "example.com/a")
		return err
	}},
	{"Modules", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.NewRegistry(conn).Modules(ctx, modproxy.ModuleQuery{})
		return err
	}},
	{"Audit", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.NewRegistry(conn).Audit(ctx, modproxy.AuditQuery{})
		return err
	}},
	{"Authenticate", func(ctx context.Context, conn *pop.Connection, token string) error {
		_, err := models.Authenticate(ctx, conn, token)
		return err
	}},
	{"UserByName", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.UserByName(ctx, conn, "alice")
		return err
	}},
	{"Tokens", func(ctx context.Context, conn *pop.Connection, _ string) error {
		_, err := models.Tokens(ctx, conn, "alice")
		return err
	}},
}

// openReadable opens a PostgreSQL database through a proxy that can stall
// it, holding what reads read: the version example.com/a@v1.0.0 and the
// user alice, with a token of read scope, which it returns.
func openReadable(t *testing.T) (*modelstest.Proxy, *pop.Connection, string) {
	t.Helper()
	p := modelstest.NewProxy(t) // skips without a server
	conn := modelstest.OpenURL(t, p.URL)
	insert(t, models.NewRegistry(conn), newVersion("example.com/a", "v1.0.0"))
	return p, conn, newToken(t, conn, "alice", auth.ScopeRead)
}

// TestPostgresCancelledQuerySaysSo checks that a read whose context is
// cancelled while its query runs, as a request's is when its client goes
// away, fails with an error that wraps context.Canceled. The socket that
// the query gives up is a connection error, which on its own reads as the
// database out of reach: a 503, and an error in the log, for every client
// that gave up while a query of its request was under way.
func TestPostgresCancelledQuerySaysSo(t *testing.T) {
	for _, read := range reads {
		t.Run(read.name, func(t *testing.T) {
			p, conn, token := openReadable(t)
			// The query goes out on the pooled connection, and is under
			// way when its context is cancelled.
			conn.Store.(interface{ SetMaxOpenConns(int) }).SetMaxOpenConns(1)
			p.Stall()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(100*time.Millisecond, cancel)
			if err := read.read(ctx, conn, token); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled while its query runs: %v; want an error wrapping context.Canceled", err)
			}
		})
	}
}

// TestPostgresStatementTimeout checks that a read or a write that a
// request makes with a context that never ends, as that of a client that
// waits as long as it takes, fails after StatementTimeout when the
// PostgreSQL server stops answering: with an error wrapping
// context.DeadlineExceeded, of which Unavailable reports true, so that the
// request is answered 503 without naming the database's address.
func TestPostgresStatementTimeout(t *testing.T) {
	defer func(d time.Duration) { models.StatementTimeout = d }(models.StatementTimeout)
	models.StatementTimeout = 300 * time.Millisecond
	ops := append(slices.Clone(reads), []struct {
		name string
		read func(ctx context.Context, conn *pop.Connection, token string) error
	}{
		{"Update", func(ctx context.Context, conn *pop.Connection, _ string) error {
			return models.NewRegistry(conn).Update(ctx, func(tx modproxy.MetadataTx) error {
				return tx.InsertVersion(newVersion("example.com/a", "v1.1.0"))
			})
		}},
		{"CreateUser", func(ctx context.Context, conn *pop.Connection, _ string) error {
			_, err := models.CreateUser(ctx, conn, "cli", "bob", auth.RoleViewer, "")
			return err
		}},
		{"CreateToken", func(ctx context.Context, conn *pop.Connection, _ string) error {
			_, _, err := models.CreateToken(ctx, conn, "cli", "alice", "laptop", auth.ScopeRead)
			return err
		}},
	}...)
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			p, conn, token := openReadable(t)
			p.Stall()
			wantGivenUp(t, p, o.read, conn, token)
		})
	}
	t.Run("new connection", func(t *testing.T) {
		p, conn, token := openReadable(t)
		// No connection is pooled: the read needs a new one, whose
		// handshake the stalled server accepts and never answers.
		conn.Store.(interface{ SetMaxIdleConns(int) }).SetMaxIdleConns(0)
		p.Stall()
		wantGivenUp(t, p, reads[0].read, conn, token)
	})
}

// wantGivenUp checks that read, run with a context that never ends against
// the server behind p, which stopped answering, fails after
// StatementTimeout with an error wrapping context.DeadlineExceeded, of
// which Unavailable reports true.
func wantGivenUp(t *testing.T, p *modelstest.Proxy, read func(ctx context.Context, conn *pop.Connection, token string) error, conn *pop.Connection, token string) {
	t.Helper()
	const within = 3 * time.Second // after the timeout, on a loaded machine
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- read(context.Background(), conn, token) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !models.Unavailable(err) {
			t.Errorf("against a server that stopped answering: %v; want an error wrapping context.DeadlineExceeded that Unavailable reports", err)
		}
		t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(models.StatementTimeout + within):
		p.Stop() // let it end
		t.Fatalf("still waiting for the database %v after StatementTimeout", within)
	}
}
