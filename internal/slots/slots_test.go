package slots

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSlots checks that one of run runs, one waits and a third is refused
// at once, that the one waiting gets the slot once it is given back, and
// that a wait ends with its context.
func TestSlots(t *testing.T) {
	s := New("fetches", 1, 1)
	release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := s.Acquire(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	for s.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Acquire(context.Background()); !errors.Is(err, ErrFull) {
		t.Errorf("a third, one running and one waiting: %v; want ErrFull", err)
	}
	release()
	if err := <-got; err != nil {
		t.Errorf("the one waiting, once the slot was given back: %v", err)
	}

	release, _ = s.Acquire(context.Background())
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrFull) {
		t.Errorf("a wait whose context ends: %v; want the context's error", err)
	}
}
