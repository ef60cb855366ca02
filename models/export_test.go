package models

import (
	"testing"
	"time"
)

// SetListenPing makes listenPing d until t ends. Call it before the test
// starts listening, so that the listener is stopped before it is restored.
func SetListenPing(t *testing.T, d time.Duration) {
	old := listenPing
	listenPing = d
	t.Cleanup(func() { listenPing = old })
}
