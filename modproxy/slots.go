package modproxy

import (
	"context"
	"fmt"
	"sync/atomic"
)

// How much upstream work runs at once. Fetches, restores and lookups go on
// after the requests that started them give up (see shareFileWork), so
// without a bound a client could start any number of them, one distinct
// version per request, and leave them all running. Zips, which take long
// and are large, have slots of their own, so that a build's .mod and
// .info requests do not queue behind a few slow zips. On PostgreSQL a
// fetch holds one of the locks that Exclusive may hold at once
// (maxExclusive in package models), its version's lock nested in it, and
// fetches beyond those wait for one to end.
const (
	maxZipWork   = 16
	maxSmallWork = 64
	// maxWaiting is how much work of each class may wait for a slot;
	// beyond it, work is refused at once (503) rather than queued.
	maxWaiting = 1024
)

// workSlots bounds the work of one class that runs at once, and the work
// that waits for a slot.
type workSlots struct {
	what    string // "zip fetches", for errors
	run     chan struct{}
	waiting atomic.Int64
	maxWait int64
}

func newWorkSlots(what string, run, wait int) *workSlots {
	return &workSlots{what: what, run: make(chan struct{}, run), maxWait: int64(wait)}
}

// acquire waits for a slot until ctx is done, and returns the function
// that gives it back. When too much work waits already, it fails at once
// with an error wrapping ErrUnavailable.
func (w *workSlots) acquire(ctx context.Context) (release func(), err error) {
	select {
	case w.run <- struct{}{}:
		return w.release, nil
	default:
	}
	if w.waiting.Add(1) > w.maxWait {
		w.waiting.Add(-1)
		return nil, &Error{Kind: ErrUnavailable, Err: fmt.Errorf("too busy: %d %s are under way and %d more wait; try again shortly", cap(w.run), w.what, w.maxWait)}
	}
	defer w.waiting.Add(-1)
	select {
	case w.run <- struct{}{}:
		return w.release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of %d %s under way to end: %w", cap(w.run), w.what, ctx.Err())
	}
}

func (w *workSlots) release() { <-w.run }
