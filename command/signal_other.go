//go:build !unix

package command

import "os"

// exitBySignal returns the exit status of a command that sig stopped:
// elsewhere than on unix, 1, as of any failure.
func exitBySignal(sig os.Signal) int { return exitFailure }
