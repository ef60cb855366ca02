// Package e2e holds Agora's end-to-end tests: they build the agora binary,
// run it as an operator would, on SQLite (the embedded default, with
// DATABASE_URL unset) and on PostgreSQL, and drive it only from outside:
// the binary's own user and token commands, the REST API over HTTP, and the
// real go command with GOPROXY pointing at the server.
//
// A run publishes a few module versions (one with a major-version suffix,
// one with an upper-case path), builds a program that imports them with
// go get and go build, checks that go mod verify agrees with the go.sum
// lines Agora reported when publishing, deletes a version and checks that
// the go command no longer sees it, and finally uses the storage directory
// itself as a GOPROXY=file:// proxy, as an operator would to recover from
// losing the server. Another backs a running server up and restores it as
// the README's Backups section says, in the right order and the wrong one.
// TestSoak puts an upstream that misbehaves at random in front of two
// nodes on PostgreSQL and one on SQLite, sends them requests from many
// clients at once for 20 s, and checks the invariants of a pull-through
// cache during and after; it logs its seed, AGORA_SOAK_SEED replays a
// run's faults, and AGORA_SOAK_DURATION (such as 5m) makes it longer.
//
// The tests run with the rest of the suite and are skipped in -short mode
// (agoraBinary skips them):
//
//	go test ./e2e/                # both databases
//	go test -short ./...          # everything but these tests
//	go test -v -run 'TestPublishFetchDeleteRecover/sqlite3' ./e2e/
//
// They need the go command on PATH and nothing from the network: the go
// command talks only to the server under test, and PostgreSQL is found as
// package agora/models/modelstest describes (the PostgreSQL run is skipped
// when no server answers, unless $CI is set or $AGORA_TEST_POSTGRES is
// "require", when it fails).
package e2e
