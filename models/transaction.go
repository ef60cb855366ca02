package models

import (
	"context"
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
	return conn.WithContext(ctx).Transaction(fn)
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
