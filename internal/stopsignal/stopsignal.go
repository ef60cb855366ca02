// Package stopsignal turns the signals that ask an agora process to stop,
// SIGTERM (a supervisor's) and SIGINT (Ctrl-C), into the cancellation of a
// context, which names the signal.
//
// SIGINT is left alone in a process started with it ignored: a
// non-interactive shell starts the commands it runs in the background
// (agora serve &) so, in order that a Ctrl-C meant for the script does not
// stop them, and catching SIGINT would turn it back on (see os/signal).
package stopsignal

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// A Signal is the cause (context.Cause) of a context that NotifyContext
// canceled: the signal that arrived.
type Signal struct{ os.Signal }

func (s *Signal) Error() string { return s.Signal.String() + " signal received" }

// interruptIgnored records whether the process started with SIGINT
// ignored, read before anything catches it: once caught, and released
// again, it is ignored again, and signal.Ignored no longer says so.
var interruptIgnored = signal.Ignored(os.Interrupt)

// signals returns the signals that stop the process: SIGTERM, and SIGINT
// unless the process started with it ignored.
func signals() []os.Signal {
	if interruptIgnored {
		return []os.Signal{syscall.SIGTERM}
	}
	return []os.Signal{os.Interrupt, syscall.SIGTERM}
}

// NotifyContext returns a copy of parent that is canceled when SIGTERM or
// SIGINT (unless the process started with it ignored) arrives, with a
// *Signal as its cause. Once one has arrived their
// default handling is back, so that a second ends the process at once, as
// it ends a program that does not catch them. Calling stop releases the
// signals, as signal.NotifyContext's stop does.
func NotifyContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	received := make(chan os.Signal, 1)
	signal.Notify(received, signals()...)
	go func() {
		select {
		case sig := <-received:
			signal.Stop(received)
			cancel(&Signal{sig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(received)
		cancel(nil)
	}
}

// Received returns the signal that canceled ctx, a context that
// NotifyContext returned or one derived from it; nil if none did.
func Received(ctx context.Context) os.Signal {
	if s, ok := errors.AsType[*Signal](context.Cause(ctx)); ok {
		return s.Signal
	}
	return nil
}
