package upstream

import (
	"context"
	"net/http"
	"testing"
	"time"

	"agora/internal/testutil"
)

func TestViaMarksRequests(t *testing.T) {
	name := NewViaName()
	if len(name) != len("agora-")+16 || name == NewViaName() {
		t.Fatalf("NewViaName() = %q; want agora- and 16 random hex digits", name)
	}
	var got []string
	p := newFakeProxy(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Values("Via")
		serveFiles(modFiles)(w, r)
	})
	c := newTestClient(t, p.URL, func(o *Options) { o.Transport = WithVia(NewTransport(*o), name) })
	if _, _, err := c.Mod(context.Background(), modPath, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "1.1 "+name {
		t.Errorf("Via = %q; want [\"1.1 %s\"]", got, name)
	}
}

func TestCameBack(t *testing.T) {
	const name = "agora-0123456789abcdef"
	tests := []struct {
		via  []string
		want bool
	}{
		{nil, false},
		{[]string{"1.1 " + name}, true},
		{[]string{"1.1 agora-fedcba9876543210"}, false}, // another Agora: a chain, not a loop
		{[]string{"1.1 proxy.corp.example, 1.1 " + name + " (Agora)"}, true},
		{[]string{"1.0 fred", "HTTP/1.1 " + name}, true},
		{[]string{"1.1 " + name + "0"}, false},
		{[]string{name}, false}, // no protocol: not a hop
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.via {
			h.Add("Via", v)
		}
		if got := CameBack(h, name); got != tt.want {
			t.Errorf("CameBack(Via: %q) = %v; want %v", tt.via, got, tt.want)
		}
	}
}

// TestLoopNotRetried checks that a 508 Loop Detected, which an Agora
// answers to its own request come back, is not retried and counts towards
// the proxy being down: the set-up is wrong, and stays so.
func TestLoopNotRetried(t *testing.T) {
	p := newFakeProxy(t, serveStatus(http.StatusLoopDetected))
	clock := testutil.NewClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	c := newTestClient(t, p.URL, func(o *Options) { o.now = clock.Now })
	for range downAfter {
		if _, _, err := c.Mod(context.Background(), modPath, "v1.0.0"); err == nil {
			t.Fatal("Mod from a proxy answering 508: want an error")
		}
	}
	if n := p.count(); n != downAfter {
		t.Errorf("%d requests; want %d, none retried", n, downAfter)
	}
	if _, _, err := c.Mod(context.Background(), modPath, "v1.0.0"); p.count() != downAfter || err == nil {
		t.Errorf("after %d loops: %v, %d requests; want the proxy down, not asked", downAfter, err, p.count())
	}
}
