// Package stopsignal turns the signals that ask an agora process to stop,
// SIGTERM (a supervisor's) and SIGINT (Ctrl-C), into the cancellation of a
// context, which names the signal.
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

// NotifyContext returns a copy of parent that is canceled when SIGTERM or
// SIGINT arrives, with a *Signal as its cause. Once one has arrived their
// default handling is back, so that a second ends the process at once, as
// it ends a program that does not catch them. Calling stop releases the
// signals, as signal.NotifyContext's stop does.
func NotifyContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-signals:
			signal.Stop(signals)
			cancel(&Signal{sig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
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
