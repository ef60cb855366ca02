//go:build unix

package stopsignal

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestNotifyContext checks that the context is canceled by SIGTERM, naming
// it to contexts derived from it, and that one canceled otherwise names no
// signal.
func TestNotifyContext(t *testing.T) {
	ctx, stop := NotifyContext(context.Background())
	defer stop()
	derived, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-derived.Done():
	case <-time.After(time.Minute):
		t.Fatal("not canceled a minute after SIGTERM")
	}
	if got := Received(derived); got != syscall.SIGTERM {
		t.Errorf("Received = %v; want SIGTERM", got)
	}
	if got := context.Cause(ctx).Error(); got != "terminated signal received" {
		t.Errorf("cause %q; want %q, as signal.NotifyContext's", got, "terminated signal received")
	}

	ctx, stop = NotifyContext(context.Background())
	stop()
	if got := Received(ctx); ctx.Err() == nil || got != nil {
		t.Errorf("stopped: Err %v, Received %v; want canceled, by no signal", ctx.Err(), got)
	}
}
