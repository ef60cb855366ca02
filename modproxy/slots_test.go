package modproxy_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"agora/modproxy"
	"agora/storage"
)

// TestUpstreamWorkIsBounded checks that the upstream work under way is
// bounded: fetches go on after their clients give up, so without a bound
// a client could leave any number of them running, one distinct version
// per request. Beyond the zips that may run, zips wait; beyond those that
// may wait, they are refused at once as unavailable (503), and fetched
// once there is room. A build's .mod requests do not queue behind zips.
func TestUpstreamWorkIsBounded(t *testing.T) {
	up := newFakeUpstream()
	const path = "example.com/dep"
	var versions []string
	for i := range 6 {
		v := fmt.Sprintf("v1.0.%d", i)
		up.add(t, path, v, v)
		versions = append(versions, v)
	}
	var running, peak atomic.Int64
	arrived, release := make(chan struct{}, len(versions)), make(chan struct{})
	up.gate = func(kind string) error {
		if kind == "zip" {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			arrived <- struct{}{}
			<-release
			running.Add(-1)
		}
		return nil
	}
	r := cachingRegistry(t, up, nil)
	modproxy.SetWorkSlots(r.Service, 2, 2, 2)

	// Four distinct zips: two are fetched, two wait.
	var done []<-chan error
	for _, v := range versions[:4] {
		done = append(done, r.openInBackground(path, v, storage.Zip))
	}
	<-arrived
	<-arrived
	for deadline := time.Now().Add(10 * time.Second); modproxy.ZipWorkWaiting(r.Service) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("zip fetches waiting for a slot: %d; want 2", modproxy.ZipWorkWaiting(r.Service))
		}
	}

	// A fifth is refused at once.
	if _, _, err := r.Open(context.Background(), path, versions[4], storage.Zip); !errors.Is(err, modproxy.ErrUnavailable) {
		t.Errorf("a zip fetch with every slot taken and enough waiting: %v; want ErrUnavailable", err)
	}
	// A .mod does not wait for the zips.
	if got := r.read(t, path, versions[5], storage.Mod); string(got) != goMod(path) {
		t.Errorf(".mod while zips fill their slots = %q", got)
	}

	close(release)
	for _, d := range done {
		if err := <-d; err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("zip fetches at the upstream at once: %d; want 2", p)
	}
	// There is room again.
	if got := r.read(t, path, versions[4], storage.Zip); len(got) == 0 {
		t.Error("the refused zip, fetched again: empty")
	}
	if n := up.count("zip"); n != 5 {
		t.Errorf("upstream zip requests: %d; want 5 (the refused one did not reach it)", n)
	}
}

// TestListServedWhenTooBusyToAsk checks that a module's list, when every
// slot for upstream work is taken, is served from what is stored, as when
// the upstream fails, instead of failing.
func TestListServedWhenTooBusyToAsk(t *testing.T) {
	up := newFakeUpstream()
	const path, other = "example.com/dep", "example.com/other"
	up.add(t, path, "v1.0.0", "a")
	up.add(t, path, "v1.1.0", "b")
	up.add(t, other, "v0.1.0", "c")
	r := cachingRegistry(t, up, nil)
	r.read(t, path, "v1.0.0", storage.Mod) // stored

	held, release := make(chan struct{}), make(chan struct{})
	up.gate = func(kind string) error {
		if kind == "mod" {
			close(held)
			<-release
		}
		return nil
	}
	modproxy.SetWorkSlots(r.Service, 1, 1, 0)
	done := r.openInBackground(other, "v0.1.0", storage.Mod)
	<-held

	list, err := r.List(context.Background(), path)
	if err != nil || len(list) != 1 || list[0] != "v1.0.0" {
		t.Errorf("list with no slot free = %q, %v; want the stored [v1.0.0]", list, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
}
