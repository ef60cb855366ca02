//go:build !unix

package models

import (
	"context"
	"sync"
)

// lockFile takes the lock named key of the database whose lock files dir
// holds, and returns the function that releases it. It waits while
// another holder has it, until ctx is done. This is Exclusive on SQLite
// (see Registry.Exclusive).
//
// Here there is no flock(2), and the lock keeps out the holders in this
// process only: agora import beside a server on one SQLite data directory
// is not kept apart from it, and should not run while the server fetches,
// publishes, deletes or imports the versions it imports.
func lockFile(ctx context.Context, dir, key string) (unlock func(), err error) {
	v, _ := processLocks.LoadOrStore(dir, &keyLocks{held: make(map[string]chan struct{})})
	return v.(*keyLocks).lock(ctx, key)
}

// processLocks holds the locks of each database in this process, by the
// directory of its lock files.
var processLocks sync.Map

// keyLocks are locks by name.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the lock is released
}

func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	for {
		l.mu.Lock()
		released, busy := l.held[key]
		if !busy {
			released = make(chan struct{})
			l.held[key] = released
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(released)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
