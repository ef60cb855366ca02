package running

import (
	"context"
	"slices"
	"testing"
)

// TestSet checks that Wait waits for work started while it waits, that
// Keys names what runs once per key, and that a Wait whose context ends
// reports it.
func TestSet(t *testing.T) {
	var s Set[string]
	if !s.Wait(context.Background()) {
		t.Fatal("Wait with nothing running")
	}
	s.Start("a")
	s.Start("a")
	s.Start("b")
	if got := slices.Sorted(slices.Values(s.Keys())); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Keys = %q; want a and b", got)
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if s.Wait(expired) {
		t.Error("Wait with work running and its context done reported idle")
	}
	waited := make(chan bool)
	go func() { waited <- s.Wait(context.Background()) }()
	s.Done("a")
	s.Done("b")
	s.Start("c") // while Wait waits: "a" runs still
	s.Done("a")
	s.Done("c")
	if !<-waited {
		t.Error("Wait did not report idle")
	}
	if got := s.Keys(); len(got) != 0 {
		t.Errorf("Keys once idle = %q", got)
	}
}
