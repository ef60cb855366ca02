package models

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobuffalo/pop/v6"

	"agora/modproxy"
	"agora/storage"
)

// Registry is the metadata store of the module registry on Pop. It
// implements modproxy.Metadata.
type Registry struct {
	conn *pop.Connection
	// exclusive bounds the transactions Exclusive holds open, each on a
	// connection of its own, so that the fns they run always find a free
	// connection in the pool.
	exclusive chan struct{}
	// origin tells the changes this Registry announces from those of
	// others (see ListenChanges).
	origin string
	// lockDir holds the lock files of Exclusive on SQLite: the database
	// file's name with ".locks" after it.
	lockDir string
}

// postgresPool is the size of the PostgreSQL connection pool, and
// maxExclusive how many of its connections Exclusive may hold at once.
const (
	postgresPool = 40
	maxExclusive = 24
)

var _ modproxy.Metadata = (*Registry)(nil)

// NewRegistry returns a Registry on conn.
func NewRegistry(conn *pop.Connection) *Registry {
	r := &Registry{conn: conn, exclusive: make(chan struct{}, maxExclusive), origin: rand.Text()[:12]}
	if conn.Dialect.Name() != "postgres" {
		r.lockDir = conn.Dialect.Details().Database + ".locks"
	}
	return r
}

// versionRow is a row of versions joined with its module's path.
type versionRow struct {
	ID           int64      `db:"id"`
	Path         string     `db:"path"`
	Version      string     `db:"version"`
	VersionTime  time.Time  `db:"version_time"`
	Size         int64      `db:"size"`
	ZipHash      string     `db:"zip_hash"`
	ModHash      string     `db:"mod_hash"`
	Source       string     `db:"source"`
	PublishedBy  string     `db:"published_by"`
	PublishedAt  time.Time  `db:"published_at"`
	DeletedAt    *time.Time `db:"deleted_at"`
	DeletedBy    string     `db:"deleted_by"`
	DeleteReason string     `db:"delete_reason"`
	Blocked      bool       `db:"blocked"`
}

const selectVersions = `SELECT v.id, m.path, v.version, v.version_time, v.size, v.zip_hash, v.mod_hash,
	v.source, v.published_by, v.published_at, v.deleted_at, v.deleted_by, v.delete_reason, v.blocked
	FROM versions v JOIN modules m ON m.id = v.module_id `

func (r *versionRow) domain() *modproxy.Version {
	v := &modproxy.Version{
		Path:         r.Path,
		Version:      r.Version,
		Time:         r.VersionTime.UTC(),
		Size:         r.Size,
		ZipHash:      r.ZipHash,
		ModHash:      r.ModHash,
		Source:       r.Source,
		PublishedBy:  r.PublishedBy,
		PublishedAt:  r.PublishedAt.UTC(),
		DeletedBy:    r.DeletedBy,
		DeleteReason: r.DeleteReason,
		Blocked:      r.Blocked,
	}
	if r.DeletedAt != nil {
		v.DeletedAt = r.DeletedAt.UTC()
	}
	return v
}

// dbTime returns t as the database keeps it: in UTC, to the microsecond.
// PostgreSQL keeps microseconds and rounds the rest, SQLite keeps
// nanoseconds; cutting them off before either sees a time makes both keep
// the same one, and never a later one (05.999999999 would round to 06, a
// second after the .info that gave it). A query's bounds are cut off
// alike, so that the time a record is shown with finds it.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// notFound returns the modproxy error for a missing version record.
func notFound(path, version string) error {
	return &modproxy.Error{Kind: modproxy.ErrNotFound, Path: path, Version: version, Err: fmt.Errorf("unknown version")}
}

// queryVersion is Version on any connection or transaction; lock ends the
// query (see registryTx.lock).
func queryVersion(c *pop.Connection, path, version, lock string) (*modproxy.Version, error) {
	var rows []versionRow
	if err := c.RawQuery(selectVersions+"WHERE m.path = ? AND v.version = ?"+lock, path, version).All(&rows); err != nil {
		return nil, fmt.Errorf("models: version %s@%s: %w", path, version, err)
	}
	if len(rows) == 0 {
		return nil, notFound(path, version)
	}
	return rows[0].domain(), nil
}

// queryVersions is Versions on any connection or transaction; lock ends
// the query (see registryTx.lock). The rows come in the order of their ids,
// so that transactions that lock several lock them in one order and never
// deadlock on each other.
func queryVersions(c *pop.Connection, path, lock string) ([]*modproxy.Version, error) {
	var rows []versionRow
	if err := c.RawQuery(selectVersions+"WHERE m.path = ? ORDER BY v.id"+lock, path).All(&rows); err != nil {
		return nil, fmt.Errorf("models: versions of %s: %w", path, err)
	}
	vs := make([]*modproxy.Version, len(rows))
	for i := range rows {
		vs[i] = rows[i].domain()
	}
	return vs, nil
}

// Version implements modproxy.Metadata.
func (r *Registry) Version(ctx context.Context, path, version string) (*modproxy.Version, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return queryVersion(r.conn.WithContext(ctx), path, version, "")
}

// Versions implements modproxy.Metadata.
func (r *Registry) Versions(ctx context.Context, path string) ([]*modproxy.Version, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return queryVersions(r.conn.WithContext(ctx), path, "")
}

// Update implements modproxy.Metadata.
func (r *Registry) Update(ctx context.Context, fn func(tx modproxy.MetadataTx) error) error {
	return transaction(ctx, r.conn, func(tx *pop.Connection) error {
		return fn(registryTx{tx, r.origin})
	})
}

// registryTx implements modproxy.MetadataTx in a Pop transaction of the
// Registry whose origin it carries.
type registryTx struct {
	c      *pop.Connection
	origin string
}

func (t registryTx) Version(path, version string) (*modproxy.Version, error) {
	return queryVersion(t.c, path, version, t.lock())
}

func (t registryTx) Versions(path string) ([]*modproxy.Version, error) {
	return queryVersions(t.c, path, t.lock())
}

// lock returns the clause that makes a transaction's reads of versions lock
// the rows they read until it ends. The registry reads a record, decides,
// and writes (records a zip hash only where none is, fills only a live
// record), which is atomic only if no other transaction can change the
// record in between. SQLite lets one transaction write at a time, and each
// begins IMMEDIATE, taking the write lock before its first read; a
// PostgreSQL transaction (READ COMMITTED) reads without waiting, so two
// nodes could each see no zip hash and each record their own. With FOR
// UPDATE, the second waits for the first to end and then reads what it
// committed.
func (t registryTx) lock() string {
	if t.c.Dialect.Name() == "postgres" {
		return " FOR UPDATE OF v"
	}
	return ""
}

// moduleID returns the id of path's module row, creating the row if needed
// and marking the module updated.
func (t registryTx) moduleID(path string, now time.Time) (int64, error) {
	var id int64
	now = dbTime(now)
	err := t.c.RawQuery(`INSERT INTO modules (path, created_at, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (path) DO UPDATE SET updated_at = excluded.updated_at RETURNING id`, path, now, now).First(&id)
	if err != nil {
		return 0, fmt.Errorf("models: module %s: %w", path, err)
	}
	return id, nil
}

func (t registryTx) InsertVersion(v *modproxy.Version) error {
	id, err := t.moduleID(v.Path, v.PublishedAt)
	if err != nil {
		return err
	}
	n, err := t.c.RawQuery(`INSERT INTO versions (module_id, version, version_time, size, zip_hash, mod_hash,
		source, published_by, published_at, deleted_by, delete_reason, blocked)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', ?)
		ON CONFLICT (module_id, version) DO NOTHING`,
		id, v.Version, dbTime(v.Time), v.Size, v.ZipHash, v.ModHash, v.Source, v.PublishedBy, dbTime(v.PublishedAt), false).ExecWithCount()
	if err != nil {
		return fmt.Errorf("models: inserting %s@%s: %w", v.Path, v.Version, err)
	}
	if n == 0 {
		return fmt.Errorf("models: %s@%s: %w", v.Path, v.Version, modproxy.ErrExists)
	}
	return t.announce(v.Path, v.Version)
}

func (t registryTx) Tombstone(v *modproxy.Version) error {
	n, err := t.c.RawQuery(`UPDATE versions SET deleted_at = ?, deleted_by = ?, delete_reason = ?, blocked = ?
		WHERE module_id = (SELECT id FROM modules WHERE path = ?) AND version = ?`,
		dbTime(v.DeletedAt), v.DeletedBy, v.DeleteReason, v.Blocked, v.Path, v.Version).ExecWithCount()
	if err != nil {
		return fmt.Errorf("models: deleting %s@%s: %w", v.Path, v.Version, err)
	}
	if n == 0 {
		return notFound(v.Path, v.Version)
	}
	return t.announce(v.Path, v.Version)
}

func (t registryTx) Restore(v *modproxy.Version) error {
	if _, err := t.moduleID(v.Path, v.PublishedAt); err != nil {
		return err
	}
	n, err := t.c.RawQuery(`UPDATE versions SET deleted_at = NULL, deleted_by = '', delete_reason = '',
		published_by = ?, published_at = ?
		WHERE module_id = (SELECT id FROM modules WHERE path = ?) AND version = ?
		AND deleted_at IS NOT NULL AND NOT blocked`,
		v.PublishedBy, dbTime(v.PublishedAt), v.Path, v.Version).ExecWithCount()
	if err != nil {
		return fmt.Errorf("models: restoring %s@%s: %w", v.Path, v.Version, err)
	}
	if n == 0 {
		return fmt.Errorf("models: %s@%s: %w", v.Path, v.Version, modproxy.ErrExists)
	}
	return t.announce(v.Path, v.Version)
}

func (t registryTx) FillVersion(v *modproxy.Version, kind storage.Kind) error {
	var (
		set  string
		args []any
	)
	// Only a live record is filled, and a hash is recorded once: the
	// guards keep both true even for a caller that did not read first.
	var guard string
	switch kind {
	case storage.Info:
		set, args = "version_time = ?", []any{dbTime(v.Time)}
	case storage.Mod:
		set, args = "mod_hash = ?", []any{v.ModHash}
		guard = " AND mod_hash IN ('', ?)"
	case storage.Zip:
		set, args = "zip_hash = ?, size = ?, mod_hash = ?", []any{v.ZipHash, v.Size, v.ModHash}
		guard = " AND zip_hash IN ('', ?) AND mod_hash IN ('', ?)"
	default:
		return fmt.Errorf("models: FillVersion: unknown kind %q", kind)
	}
	args = append(args, v.Path, v.Version)
	switch kind {
	case storage.Mod:
		args = append(args, v.ModHash)
	case storage.Zip:
		args = append(args, v.ZipHash, v.ModHash)
	}
	n, err := t.c.RawQuery(`UPDATE versions SET `+set+`
		WHERE module_id = (SELECT id FROM modules WHERE path = ?) AND version = ?
		AND deleted_at IS NULL`+guard, args...).ExecWithCount()
	if err != nil {
		return fmt.Errorf("models: recording %s of %s@%s: %w", kind, v.Path, v.Version, err)
	}
	if n == 0 {
		return t.notFilled(v, kind)
	}
	return t.announce(v.Path, v.Version)
}

// notFilled returns the error for a FillVersion of v that changed no row:
// the record is missing, deleted, or has other hashes.
func (t registryTx) notFilled(v *modproxy.Version, kind storage.Kind) error {
	recorded, err := t.Version(v.Path, v.Version)
	switch {
	case err != nil:
		return err
	case !recorded.Live():
		return &modproxy.Error{Kind: modproxy.ErrGone, Path: v.Path, Version: v.Version, Err: fmt.Errorf("recording its %s: the version is deleted", kind)}
	}
	return &modproxy.Error{Kind: modproxy.ErrConflict, Path: v.Path, Version: v.Version, Err: otherHashes(recorded, v, kind)}
}

// otherHashes describes the hashes of recorded that a fill of kind from v
// would change.
func otherHashes(recorded, v *modproxy.Version, kind storage.Kind) error {
	if kind == storage.Zip && recorded.ZipHash != "" && recorded.ZipHash != v.ZipHash {
		return fmt.Errorf("zip hash %s is recorded, not %s", recorded.ZipHash, v.ZipHash)
	}
	return fmt.Errorf("go.mod hash %s is recorded, not %s", recorded.ModHash, v.ModHash)
}

// Exclusive implements modproxy.Metadata: it runs fn while it holds the
// lock named key, which keeps out every other holder of that key, in this
// process and in every other that shares the database, and returns fn's
// error. It waits for the lock until ctx is done, or on PostgreSQL until
// the server stops answering (see lockWait).
//
// On PostgreSQL the lock is a transaction-scoped advisory lock, in a
// transaction that Exclusive holds open on a connection of its own while
// fn runs; fn does its own queries on other connections. An Exclusive
// nested in another, called with the context the outer one gave its fn,
// takes its lock in that transaction, without another connection, and
// holds it until the outer one ends: were the nested ones to wait for
// connections of their own, as many outer ones as may hold a lock at once
// could each wait for them, and none end.
//
// On SQLite, where several processes share the database file (agora
// import beside the server), the lock is a lock file in the directory
// beside the database that its name with ".locks" after it names (see
// lockFile): flock(2) on unix; elsewhere there is none, and the lock
// keeps out the other holders in this process only.
func (r *Registry) Exclusive(ctx context.Context, key string, fn func(context.Context) error) error {
	if r.conn.Dialect.Name() != "postgres" {
		unlock, err := lockFile(ctx, r.lockDir, key)
		if err != nil {
			return fmt.Errorf("models: locking %q: %w", key, err)
		}
		defer unlock()
		return fn(ctx)
	}
	if outer, ok := ctx.Value(exclusiveTx{}).(*heldExclusive); ok && outer.r == r {
		w := r.awaitLock(ctx)
		defer w.cancel(nil)
		if err := w.take(outer.tx.WithContext(w.ctx).RawQuery(advisoryLock, key).Exec()); err != nil {
			return w.failed(fmt.Errorf("models: locking %q: %w", key, err))
		}
		return fn(ctx)
	}
	select {
	case r.exclusive <- struct{}{}:
		defer func() { <-r.exclusive }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// The transaction holds the lock and nothing else: fn's work is done
	// on other connections, and stands once fn returns, however the
	// transaction ends. It is rolled back, so that no failure to commit
	// it (its connection lost just then) turns work done into an error.
	// Its context is the wait's, which only the caller's ends once the
	// lock is taken.
	var (
		ran   bool
		fnErr error
	)
	w := r.awaitLock(ctx)
	defer w.cancel(nil)
	err := r.conn.WithContext(w.ctx).Transaction(func(tx *pop.Connection) error {
		if err := w.take(tx.RawQuery(advisoryLock, key).Exec()); err != nil {
			return fmt.Errorf("models: locking %q: %w", key, err)
		}
		fnErr, ran = fn(context.WithValue(ctx, exclusiveTx{}, &heldExclusive{r, tx})), true
		return errReleased
	})
	if ran {
		return fnErr
	}
	return w.failed(err)
}

// lockWait is an Exclusive's wait on PostgreSQL for its transaction and
// its lock. The wait is bounded by the caller's context alone, since the
// lock's holder keeps it for as long as its work takes (a fetch, minutes
// for a large zip); but a server that stops answering (hung, or behind a
// network partition) would hold the wait, and the request behind it, for
// as long. So every StatementTimeout of the wait, the server is asked
// whether it still answers, in a query bounded so too; if it does not,
// the wait ends (ctx is cancelled), at most twice StatementTimeout after
// the server stopped, with an error that says so (see failed).
type lockWait struct {
	ctx    context.Context // the caller's, also ended by a failed check
	cancel context.CancelCauseFunc
	r      *Registry
	timer  *time.Timer

	mu    sync.Mutex
	held  bool  // the lock is taken: no check ends ctx any more
	check error // the failed check that ended ctx
}

// awaitLock starts the checks of a wait for a lock under ctx.
func (r *Registry) awaitLock(ctx context.Context) *lockWait {
	w := &lockWait{r: r}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	w.timer = time.AfterFunc(StatementTimeout, w.checkServer)
	return w
}

// checkServer asks the server whether it answers, while the wait goes on,
// and ends the wait if it does not.
func (w *lockWait) checkServer() {
	ctx, cancel := bounded(w.ctx)
	err := Ping(ctx, w.r.conn)
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.held || w.ctx.Err() != nil:
	case err != nil:
		w.check = fmt.Errorf("waiting for a lock: %w", err)
		w.cancel(w.check)
	default:
		w.timer.Reset(StatementTimeout)
	}
}

// take ends the checks once the lock's statement has returned err: the
// lock is held if err is nil and the wait did not end first, and no check
// ends ctx from then on. It returns err, or the cause of the wait's end.
func (w *lockWait) take(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	if err == nil {
		err = context.Cause(w.ctx)
	}
	w.held = err == nil
	return err
}

// failed returns the error of a wait that did not take the lock, which it
// met as err: the failed check that ended it, if one did, which a request
// answers with 503; else err, wrapping the caller context's error once
// that has ended.
func (w *lockWait) failed(err error) error {
	w.mu.Lock()
	w.timer.Stop()
	check := w.check
	w.mu.Unlock()
	if check != nil {
		return check
	}
	return ended(w.ctx, err)
}

// errReleased ends the transaction of an Exclusive on PostgreSQL with a
// rollback, which releases its lock.
var errReleased = errors.New("released")

// advisoryLock takes the transaction-scoped advisory lock of a key.
const advisoryLock = "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))"

// exclusiveTx is the context key of the transaction in which Exclusive
// holds a lock on PostgreSQL: a *heldExclusive.
type exclusiveTx struct{}

// heldExclusive is the transaction of an Exclusive of r, in which those
// nested in it take their locks.
type heldExclusive struct {
	r  *Registry
	tx *pop.Connection
}

// lockFileName returns the name of key's lock file on SQLite: 16
// hexadecimal digits of its SHA-256, which a key of any length or
// character makes.
func lockFileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

func (t registryTx) PurgeVersion(path, version string) error {
	err := t.c.RawQuery(`DELETE FROM versions WHERE module_id = (SELECT id FROM modules WHERE path = ?) AND version = ?`,
		path, version).Exec()
	if err != nil {
		return fmt.Errorf("models: purging %s@%s: %w", path, version, err)
	}
	return t.announce(path, version)
}

func (t registryTx) AppendAudit(e *modproxy.AuditEvent) error {
	return appendAudit(t.c, e)
}

// auditRow is a row of audit_events.
type auditRow struct {
	ID      int64     `db:"id"`
	At      time.Time `db:"at"`
	Actor   string    `db:"actor"`
	Action  string    `db:"action"`
	Module  string    `db:"module"`
	Version string    `db:"version"`
	Detail  string    `db:"detail"`
}

// TableName tells Pop the table of auditRow.
func (auditRow) TableName() string { return "audit_events" }

// appendAudit inserts e on c, which may be a transaction, and sets e.ID.
func appendAudit(c *pop.Connection, e *modproxy.AuditEvent) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = dbTime(e.At)
	row := &auditRow{At: e.At, Actor: e.Actor, Action: e.Action, Module: e.Path, Version: e.Version, Detail: e.Detail}
	if err := c.Create(row); err != nil {
		return fmt.Errorf("models: audit %s: %w", e.Action, err)
	}
	e.ID = row.ID
	return nil
}

// Modules implements modproxy.Metadata. The cursor is the last path of the
// previous page.
func (r *Registry) Modules(ctx context.Context, q modproxy.ModuleQuery) (modproxy.Page[modproxy.ModuleSummary], error) {
	var page modproxy.Page[modproxy.ModuleSummary]
	limit, err := modproxy.PageSize(q.Limit)
	if err != nil {
		return page, err
	}
	q.Limit = limit
	after, err := decodeCursor(q.Cursor)
	if err != nil {
		return page, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	c := r.conn.WithContext(ctx)
	where := []string{"m.path > ?"}
	args := []any{after}
	if q.Prefix != "" {
		where = append(where, "substr(m.path, 1, ?) = ?")
		args = append(args, len(q.Prefix), q.Prefix)
	}
	var mods []struct {
		Path      string    `db:"path"`
		UpdatedAt time.Time `db:"updated_at"`
	}
	err = c.RawQuery("SELECT m.path, m.updated_at FROM modules m WHERE "+strings.Join(where, " AND ")+
		" AND EXISTS (SELECT 1 FROM versions v WHERE v.module_id = m.id) ORDER BY m.path LIMIT ?",
		append(args, q.Limit+1)...).All(&mods)
	if err != nil {
		return page, fmt.Errorf("models: listing modules: %w", err)
	}
	if len(mods) > q.Limit {
		mods = mods[:q.Limit]
		page.Next = encodeCursor(mods[len(mods)-1].Path)
	}
	if len(mods) == 0 {
		return page, nil
	}
	var live []struct {
		Path    string `db:"path"`
		Version string `db:"version"`
	}
	err = c.RawQuery(`SELECT m.path, v.version FROM versions v JOIN modules m ON m.id = v.module_id
		WHERE v.deleted_at IS NULL AND m.path >= ? AND m.path <= ?`,
		mods[0].Path, mods[len(mods)-1].Path).All(&live)
	if err != nil {
		return page, fmt.Errorf("models: listing modules: %w", err)
	}
	versions := make(map[string][]string)
	for _, l := range live {
		versions[l.Path] = append(versions[l.Path], l.Version)
	}
	for _, m := range mods {
		vs := versions[m.Path]
		page.Items = append(page.Items, modproxy.ModuleSummary{
			Path: m.Path, Latest: modproxy.LatestVersion(vs), Versions: len(vs), UpdatedAt: m.UpdatedAt.UTC(),
		})
	}
	return page, nil
}

// Audit implements modproxy.Metadata. The cursor is the id of the last
// event of the previous page.
func (r *Registry) Audit(ctx context.Context, q modproxy.AuditQuery) (modproxy.Page[modproxy.AuditEvent], error) {
	var page modproxy.Page[modproxy.AuditEvent]
	limit, err := modproxy.PageSize(q.Limit)
	if err != nil {
		return page, err
	}
	q.Limit = limit
	where := []string{"1 = 1"}
	var args []any
	if q.Cursor != "" {
		s, err := decodeCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return page, fmt.Errorf("%w: cursor %q", modproxy.ErrInvalid, q.Cursor)
		}
		// Any int64 is a cursor. PostgreSQL would take it for the type
		// of the column, integer, and fail the query on a larger one.
		where, args = append(where, "id < CAST(? AS BIGINT)"), append(args, id)
	}
	for col, val := range map[string]string{"actor": q.Actor, "action": q.Action, "module": q.Path} {
		if val != "" {
			where, args = append(where, col+" = ?"), append(args, val)
		}
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, dbTime(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, dbTime(q.Until))
	}
	var rows []auditRow
	ctx, cancel := bounded(ctx)
	defer cancel()
	err = r.conn.WithContext(ctx).RawQuery("SELECT id, at, actor, action, module, version, detail FROM audit_events WHERE "+
		strings.Join(where, " AND ")+" ORDER BY id DESC LIMIT ?", append(args, q.Limit+1)...).All(&rows)
	if err != nil {
		return page, fmt.Errorf("models: reading the audit log: %w", err)
	}
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		page.Next = encodeCursor(strconv.FormatInt(rows[len(rows)-1].ID, 10))
	}
	for _, row := range rows {
		page.Items = append(page.Items, modproxy.AuditEvent{
			ID: row.ID, At: row.At.UTC(), Actor: row.Actor, Action: row.Action,
			Path: row.Module, Version: row.Version, Detail: row.Detail,
		})
	}
	return page, nil
}

// encodeCursor and decodeCursor keep cursors opaque to clients.
func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		// Not one encodeCursor made: no path holds such bytes, and
		// PostgreSQL would fail the query.
		return "", fmt.Errorf("%w: cursor %q", modproxy.ErrInvalid, c)
	}
	return string(b), nil
}
