package models

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gobuffalo/pop/v6"
)

// transaction runs fn in a transaction on conn. On SQLite, which lets one
// writer in at a time, this process's transactions queue on a semaphore of
// the database file first: the next one starts the moment the last one
// ends, where SQLite's busy handler would have it sleep and retry (1, 2, 5,
// 10... ms), so that a burst of small writes, such as a cold cache filling,
// would wait mostly on sleeps. Pop's own SQLite lock, which also
// serialised every read, is off (see Connect): WAL lets readers run beside
// the writer. Other processes (agora import) still meet the busy timeout.
func transaction(ctx context.Context, conn *pop.Connection, fn func(tx *pop.Connection) error) error {
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
