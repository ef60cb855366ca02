package models

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gobuffalo/pop/v6"
)

// StatementTimeout bounds each operation on the database that a request or
// a command makes: a query, or a transaction of writes with its wait for
// SQLite's writer. A database that stops answering (a PostgreSQL server
// that hangs, a network that drops its packets without a reset) then fails
// the operation with an error wrapping context.DeadlineExceeded, of which
// Unavailable reports true on PostgreSQL, and which a request answers with
// 503, where it would have held the request for as long as its client
// waits. Agora's statements take milliseconds; the bound is for a database
// gone wrong. It does not bound the wait for an Exclusive lock, which
// another holder keeps for as long as its fetch takes (a fetch has a
// timeout of its own), but such a wait asks the server every
// StatementTimeout whether it still answers, and ends if it does not (see
// lockWait). Nor does it bound migrations, backups and Ping, which have
// their own. It is a variable so that tests can shorten it.
var StatementTimeout = 30 * time.Second

// bounded returns ctx ending StatementTimeout from now, or earlier if ctx
// does.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, StatementTimeout)
}

// transaction runs fn in a transaction on conn. On SQLite, which lets one
// writer in at a time, this process's transactions queue on a semaphore of
// the database file first: the next one starts the moment the last one
// ends, where SQLite's busy handler would have it sleep and retry (1, 2, 5,
// 10... ms), so that a burst of small writes, such as a cold cache filling,
// would wait mostly on sleeps. Pop's own SQLite lock, which also
// serialised every read, is off (see Connect): WAL lets readers run beside
// the writer. Other processes (agora import) still meet the busy timeout.
func transaction(ctx context.Context, conn *pop.Connection, fn func(tx *pop.Connection) error) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if sem := sqliteWriters(conn); sem != nil {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ended(ctx, conn.WithContext(ctx).Transaction(fn))
}

// ended returns err, which a transaction under ctx failed with, wrapping
// ctx's error too once ctx has ended. database/sql rolls back a
// transaction whose context ends, and Pop then reports its own rollback's
// failure, that the transaction was over, in place of what fn met; the
// end of the context is the reason.
func ended(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", ctx.Err(), err)
}

// writers holds a one-slot semaphore per SQLite database file.
var writers sync.Map // database file -> chan struct{}

// sqliteWriters returns the write semaphore of conn's database, or nil if it
// is not SQLite.
func sqliteWriters(conn *pop.Connection) chan struct{} {
	if conn.Dialect.Name() != "sqlite3" {
		return nil
	}
	sem, _ := writers.LoadOrStore(conn.Dialect.Details().Database, make(chan struct{}, 1))
	return sem.(chan struct{})
}
