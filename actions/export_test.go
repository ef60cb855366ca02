package actions

import (
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
