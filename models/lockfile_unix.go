//go:build unix

package models

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile takes the lock named key among the lock files in dir, and
// returns the function that releases it. It waits while another holder,
// in this process or in any other, has it, until ctx is done. This is
// Exclusive on SQLite (see Registry.Exclusive).
//
// Each key has a file of its own, named after a hash of the key, locked
// with flock(2): a lock of the open file, so that two opens of it exclude
// each other even in one process, which the kernel releases when its
// process ends however it ends. A holder removes the file before it lets
// go, so that dir holds only the files of locks held or waited for; a
// waiter that finds it locked the file that was removed, not the one its
// name now names, opens that one and waits again.
func lockFile(ctx context.Context, dir, key string) (unlock func(), err error) {
	name := filepath.Join(dir, lockFileName(key))
	for {
		f, err := openLockFile(dir, name)
		if err != nil {
			return nil, err
		}
		if err := flockWait(ctx, f); err != nil {
			f.Close()
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		now, err := os.Stat(name)
		switch {
		case err == nil && os.SameFile(fi, now):
			return func() {
				os.Remove(name) // while it is held: see above
				f.Close()
			}, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			f.Close()
			return nil, err
		}
		f.Close() // released and removed by its holder before this one locked it
	}
}

// openLockFile opens (creating it if need be) the lock file name in dir,
// and dir, readable by its owner only, as the database beside it.
func openLockFile(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	}
	return f, err
}

// maxLockPoll bounds the wait between two tries of a lock file that
// another holds.
const maxLockPoll = 20 * time.Millisecond

// flockWait locks f, trying again after a while as long as another holds
// it, until ctx is done: a flock that blocks cannot be given up.
func flockWait(ctx context.Context, f *os.File) error {
	var timer *time.Timer
	for delay := time.Millisecond; ; delay = min(2*delay, maxLockPoll) {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		if timer == nil {
			timer = time.NewTimer(delay)
			defer timer.Stop()
		} else {
			timer.Reset(delay)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
