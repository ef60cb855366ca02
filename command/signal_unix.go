//go:build unix

package command

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// exitBySignal ends the process killed by sig, the default action of sig
// restored, as a program that did not catch it ends: a shell goes on
// with the script that ran a command that exited after a Ctrl-C, taking
// it to have been handled, and stops the script only if the command was
// killed by it. It returns the exit status to end with if sig does not
// kill the process (it was ignored when agora started): 128 + its
// number, as a shell reports a command killed by a signal.
func exitBySignal(sig os.Signal) int {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return exitFailure
	}
	signal.Reset(s)
	if syscall.Kill(syscall.Getpid(), s) == nil {
		time.Sleep(100 * time.Millisecond) // for another thread to take it
	}
	return 128 + int(s)
}
