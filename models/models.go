// Package models is Agora's metadata in SQL through Pop: users, API tokens,
// modules, versions and the audit log. It runs on PostgreSQL (through
// lib/pq) in production and on an embedded, pure-Go SQLite by default, with
// the same migrations and the same tests on both.
//
// Registry implements modproxy.Metadata; the account functions (CreateUser,
// CreateToken, Authenticate, ...) serve the CLI and the HTTP layer.
package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gobuffalo/pop/v6"
	"github.com/gobuffalo/pop/v6/logging"
	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"agora/migrations"
)

// Connect opens the database at url: a postgres:// URL through lib/pq, or a
// sqlite3:// URL (sqlite3:///abs/path/agora.db) through the embedded SQLite.
// It verifies the connection before returning, giving the database
// connectTimeout to answer.
func Connect(url string) (*pop.Connection, error) {
	return ConnectContext(context.Background(), url)
}

// connectTimeout is how long Connect gives the database to answer.
const connectTimeout = 10 * time.Second

// ConnectContext is Connect, giving up as well when ctx is done: a server
// told to stop while its database does not answer stops at once.
func ConnectContext(ctx context.Context, url string) (*pop.Connection, error) {
	registerSQLite()
	registerPostgres()
	quietPop()
	utcTimestamps()
	dialect, rest, _ := strings.Cut(url, "://")
	cd := &pop.ConnectionDetails{URL: url}
	switch dialect {
	case "postgres", "postgresql":
		cd.Pool = postgresPool
		cd.IdlePool = 10
	case "sqlite3", "sqlite":
		// Pop would take the file name to end at its first "?", which
		// may be in a directory's name.
		file, opts, err := sqliteFile(rest)
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		// The database holds the users' password hashes and the audit
		// log, and the data directory it is in must be open to everyone
		// (a web server may serve the storage tree in it): readable by
		// its owner only, as the session secret. SQLite would create it
		// 0644, and gives its -wal and -shm files the database's mode.
		if f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Close()
		}
		cd = &pop.ConnectionDetails{Dialect: "sqlite3", Database: file, Options: opts}
		// Pop insists on seeing the option it uses for foreign keys,
		// which sqliteDSN turns on in any case. lock=false turns off
		// Pop's process-wide SQLite mutex, which serialises every
		// statement, reads included: WAL lets readers run beside the one
		// writer, and writers queue in transaction.
		for k, v := range map[string]string{"_fk": "true", "lock": "false"} {
			if _, ok := opts[k]; !ok {
				opts[k] = v
			}
		}
		cd.Pool = 8
		cd.IdlePool = 8
	default:
		return nil, fmt.Errorf("database URL must start with postgres:// or sqlite3://, not %q", dialect+"://")
	}
	conn, err := pop.NewConnection(cd)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if conn.Dialect.Name() == "postgres" {
		// Pop defaults to pgx; Agora ships lib/pq, in a wrapper that
		// gives up a query whose context ends (see postgresDriver).
		conn.Dialect.Details().Driver = postgresDriver
	}
	if err := conn.Open(); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := conn.Store.(interface{ PingContext(context.Context) error }).PingContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	return conn, nil
}

// Migrate applies every pending migration. Processes that migrate the
// same database at once (nodes starting together, agora migrate during a
// rollout, a server and an agora import started beside it on one SQLite
// data directory) take turns under the registry's lock (see
// Registry.Exclusive): the first applies what is pending, the others then
// find nothing to do. Unserialised, their CREATE TABLEs collided and all
// but one failed to start.
func Migrate(conn *pop.Connection) error {
	return MigrateContext(context.Background(), conn)
}

// MigrateContext is Migrate, giving up when ctx is done: the wait for the
// lock, which another process may hold for long, as well as a migration,
// which is rolled back whole. Its error then wraps ctx's.
func MigrateContext(ctx context.Context, conn *pop.Connection) error {
	err := NewRegistry(conn).Exclusive(ctx, "migrate", func(ctx context.Context) error {
		return migrate(conn.WithContext(ctx))
	})
	// A migration cut short fails with what the driver says, which on
	// PostgreSQL is not the context's end (lib/pq's canceled statement,
	// its connection given up, or Pop's failed rollback of a transaction
	// that database/sql rolled back already): say it, so that a caller
	// stopped by a signal knows it was.
	return ended(ctx, err)
}

// migrate applies every pending migration on conn.
//
// Pop finds a migration pending before the transaction that applies it,
// so processes that migrate one SQLite database at once where Migrate's
// lock does not keep them apart (off unix, see lockFile; a server and an
// agora import or agora user create started beside it, on a new data
// directory or after an upgrade) each set out to apply it, and all but the
// first failed ("table users already exists"). Each such transaction
// rolls back whole, DDL included, and records the migration's version
// under a unique index, so a migration is applied once whoever loses; a
// failed attempt after which more migrations are applied than before it
// lost such a race, and is made again, skipping what the other applied.
// One after which none are is a real failure. (PostgreSQL's processes,
// and SQLite's on unix, take turns in Migrate.)
func migrate(conn *pop.Connection) error {
	box, err := pop.NewMigrationBox(migrations.FS, conn)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for {
		before := appliedMigrations(conn)
		err := box.Up()
		if err == nil {
			return nil
		}
		if conn.Dialect.Name() == "postgres" || appliedMigrations(conn) <= before {
			return fmt.Errorf("migrations: %w", err)
		}
	}
}

// appliedMigrations returns how many migrations conn's database records as
// applied: -1 before it has a table to record them in.
func appliedMigrations(conn *pop.Connection) int {
	var n int
	if err := conn.RawQuery("SELECT COUNT(*) FROM " + conn.MigrationTableName()).First(&n); err != nil {
		return -1
	}
	return n
}

// Ping reports whether the database answers before ctx is done: the
// /readyz check, and an Exclusive's while it waits for a lock. An error
// once ctx is done wraps both ctx's error and the driver's (see
// Unavailable).
func Ping(ctx context.Context, conn *pop.Connection) error {
	var one int
	err := conn.WithContext(ctx).RawQuery("SELECT 1").First(&one)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("the database did not answer: %w", ended(ctx, err))
	}
	return err
}

var quietOnce sync.Once

// quietPop keeps Pop from logging every SQL statement and migration at info
// level; errors reach callers as values.
func quietPop() {
	quietOnce.Do(func() {
		logf := func(lvl logging.Level, _ any, s string, args ...any) {
			if lvl >= logging.Warn {
				fmt.Fprintf(os.Stderr, "pop: %s: %s\n", lvl, fmt.Sprintf(s, args...))
			}
		}
		pop.SetTxLogger(logf)
		pop.SetLogger(func(lvl logging.Level, s string, args ...any) { logf(lvl, nil, s, args...) })
	})
}

var utcOnce sync.Once

// utcTimestamps has Pop stamp the created_at and updated_at of the rows it
// writes (users, tokens) in UTC, as dbTime does every other time. Its
// default is the local time, whose offset PostgreSQL's timestamp columns,
// which keep no zone, drop: on a host east or west of UTC, the time read
// back was off by the offset.
func utcTimestamps() {
	utcOnce.Do(func() { pop.SetNowFunc(func() time.Time { return dbTime(time.Now()) }) })
}

// ErrNotFound is wrapped by account functions when the user or token named
// does not exist.
var ErrNotFound = errors.New("not found")

// isNoRows reports whether err means a query matched no row.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// isUniqueViolation reports whether err is a database's refusal of a row
// that a unique index already holds: PostgreSQL's unique_violation, or
// SQLite's UNIQUE constraint.
func isUniqueViolation(err error) bool {
	if pe := (*pq.Error)(nil); errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	if se := (*sqlite.Error)(nil); errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

// Unavailable reports whether err is the database being out of reach,
// which passes, rather than a fault of the request or of the server: a
// connection that could not be made or was lost, a PostgreSQL server that
// is shutting down, starting or out of connections, or an SQLite database
// that another process (agora import) held locked past the busy timeout.
func Unavailable(err error) bool {
	if pe := (*pq.Error)(nil); errors.As(err, &pe) {
		switch pe.Code {
		case "53300", "57P01", "57P02", "57P03": // too many connections; shutdown, crash, starting up
			return true
		}
		return pe.Code.Class() == "08" // connection exception
	}
	if se := (*sqlite.Error)(nil); errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY // and its extended codes
	}
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// DiskFull reports whether err is the database's disk being full:
// PostgreSQL's disk_full, or SQLite's SQLITE_FULL (which it also answers
// when the file cannot grow). The write failed and was rolled back; it
// succeeds once space is freed.
func DiskFull(err error) bool {
	if pe := (*pq.Error)(nil); errors.As(err, &pe) {
		return pe.Code == "53100"
	}
	if se := (*sqlite.Error)(nil); errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_FULL
	}
	return false
}

var registerOnce sync.Once

// registerSQLite registers the pure-Go SQLite driver under the name
// "sqlite3", which Pop's sqlite dialect opens. It translates the options
// Pop puts in the DSN into the driver's pragmas.
func registerSQLite() {
	registerOnce.Do(func() {
		if !slices.Contains(sql.Drivers(), "sqlite3") {
			sql.Register("sqlite3", sqliteDriver{})
		}
	})
}

// sqliteDriver adapts modernc.org/sqlite to the DSN Pop writes:
// "<file>?_busy_timeout=5000&_fk=true".
type sqliteDriver struct{}

// Open implements driver.Driver.
func (sqliteDriver) Open(dsn string) (driver.Conn, error) {
	return (&sqlite.Driver{}).Open(sqliteDSN(dsn))
}

// sqliteFile splits what follows sqlite3:// into the database's file name
// and the options after it. Options follow the last "?", if no "/" does:
// "/srv/a?b/agora.db" is a file name.
func sqliteFile(s string) (file string, opts map[string]string, err error) {
	opts = make(map[string]string)
	i := strings.LastIndex(s, "?")
	if i < 0 || i < strings.LastIndex(s, "/") {
		return s, opts, nil
	}
	q, err := url.ParseQuery(s[i+1:])
	if err != nil {
		return "", nil, fmt.Errorf("options of %s: %w", s[:i], err)
	}
	for k := range q {
		opts[k] = q.Get(k)
	}
	return s[:i], opts, nil
}

// sqliteDSN turns Pop's DSN into modernc's. Write transactions begin
// IMMEDIATE, so that concurrent writers queue on the busy timeout instead of
// failing when a read lock cannot be upgraded; WAL lets readers run beside
// the one writer. The file name goes into a file: URI, which SQLite
// decodes, so the characters special there are escaped.
func sqliteDSN(dsn string) string {
	file, rawQuery := dsn, ""
	if i := strings.LastIndex(dsn, "?"); i >= 0 { // Pop appends its options
		file, rawQuery = dsn[:i], dsn[i+1:]
	}
	q, _ := url.ParseQuery(rawQuery)
	busy := q.Get("_busy_timeout")
	if busy == "" {
		busy = "5000"
	}
	out := url.Values{}
	out.Add("_pragma", "busy_timeout("+busy+")")
	out.Add("_pragma", "journal_mode(WAL)")
	out.Add("_pragma", "foreign_keys(1)")
	out.Set("_txlock", "immediate")
	out.Set("_time_format", "sqlite")
	return "file:" + uriEscaper.Replace(file) + "?" + out.Encode()
}

// uriEscaper escapes the characters of a file name that a file: URI would
// take for the start of an escape, of the query or of the fragment.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
