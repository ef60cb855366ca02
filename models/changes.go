package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Several Agora nodes (and agora import) may share one PostgreSQL
// database, and each node keeps version records, small files and lists in
// memory. Every transaction that changes a version's record announces it
// on versionsChannel with NOTIFY, which PostgreSQL delivers when, and only
// if, the transaction commits; a ChangeListener on each node receives the
// announcements of the others and has them dropped from memory. A node
// drops what it changes itself, so it skips its own announcements, which
// carry its Registry's origin. SQLite has no NOTIFY, and nothing is
// announced there, though agora import may run beside the server: the
// README says what a server then serves of what the import stored.
const versionsChannel = "agora_versions"

// announce tells the other processes sharing the database that
// path@version's record changed, once the transaction commits. On SQLite
// it does nothing.
func (t registryTx) announce(path, version string) error {
	if t.c.Dialect.Name() != "postgres" {
		return nil
	}
	// Module paths and versions have no spaces, and the columns bound
	// them far below NOTIFY's 8000 bytes.
	payload := t.origin + " " + path + " " + version
	if err := t.c.RawQuery("SELECT pg_notify(?, ?)", versionsChannel, payload).Exec(); err != nil {
		return fmt.Errorf("models: announcing the change of %s@%s: %w", path, version, err)
	}
	return nil
}

// ChangeListener receives the changes of version records that other
// processes sharing a PostgreSQL database commit.
type ChangeListener struct {
	l      *pq.Listener
	dialer *listenDialer
	log    *slog.Logger
	origin string // of the Registry whose own changes are skipped
}

// listenDialer makes the listener's connections, and remembers the last
// one, which is the one in use: the listener makes one at a time. pq
// offers no way to drop a connection that has stopped answering and make
// another, short of closing it under the listener, which then reconnects.
type listenDialer struct {
	net.Dialer
	mu   sync.Mutex
	conn net.Conn
}

// DialContext dials a connection for the listener.
func (d *listenDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err == nil {
		d.mu.Lock()
		d.conn = c
		d.mu.Unlock()
	}
	return c, err
}

// drop closes the connection in use, if any.
func (d *listenDialer) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// Listener reconnection: how soon a lost connection is made again
// (doubling up to the maximum while it fails).
const (
	listenMinReconnect = 100 * time.Millisecond
	listenMaxReconnect = 10 * time.Second
)

// The listener's connection is checked every listenPing, so that one that
// died silently or stopped answering is noticed: one that has not answered
// a check within listenPingTimeout is dropped and made again. Tests
// shorten them.
var (
	listenPing        = 30 * time.Second
	listenPingTimeout = 10 * time.Second
)

// ListenChanges connects to the PostgreSQL database at url (the URL of r's
// pool) and listens for changes of version records made by others than r.
// It returns once the database has acknowledged, so that no change
// committed after it returns goes unheard, or an error if that does not
// happen before ctx is done.
func (r *Registry) ListenChanges(ctx context.Context, url string, log *slog.Logger) (*ChangeListener, error) {
	c := &ChangeListener{dialer: &listenDialer{}, log: log, origin: r.origin}
	c.l = pq.NewDialListener(pqDialer(c.dialer.DialContext), url, listenMinReconnect, listenMaxReconnect, c.event)
	listening := make(chan error, 1)
	go func() { listening <- c.l.Listen(versionsChannel) }()
	select {
	case err := <-listening:
		if err != nil {
			c.l.Close()
			return nil, fmt.Errorf("database: listening for changes: %w", err)
		}
		return c, nil
	case <-ctx.Done():
		c.l.Close() // Listen returns when the listener closes
		<-listening
		return nil, fmt.Errorf("database: listening for changes: %w", ctx.Err())
	}
}

// event logs the listener's connection being lost and made again.
func (c *ChangeListener) event(ev pq.ListenerEventType, err error) {
	switch ev {
	case pq.ListenerEventDisconnected:
		c.log.Warn("lost the database connection that announces changes; what memory holds is dropped once it is back", "err", err)
	case pq.ListenerEventConnectionAttemptFailed:
		c.log.Warn("reconnecting to the database to hear of changes", "err", err)
	case pq.ListenerEventReconnected:
		c.log.Info("reconnected to the database to hear of changes")
	}
}

// Run calls changed with the module path and version of every record that
// another process changes, and lost whenever changes may have gone
// unheard: after the connection was lost and made again. It returns when
// ctx is done, and closes the listener.
func (c *ChangeListener) Run(ctx context.Context, changed func(path, version string), lost func()) {
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		c.ping(ctx)
	}()
	defer c.l.Close()
	defer func() {
		// A ping holds the listener, which Close waits for, and its
		// reply may come after notifications that must be read first.
		for {
			select {
			case <-pinged:
				return
			case <-c.l.Notify:
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-c.l.Notify:
			if n == nil { // reconnected
				lost()
				continue
			}
			from, path, version, err := parseAnnouncement(n.Extra)
			switch {
			case err != nil:
				c.log.Error("a change announced on the database cannot be read; dropping what memory holds", "payload", n.Extra, "err", err)
				lost()
			case from != c.origin:
				changed(path, version)
			}
		}
	}
}

// ping checks the listener's connection every listenPing until ctx is
// done. A failed ping makes the listener reconnect, which is followed by a
// nil notification; so does one not answered within listenPingTimeout, whose
// connection is dropped: without it, a connection left hanging (a database
// that failed over to another host, a network path or proxy that stopped
// passing anything) would hold the ping, and keep the node deaf to changes,
// for as long as the kernel keeps the connection, or for ever. It runs
// apart from Run: the reply to a ping comes after the notifications sent
// before it, which only Run reads, and a burst of them larger than the
// listener's buffers would otherwise keep both waiting for ever.
func (c *ChangeListener) ping(ctx context.Context) {
	tick := time.NewTicker(listenPing)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() { answered <- c.l.Ping() }()
		timeout := time.NewTimer(listenPingTimeout)
		select {
		case err := <-answered:
			if err != nil && ctx.Err() == nil {
				c.log.Warn("the database connection that announces changes does not answer", "err", err)
			}
		case <-timeout.C:
			c.log.Warn("the database connection that announces changes has not answered for " + listenPingTimeout.String() + "; dropping it")
			c.dialer.drop()
			<-answered
		case <-ctx.Done():
			c.dialer.drop()
			<-answered
			return
		}
		timeout.Stop()
	}
}

// parseAnnouncement splits the payload that announce sends.
func parseAnnouncement(payload string) (from, path, version string, err error) {
	f := strings.Fields(payload)
	if len(f) != 3 {
		return "", "", "", errors.New("want a process, a module path and a version")
	}
	return f[0], f[1], f[2], nil
}
