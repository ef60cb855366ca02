package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// postgresDriver is the name Agora's PostgreSQL connections are opened
// under: lib/pq, made to give up a query whose context ends even when the
// server does not answer.
//
// lib/pq answers the end of a query's context by asking the server, over a
// new connection, to cancel the query, and then goes on waiting for the
// query's answer, which it discards with the connection. A server that has
// stopped answering (hung, or behind a network partition, where TCP gives
// up only after some 15 minutes) never sends one, and every request that
// used the database waited for it, whether or not its client had gone,
// holding a pooled connection. Nor does lib/pq watch the context while it
// makes a connection past the TCP dial: its handshake with a server that
// accepts connections and never answers waited as long, unless the URL sets
// connect_timeout.
//
// The second dial through a connection's dialer is that cancel request: it
// is the only one lib/pq makes, and only once it has marked the connection
// bad. So the dialer of each connection ends the connection's own socket
// then, and the query fails at once. The cancel request is still sent, so
// that a server that is merely slow stops the query.
const postgresDriver = "agora-postgres"

var postgresOnce sync.Once

// registerPostgres registers postgresDriver, and tells sqlx, which binds
// Pop's named parameters, that it takes PostgreSQL's $1 placeholders.
func registerPostgres() {
	postgresOnce.Do(func() {
		if !slices.Contains(sql.Drivers(), postgresDriver) {
			sql.Register(postgresDriver, postgresConnector{})
		}
		sqlx.BindDriver(postgresDriver, sqlx.DOLLAR)
	})
}

// postgresConnector is both the driver and, holding a DSN, the connector
// database/sql opens connections with.
type postgresConnector struct{ dsn string }

// Open implements driver.Driver.
func (postgresConnector) Open(dsn string) (driver.Conn, error) {
	return postgresConnector{dsn}.Connect(context.Background())
}

// OpenConnector implements driver.DriverContext.
func (postgresConnector) OpenConnector(dsn string) (driver.Connector, error) {
	if _, err := pq.NewConnector(dsn); err != nil {
		return nil, err
	}
	return postgresConnector{dsn}, nil
}

// Driver implements driver.Connector.
func (c postgresConnector) Driver() driver.Driver { return c }

// Connect implements driver.Connector: it makes one lib/pq connection
// through a dialer of its own, and gives up the handshake when ctx ends.
func (c postgresConnector) Connect(ctx context.Context) (driver.Conn, error) {
	pc, err := pq.NewConnector(c.dsn)
	if err != nil {
		return nil, err
	}
	d := &postgresDialer{}
	pc.Dialer(pqDialer(d.DialContext))
	stop := context.AfterFunc(ctx, d.abandon)
	conn, err := pc.Connect(ctx)
	if !stop() {
		// The handshake was abandoned: its error, which says so, is that
		// of a database out of reach (see Unavailable), and the
		// context's end the reason.
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("connecting: %w", ctx.Err())
		}
		return nil, fmt.Errorf("connecting: %w: %w", ctx.Err(), err)
	}
	if err != nil {
		return nil, err
	}
	pc2, ok := conn.(pqConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("lib/pq's connection is a %T, which lacks methods database/sql uses", conn)
	}
	d.connected()
	return postgresConn{pc2, d}, nil
}

// pqConn is what database/sql uses of a lib/pq connection.
type pqConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

// postgresConn is a lib/pq connection whose BEGIN gives up when its
// context ends too: lib/pq watches a transaction's context only once the
// server has answered it.
//
// A statement whose context ends fails with an error wrapping the
// context's, as SQLite's driver does: lib/pq's own is the failure to read
// the socket that its dialer abandoned, a connection error, which alone
// would read as the database out of reach (a 503, and an error in the log)
// when the client of a request merely went away.
type postgresConn struct {
	pqConn
	dialer *postgresDialer
}

// QueryContext implements driver.QueryerContext.
func (c postgresConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.pqConn.QueryContext(ctx, query, args)
	return rows, ended(ctx, err)
}

// ExecContext implements driver.ExecerContext.
func (c postgresConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.pqConn.ExecContext(ctx, query, args)
	return res, ended(ctx, err)
}

// PrepareContext implements driver.ConnPrepareContext.
func (c postgresConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	stmt, err := c.pqConn.PrepareContext(ctx, query)
	return stmt, ended(ctx, err)
}

// Ping implements driver.Pinger.
func (c postgresConn) Ping(ctx context.Context) error {
	return ended(ctx, c.pqConn.Ping(ctx))
}

// BeginTx implements driver.ConnBeginTx.
func (c postgresConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	stop := context.AfterFunc(ctx, c.dialer.abandon)
	tx, err := c.pqConn.BeginTx(ctx, opts)
	if !stop() && err == nil {
		tx.Rollback() // fails at once: the socket is abandoned
		return nil, fmt.Errorf("beginning a transaction: %w", ctx.Err())
	}
	return tx, err
}

// postgresDialer dials the socket of one lib/pq connection (several in
// turn while it connects, for a URL that names several hosts), and then any
// cancel request for it.
type postgresDialer struct {
	net.Dialer

	mu        sync.Mutex
	socket    *postgresSocket // the last one dialed for the connection
	done      bool            // the connection is made: dials are cancel requests
	abandoned bool            // the handshake's context ended
}

// pqDialer is a dial function as lib/pq takes one: a pq.Dialer and
// pq.DialerContext.
type pqDialer func(ctx context.Context, network, address string) (net.Conn, error)

// Dial implements pq.Dialer.
func (d pqDialer) Dial(network, address string) (net.Conn, error) {
	return d(context.Background(), network, address)
}

// DialTimeout implements pq.Dialer.
func (d pqDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d(ctx, network, address)
}

// DialContext implements pq.DialerContext.
func (d pqDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d(ctx, network, address)
}

// DialContext dials a socket for the connection, or its cancel request.
func (d *postgresDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	cancelRequest := d.done
	d.mu.Unlock()
	if cancelRequest {
		d.abandon()
		c, err := d.Dialer.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		// lib/pq reads the cancel request's connection until the server
		// closes it, which a hung one never does; its context has a
		// deadline.
		if deadline, ok := ctx.Deadline(); ok {
			c.SetDeadline(deadline)
		}
		return c, nil
	}
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	s := &postgresSocket{Conn: c}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.socket = s
	if d.abandoned {
		s.abandon()
	}
	return s, nil
}

// connected records that the connection is made.
func (d *postgresDialer) connected() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
}

// abandon ends the connection's socket: lib/pq no longer waits for the
// server.
func (d *postgresDialer) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.abandoned = true
	if d.socket != nil {
		d.socket.abandon()
	}
}

// errAbandoned is what reads and writes of an abandoned socket fail with.
var errAbandoned = errors.New("the database did not answer before the query's context ended")

// postgresSocket is a connection's socket, which its dialer abandons.
type postgresSocket struct {
	net.Conn

	mu        sync.Mutex
	abandoned bool
}

// abandon makes every read and write of s, those waiting included, fail
// now. The socket is left for lib/pq to close with the connection.
func (s *postgresSocket) abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandoned = true
	s.Conn.SetDeadline(time.Unix(1, 0))
}

func (s *postgresSocket) isAbandoned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandoned
}

// fail returns err, or errAbandoned in its place once s is abandoned.
func (s *postgresSocket) fail(op string, err error) error {
	if err == nil || !s.isAbandoned() {
		return err
	}
	return s.abandonedError(op)
}

func (s *postgresSocket) abandonedError(op string) error {
	return &net.OpError{Op: op, Net: s.LocalAddr().Network(), Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: errAbandoned}
}

func (s *postgresSocket) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	return n, s.fail("read", err)
}

func (s *postgresSocket) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	return n, s.fail("write", err)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline keep an abandoned
// socket's deadline: lib/pq clears the handshake's.
func (s *postgresSocket) SetDeadline(t time.Time) error {
	return s.setDeadline(t, s.Conn.SetDeadline)
}

func (s *postgresSocket) SetReadDeadline(t time.Time) error {
	return s.setDeadline(t, s.Conn.SetReadDeadline)
}

func (s *postgresSocket) SetWriteDeadline(t time.Time) error {
	return s.setDeadline(t, s.Conn.SetWriteDeadline)
}

func (s *postgresSocket) setDeadline(t time.Time, set func(time.Time) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abandoned {
		return s.abandonedError("set deadline")
	}
	return set(t)
}
