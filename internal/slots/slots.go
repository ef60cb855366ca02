// Package slots bounds work of one class that runs at once, and the work
// that may wait for it: upstream fetches that go on after the requests that
// started them give up, so that no client can leave any number of them
// running.
package slots

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// ErrFull is what Acquire fails with at once when as much work waits as
// may.
var ErrFull = errors.New("too busy")

// Slots holds the slots of one class of work.
type Slots struct {
	what    string // "zip fetches", for errors
	run     chan struct{}
	waiting atomic.Int64
	maxWait int64
}

// New returns Slots for run pieces of what at once, and wait more waiting.
func New(what string, run, wait int) *Slots {
	return &Slots{what: what, run: make(chan struct{}, run), maxWait: int64(wait)}
}

// Acquire waits for a slot until ctx is done, and returns the function
// that gives it back. When as much work waits as may, it fails at once
// with an error wrapping ErrFull; when ctx ends first, with one wrapping
// ctx's error.
func (s *Slots) Acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.run <- struct{}{}:
		return s.release, nil
	default:
	}
	if s.waiting.Add(1) > s.maxWait {
		s.waiting.Add(-1)
		return nil, fmt.Errorf("%w: %d %s are under way and %d more wait; try again shortly", ErrFull, cap(s.run), s.what, s.maxWait)
	}
	defer s.waiting.Add(-1)
	select {
	case s.run <- struct{}{}:
		return s.release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of %d %s under way to end: %w", cap(s.run), s.what, ctx.Err())
	}
}

// Waiting returns how much work waits for a slot.
func (s *Slots) Waiting() int { return int(s.waiting.Load()) }

func (s *Slots) release() { <-s.run }
