package actions

import (
	"sync/atomic"
	"testing"
	"time"
)

// SetBodyStall makes bodyStall d until t ends. Call it before the test
// starts a server, so that the server is stopped before it is restored.
func SetBodyStall(t *testing.T, d time.Duration) {
	old := bodyStall
	bodyStall = d
	t.Cleanup(func() { bodyStall = old })
}

// CountStorageProbes counts the writes of /readyz to storage until t
// ends, and returns a function that reports how many there were so far.
// Call it before the test starts a server.
func CountStorageProbes(t *testing.T) func() int64 {
	var n atomic.Int64
	old := writeProbe
	writeProbe = func(dir string) error {
		n.Add(1)
		return old(dir)
	}
	t.Cleanup(func() { writeProbe = old })
	return n.Load
}

// SetReadyReuse makes readyReuse d until t ends. Call it before the test
// starts a server.
func SetReadyReuse(t *testing.T, d time.Duration) {
	old := readyReuse
	readyReuse = d
	t.Cleanup(func() { readyReuse = old })
}
