package modproxy

import (
	"context"
	"errors"

	"agora/internal/slots"
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

// acquire takes one of the slots of work for a caller of ctx (see
// slots.Slots.Acquire): refused at once as unavailable (503) when as much
// work waits as may.
func acquire(ctx context.Context, work *slots.Slots) (release func(), err error) {
	release, err = work.Acquire(ctx)
	if errors.Is(err, slots.ErrFull) {
		return nil, &Error{Kind: ErrUnavailable, Err: err}
	}
	return release, err
}
