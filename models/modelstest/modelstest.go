// Package modelstest gives tests fresh, migrated databases: an SQLite file
// in a temporary directory, and a PostgreSQL database created for the test
// and dropped after it, so that test packages can run in parallel.
//
// PostgreSQL is found at $AGORA_TEST_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), a server
// URL whose database is used only to create and drop test databases. When
// no server answers, the PostgreSQL runs are skipped with a message, unless
// $AGORA_TEST_POSTGRES is "require" or $CI is set, when they fail: CI must
// never pass by skipping half the suite.
package modelstest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"
	_ "github.com/lib/pq"

	"agora/models"
)

// Dialects are the databases every database test runs on.
var Dialects = []string{"sqlite3", "postgres"}

// Each runs fn as a subtest once per dialect, each with a fresh database.
func Each(t *testing.T, fn func(t *testing.T, conn *pop.Connection)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Open returns a connection to a fresh, migrated database of the dialect,
// closed and removed when the test ends.
func Open(t testing.TB, dialect string) *pop.Connection {
	t.Helper()
	return OpenURL(t, URL(t, dialect))
}

// OpenURL returns a connection to the database at url, migrated, and
// closed when the test ends.
func OpenURL(t testing.TB, url string) *pop.Connection {
	t.Helper()
	conn, err := models.Connect(url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() {
		models.FlushTokenUses(context.Background(), conn)
		conn.Close()
	})
	if err := models.Migrate(conn); err != nil {
		t.Fatalf("migrating %s: %v", url, err)
	}
	return conn
}

// LockSQLite holds a write transaction on the SQLite database file, as
// another process (agora import) does while it writes, until release is
// called or the test ends.
func LockSQLite(t testing.TB, file string) (release func()) {
	t.Helper()
	other, err := models.Connect("sqlite3://" + file)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.NewTransaction()
	if err != nil {
		other.Close()
		t.Fatal(err)
	}
	release = sync.OnceFunc(func() {
		tx.TX.Rollback()
		other.Close()
	})
	t.Cleanup(release)
	return release
}

// URL returns the URL of a fresh, empty database of the dialect, removed when
// the test ends. Use it for a process that migrates the database itself.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "sqlite3":
		return "sqlite3://" + filepath.Join(t.TempDir(), "agora.db")
	case "postgres":
		return postgresDatabase(t)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

// Proxy is a TCP proxy in front of a fresh, empty PostgreSQL database,
// removed when the test ends, that a test stops or stalls to see what a
// database out of reach does to its clients.
type Proxy struct {
	// URL is the database's URL through the proxy.
	URL string

	ln      net.Listener
	mu      sync.Mutex
	stopped bool
	stalled bool
	conns   []net.Conn
}

// NewProxy starts a Proxy, stopped when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	u, err := url.Parse(URL(t, "postgres")) // skips without a server
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
	target := u.Host
	u.Host = ln.Addr().String()
	p.URL = u.String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.stalled { // accepted, and never answered
				p.conns = append(p.conns, c)
				p.mu.Unlock()
				continue
			}
			p.mu.Unlock()
			s, err := net.Dial("tcp", target)
			p.mu.Lock()
			if err != nil || p.stopped {
				p.mu.Unlock()
				c.Close()
				if s != nil {
					s.Close()
				}
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go p.copy(c, s)
			go p.copy(s, c)
		}
	}()
	t.Cleanup(p.Stop)
	return p
}

// copy copies from src to dst until src ends, dropping what it reads once
// the proxy stalls.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		stalled := p.stalled
		p.mu.Unlock()
		if !stalled {
			dst.Write(buf[:n])
		}
	}
}

// Stop stops the proxy as a stopped server would: the connections made
// through it close, and new ones are refused.
func (p *Proxy) Stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, c := range p.conns {
		c.Close()
	}
}

// Stall makes the database stop answering, as behind a network partition
// or when its server hangs: the connections made through the proxy stay
// open and new ones are accepted, but nothing passes any more.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

var (
	serverOnce sync.Once
	serverErr  error
)

// serverURL returns the URL of the PostgreSQL server's maintenance database.
func serverURL() string {
	if u := os.Getenv("AGORA_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=5"
}

// postgresRequired reports whether a missing server fails the test.
func postgresRequired() bool {
	return os.Getenv("AGORA_TEST_POSTGRES") == "require" || os.Getenv("CI") != ""
}

// postgresDatabase creates a database for the test and returns its URL.
func postgresDatabase(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() {
		db, err := sql.Open("postgres", serverURL())
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		serverErr = err
	})
	if serverErr != nil {
		if postgresRequired() {
			t.Fatalf("PostgreSQL at %s: %v", serverURL(), serverErr)
		}
		t.Skipf("no PostgreSQL at %s (%v); set AGORA_TEST_POSTGRES_URL, or run .ci/run", serverURL(), serverErr)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "agora_test_" + hex.EncodeToString(b)

	admin, err := sql.Open("postgres", serverURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("postgres", serverURL())
		if err != nil {
			return
		}
		defer admin.Close()
		// Connections of the test may linger in pools for a moment.
		for i := 0; i < 50; i++ {
			if _, err = admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("dropping test database %s: %v", name, err)
	})
	u, err := url.Parse(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	// The server probe fails fast; a test's own connections may wait while
	// other packages create and drop databases on a busy machine.
	q := u.Query()
	q.Set("connect_timeout", "60")
	u.RawQuery = q.Encode()
	return fmt.Sprint(u)
}

// SQLiteFullError returns the error of a write to an SQLite database that
// cannot grow, as on a full disk (SQLITE_FULL): one held to its size with
// max_page_count.
func SQLiteFullError(t testing.TB) error {
	t.Helper()
	file := filepath.Join(t.TempDir(), "full.db")
	conn, err := models.Connect("sqlite3://" + file) // registers the driver
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	db, err := sql.Open("sqlite3", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the pragma holds for its connection only
	for _, stmt := range []string{"CREATE TABLE t (b BLOB)", "PRAGMA max_page_count = 4"} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.Exec("INSERT INTO t VALUES (zeroblob(1 << 20))")
	if err == nil {
		t.Fatal("a write past max_page_count succeeded")
	}
	return err
}
