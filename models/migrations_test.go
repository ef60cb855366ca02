package models_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/migrations"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/upstream"
)

func migrationsFS() fs.FS { return migrations.FS }

// firstMigrations is how many migrations the builds before the sources of
// fetched versions were redacted in the database had: the schema of a
// database they left.
const firstMigrations = 6

// TestMigrateRedactsRecordedSources checks that upgrading a database that
// an older build left redacts the upstream tokens it recorded as the
// sources of fetched versions. Builds before upstream.RedactURL replaced a
// user name given alone (https://TOKEN@proxy.example) recorded the token
// in versions.source, and the API shows a version's source to any token
// with read scope, the 409 of a publish under a fetched path names it, and
// so does the audit event of a publish that completes a fetched version:
// the new build kept showing the token the old one had recorded.
func TestMigrateRedactsRecordedSources(t *testing.T) {
	sources := []string{
		"https://s3cr3t@proxy.example",
		"http://s3cr3t@127.0.0.1:8080/goproxy",
		"https://s3cr3t@proxy.example/a@b",
		"https://ci:xxxxx@proxy.example", // a password, redacted when recorded
		"https://xxxxx@proxy.example",    // a token, redacted when recorded
		"https://proxy.example/a@b",
		"https://proxy.example:443/x",
		"file:///srv/go@proxy",
		modproxy.SourceUploaded,
		modproxy.SourceImported,
	}
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		box, err := pop.NewMigrationBox(migrationsFS(), conn)
		if err != nil {
			t.Fatal(err)
		}
		if err := box.Down(-1); err != nil {
			t.Fatal(err)
		}
		if n, err := box.UpTo(firstMigrations); err != nil || n != firstMigrations {
			t.Fatalf("the first %d migrations: %d applied, %v", firstMigrations, n, err)
		}
		r := models.NewRegistry(conn)
		for i, src := range sources {
			v := newVersion("example.com/m", fmt.Sprintf("v1.0.%d", i))
			v.Source = src
			insert(t, r, v)
		}
		if err := models.Migrate(conn); err != nil {
			t.Fatal(err)
		}
		for i, src := range sources {
			want := src
			if u, err := url.Parse(src); err == nil && u.Scheme != "" {
				want = upstream.RedactURL(u)
			}
			v, err := r.Version(context.Background(), "example.com/m", fmt.Sprintf("v1.0.%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if v.Source != want {
				t.Errorf("source %q after the upgrade = %q; want %q", src, v.Source, want)
			}
		}
	})
}

// TestMigrateGivesUpWhenContextEnds checks that MigrateContext stops
// waiting for the migrations' lock when its context ends: another process
// migrating the database may hold it for long, and a server told to stop
// meanwhile must not wait for it.
func TestMigrateGivesUpWhenContextEnds(t *testing.T) {
	for _, d := range modelstest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := modelstest.URL(t, d)
			holder := modelstest.OpenURL(t, url)
			held, released := make(chan struct{}), make(chan struct{})
			go models.NewRegistry(holder).Exclusive(context.Background(), "migrate", func(context.Context) error {
				close(held)
				<-released
				return nil
			})
			release := sync.OnceFunc(func() { close(released) })
			defer release()
			<-held
			conn, err := models.Connect(url) // as another process
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(200*time.Millisecond, cancel)
			done := make(chan error, 1)
			go func() { done <- models.MigrateContext(ctx, conn) }()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("MigrateContext = %v; want it to end with its context", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("MigrateContext still waiting for the lock 5 s after its context ended")
				release()
				<-done
			}
		})
	}
}

// TestMigrateCutShort checks what MigrateContext leaves when its context
// ends while a migration runs: an error that says so, as it says it of a
// wait for the lock, the migration rolled back whole, and the lock free, so
// that migrating again applies it. On PostgreSQL the error was lib/pq's
// alone (the statement canceled, or the connection given up), and agora
// import, stopped by a signal then, did not know it was interrupted.
func TestMigrateCutShort(t *testing.T) {
	for _, d := range modelstest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := modelstest.URL(t, d)
			conn := modelstest.OpenURL(t, url)
			applied := func() int {
				t.Helper()
				var n int
				if err := conn.RawQuery("SELECT COUNT(*) FROM schema_migration").First(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			all := applied()
			box, err := pop.NewMigrationBox(migrationsFS(), conn)
			if err != nil {
				t.Fatal(err)
			}
			// The last migration, pending again, writes to versions,
			// which another holds.
			if err := box.Down(1); err != nil {
				t.Fatal(err)
			}
			other, err := models.Connect(url)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			tx, err := other.NewTransaction() // IMMEDIATE on SQLite: it holds the write lock
			if err != nil {
				t.Fatal(err)
			}
			release := sync.OnceFunc(func() { tx.TX.Rollback() })
			defer release()
			if d == "postgres" {
				if err := tx.RawQuery("LOCK TABLE versions IN ACCESS EXCLUSIVE MODE").Exec(); err != nil {
					t.Fatal(err)
				}
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- models.MigrateContext(ctx, conn) }()
			// Cut short once the migration waits for the table: on
			// SQLite, which does not tell, after a while.
			for waited := 0; ; waited++ {
				select {
				case err := <-done:
					t.Fatalf("MigrateContext = %v before its context ended, though another holds versions", err)
				case <-time.After(10 * time.Millisecond):
				}
				if d == "sqlite3" && waited == 20 || d == "postgres" && waitingForLock(t, conn) {
					break
				}
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("MigrateContext cut short = %v; want an error wrapping context.Canceled", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("MigrateContext still running a minute after its context ended")
			}

			release()
			mctx, mcancel := context.WithTimeout(context.Background(), time.Minute)
			defer mcancel()
			if err := models.MigrateContext(mctx, conn); err != nil {
				t.Fatalf("migrating again: %v", err)
			}
			if n := applied(); n != all {
				t.Errorf("%d migrations recorded after migrating again; want %d", n, all)
			}
		})
	}
}

// waitingForLock reports whether a session of conn's PostgreSQL database
// waits for a table's lock.
func waitingForLock(t *testing.T, conn *pop.Connection) bool {
	t.Helper()
	var n int
	err := conn.RawQuery(`SELECT COUNT(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).First(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}
