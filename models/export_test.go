package models

import (
	"testing"
	"time"
)

// SetListenPing makes listenPing every and listenPingTimeout timeout until
// t ends. Call it before the test starts listening, so that the listener
// is stopped before they are restored.
func SetListenPing(t *testing.T, every, timeout time.Duration) {
	oldEvery, oldTimeout := listenPing, listenPingTimeout
	listenPing, listenPingTimeout = every, timeout
	t.Cleanup(func() { listenPing, listenPingTimeout = oldEvery, oldTimeout })
}

// MaxExclusive is how many locks Exclusive may hold at once on PostgreSQL.
const MaxExclusive = maxExclusive
