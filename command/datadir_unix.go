//go:build unix

package command

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes the data directory's lock, $AGORA_DATA_DIR/lock, for
// the life of a server: an exclusive flock, which the kernel releases when
// the process ends however it ends. It fails at once, naming the holder's
// pid, when another agora serves from dir, or is still shutting down
// there: a server restarted by hand, not by a supervisor that waits for
// the old process to exit, is told to wait for it. It returns the function
// that releases the lock.
func lockDataDir(dir string) (unlock func(), err error) {
	name := filepath.Join(dir, "lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder := "another agora"
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder += " (pid " + strconv.Itoa(pid) + ")"
			}
		}
		f.Close()
		return nil, fmt.Errorf("AGORA_DATA_DIR %s is in use by %s: if it is shutting down, start this one once it has exited; each server needs a data directory of its own", dir, holder)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("AGORA_DATA_DIR: locking %s: %w", name, err)
	}
	// The pid is for the message above; the lock is the flock, not the file.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
