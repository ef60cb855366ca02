// Package running counts work in progress, by what it is, so that a
// server shutting down can wait for it and name what it cut off.
package running

import (
	"context"
	"sync"
)

// Set counts the work in progress by key. Unlike a sync.WaitGroup, work
// may start while the Set is waited for. Its zero value is empty and
// ready to use; it is safe for concurrent use.
type Set[K comparable] struct {
	mu    sync.Mutex
	n     map[K]int
	total int
	idle  chan struct{} // made by Wait while work runs; closed when none is left
}

// Start counts one piece of work k.
func (s *Set[K]) Start(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = make(map[K]int)
	}
	s.n[k]++
	s.total++
}

// Done uncounts one piece of work k, which Start counted.
func (s *Set[K]) Done(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[k]--; s.n[k] <= 0 {
		delete(s.n, k)
	}
	s.total--
	if s.total == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// Wait waits until no work is in progress, and reports whether that
// happened before ctx was done.
func (s *Set[K]) Wait(ctx context.Context) bool {
	for {
		s.mu.Lock()
		if s.total == 0 {
			s.mu.Unlock()
			return true
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle: // and perhaps more started meanwhile
		case <-ctx.Done():
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.total == 0
		}
	}
}

// Keys returns what is in progress, each once, in no order.
func (s *Set[K]) Keys() []K {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]K, 0, len(s.n))
	for k := range s.n {
		keys = append(keys, k)
	}
	return keys
}
