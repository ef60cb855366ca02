// Package modproxytest provides an in-memory implementation of
// modproxy.Metadata for tests of the registry and of its callers.
//
// MemStore follows the documented contract of modproxy.Metadata and
// modproxy.MetadataTx to the letter, so that a test that passes against it
// states something true of every implementation: transactions are atomic and
// rolled back when their function fails, records that exist are reported
// with errors wrapping modproxy.ErrExists, missing ones with errors wrapping
// modproxy.ErrNotFound, and every *modproxy.Version it returns is a copy its
// caller may change freely.
//
// Transactions are serialised by one mutex, so MemStore never shows the
// interleavings a SQL database allows; tests of those wrap it.
package modproxytest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"agora/modproxy"
	"agora/storage"
)

// MemStore is an in-memory modproxy.Metadata. The zero value is not usable;
// call NewMemStore. Its methods are safe for concurrent use.
type MemStore struct {
	mu sync.Mutex
	// versions holds every record, live and tombstoned, by path and version.
	versions map[string]map[string]*modproxy.Version
	// updated holds the time each module last had a version published.
	updated map[string]time.Time
	// events is the audit log, oldest first; events[i].ID is i+1.
	events []modproxy.AuditEvent
	// moduleCursors and auditCursors remember the cursors MemStore issued,
	// so that it rejects the ones it did not, as a store with signed
	// cursors would.
	moduleCursors map[string]bool
	auditCursors  map[string]bool
}

var _ modproxy.Metadata = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{
		versions:      make(map[string]map[string]*modproxy.Version),
		updated:       make(map[string]time.Time),
		moduleCursors: make(map[string]bool),
		auditCursors:  make(map[string]bool),
	}
}

// notFound returns the error for a missing record of path@version.
func notFound(path, version string) error {
	return &modproxy.Error{Kind: modproxy.ErrNotFound, Path: path, Version: version, Err: errors.New("no such version record")}
}

// storedTime returns t as MemStore keeps it: to the microsecond, the rest
// cut off, as SQL databases keep times (see models.Registry).
func storedTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// copyVersion returns a copy of v that shares nothing with it.
func copyVersion(v *modproxy.Version) *modproxy.Version {
	c := *v
	return &c
}

// Version returns a copy of the record of path@version, live or tombstoned,
// or an error wrapping modproxy.ErrNotFound.
func (m *MemStore) Version(ctx context.Context, path, version string) (*modproxy.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("modproxytest: version %s@%s: %w", path, version, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.versions[path][version]
	if v == nil {
		return nil, notFound(path, version)
	}
	return copyVersion(v), nil
}

// Versions returns copies of every record of path, live and tombstoned, in
// no particular order (map order, which varies from call to call, so that
// callers that depend on an order fail).
func (m *MemStore) Versions(ctx context.Context, path string) ([]*modproxy.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("modproxytest: versions of %s: %w", path, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var vs []*modproxy.Version
	for _, v := range m.versions[path] {
		vs = append(vs, copyVersion(v))
	}
	return vs, nil
}

// Update runs fn in a transaction. It holds MemStore's mutex while fn runs,
// so fn must use tx, never m's own methods, or it deadlocks. The changes fn
// makes through tx are staged and applied only if fn returns nil; otherwise
// Update discards them and returns fn's error. The tx is unusable after
// Update returns.
func (m *MemStore) Update(ctx context.Context, fn func(tx modproxy.MetadataTx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("modproxytest: update: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tx := &memTx{m: m, staged: make(map[versionKey]*modproxy.Version), updated: make(map[string]time.Time)}
	defer func() { tx.done = true }()
	if err := fn(tx); err != nil {
		return err
	}
	tx.commit()
	return nil
}

// Modules lists the modules that have at least one version record, live or
// tombstoned, whose paths start with q.Prefix, sorted by path. Latest is
// chosen among live versions by the @latest rule and Versions counts them.
// A Limit of 0 means modproxy.DefaultPageSize. Next is a cursor naming the
// last path of the page; a cursor MemStore did not issue is an error
// wrapping modproxy.ErrInvalid.
func (m *MemStore) Modules(ctx context.Context, q modproxy.ModuleQuery) (modproxy.Page[modproxy.ModuleSummary], error) {
	var page modproxy.Page[modproxy.ModuleSummary]
	if err := ctx.Err(); err != nil {
		return page, fmt.Errorf("modproxytest: modules: %w", err)
	}
	limit, err := modproxy.PageSize(q.Limit)
	if err != nil {
		return page, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	after := ""
	if q.Cursor != "" {
		if !m.moduleCursors[q.Cursor] {
			return page, fmt.Errorf("modproxytest: modules: cursor %q: %w", q.Cursor, modproxy.ErrInvalid)
		}
		b, _ := base64.RawURLEncoding.DecodeString(q.Cursor)
		after = string(b)
	}
	var paths []string
	for path, vs := range m.versions {
		if len(vs) > 0 && strings.HasPrefix(path, q.Prefix) && path > after {
			paths = append(paths, path)
		}
	}
	sort.Strings(paths)
	if len(paths) > limit {
		paths = paths[:limit]
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(paths[len(paths)-1]))
		m.moduleCursors[page.Next] = true
	}
	for _, path := range paths {
		var live []string
		for _, v := range m.versions[path] {
			if v.Live() {
				live = append(live, v.Version)
			}
		}
		page.Items = append(page.Items, modproxy.ModuleSummary{
			Path:      path,
			Latest:    modproxy.LatestVersion(live),
			Versions:  len(live),
			UpdatedAt: m.updated[path],
		})
	}
	return page, nil
}

// Audit lists the audit events that match q, newest first (by ID). Actor,
// Action and Path match exactly; Since is inclusive and Until exclusive;
// zero fields do not filter. A Limit of 0 means modproxy.DefaultPageSize.
// Next is a cursor naming the last event of the page; a cursor MemStore did
// not issue is an error wrapping modproxy.ErrInvalid.
func (m *MemStore) Audit(ctx context.Context, q modproxy.AuditQuery) (modproxy.Page[modproxy.AuditEvent], error) {
	var page modproxy.Page[modproxy.AuditEvent]
	if err := ctx.Err(); err != nil {
		return page, fmt.Errorf("modproxytest: audit: %w", err)
	}
	limit, err := modproxy.PageSize(q.Limit)
	if err != nil {
		return page, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	since, until := storedTime(q.Since), storedTime(q.Until)
	before := int64(len(m.events)) + 1
	if q.Cursor != "" {
		if !m.auditCursors[q.Cursor] {
			return page, fmt.Errorf("modproxytest: audit: cursor %q: %w", q.Cursor, modproxy.ErrInvalid)
		}
		b, _ := base64.RawURLEncoding.DecodeString(q.Cursor)
		before, _ = strconv.ParseInt(string(b), 10, 64)
	}
	for i := before - 2; i >= 0; i-- {
		e := m.events[i]
		switch {
		case q.Actor != "" && e.Actor != q.Actor,
			q.Action != "" && e.Action != q.Action,
			q.Path != "" && e.Path != q.Path,
			!since.IsZero() && e.At.Before(since),
			!until.IsZero() && !e.At.Before(until):
			continue
		}
		if len(page.Items) == limit {
			last := page.Items[len(page.Items)-1].ID
			page.Next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last, 10)))
			m.auditCursors[page.Next] = true
			break
		}
		page.Items = append(page.Items, e)
	}
	return page, nil
}

// Exclusive implements modproxy.Metadata. A MemStore serves one process,
// which the registry's own locks and single-flight cover: it runs fn.
func (m *MemStore) Exclusive(ctx context.Context, key string, fn func(context.Context) error) error {
	return fn(ctx)
}

// Events returns every committed audit event, oldest first. It is for tests
// that assert on the whole log without paging through Audit.
func (m *MemStore) Events() []modproxy.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]modproxy.AuditEvent(nil), m.events...)
}

// versionKey names one version record.
type versionKey struct{ path, version string }

// memTx is a MemStore transaction. Its writes are staged, shadowing the
// committed records, until commit applies them.
type memTx struct {
	m *MemStore
	// staged holds the records written in the transaction; a nil value is
	// a record purged in it.
	staged  map[versionKey]*modproxy.Version
	updated map[string]time.Time
	events  []modproxy.AuditEvent
	done    bool
}

// lookup returns the record of path@version as the transaction sees it, or
// nil. The result is not a copy.
func (tx *memTx) lookup(path, version string) *modproxy.Version {
	if v, ok := tx.staged[versionKey{path, version}]; ok {
		return v
	}
	return tx.m.versions[path][version]
}

// check returns an error if the transaction has ended.
func (tx *memTx) check(op string) error {
	if tx.done {
		return fmt.Errorf("modproxytest: %s after the transaction ended", op)
	}
	return nil
}

// Version implements modproxy.MetadataTx.
func (tx *memTx) Version(path, version string) (*modproxy.Version, error) {
	if err := tx.check("Version"); err != nil {
		return nil, err
	}
	v := tx.lookup(path, version)
	if v == nil {
		return nil, notFound(path, version)
	}
	return copyVersion(v), nil
}

// Versions implements modproxy.MetadataTx.
func (tx *memTx) Versions(path string) ([]*modproxy.Version, error) {
	if err := tx.check("Versions"); err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var vs []*modproxy.Version
	add := func(version string) {
		if seen[version] {
			return
		}
		seen[version] = true
		if v := tx.lookup(path, version); v != nil {
			vs = append(vs, copyVersion(v))
		}
	}
	for version := range tx.m.versions[path] {
		add(version)
	}
	for k := range tx.staged {
		if k.path == path {
			add(k.version)
		}
	}
	return vs, nil
}

// InsertVersion implements modproxy.MetadataTx.
func (tx *memTx) InsertVersion(v *modproxy.Version) error {
	if err := tx.check("InsertVersion"); err != nil {
		return err
	}
	if tx.lookup(v.Path, v.Version) != nil {
		return &modproxy.Error{Kind: modproxy.ErrExists, Path: v.Path, Version: v.Version, Err: errors.New("version already recorded")}
	}
	r := copyVersion(v)
	r.Time, r.PublishedAt, r.DeletedAt = storedTime(r.Time), storedTime(r.PublishedAt), storedTime(r.DeletedAt)
	tx.staged[versionKey{v.Path, v.Version}] = r
	tx.updated[v.Path] = r.PublishedAt
	return nil
}

// Tombstone implements modproxy.MetadataTx. It copies v's DeletedAt,
// DeletedBy, DeleteReason and Blocked into the record, and refuses a zero
// DeletedAt, which would leave the version live.
func (tx *memTx) Tombstone(v *modproxy.Version) error {
	if err := tx.check("Tombstone"); err != nil {
		return err
	}
	if v.DeletedAt.IsZero() {
		return &modproxy.Error{Kind: modproxy.ErrInvalid, Path: v.Path, Version: v.Version, Err: errors.New("tombstone without a deletion time")}
	}
	r := tx.lookup(v.Path, v.Version)
	if r == nil {
		return notFound(v.Path, v.Version)
	}
	r = copyVersion(r)
	r.DeletedAt = storedTime(v.DeletedAt)
	r.DeletedBy = v.DeletedBy
	r.DeleteReason = v.DeleteReason
	r.Blocked = v.Blocked
	tx.staged[versionKey{v.Path, v.Version}] = r
	return nil
}

// Restore implements modproxy.MetadataTx. It clears the deletion and records
// v's PublishedBy and PublishedAt; the version's time and hashes stay as
// first recorded. A record that is live, blocked or missing is an error
// wrapping modproxy.ErrExists, as in a SQL store, which cannot tell them
// apart.
func (tx *memTx) Restore(v *modproxy.Version) error {
	if err := tx.check("Restore"); err != nil {
		return err
	}
	r := tx.lookup(v.Path, v.Version)
	switch {
	case r == nil:
		return &modproxy.Error{Kind: modproxy.ErrExists, Path: v.Path, Version: v.Version, Err: errors.New("no such version record to restore")}
	case r.Live():
		return &modproxy.Error{Kind: modproxy.ErrExists, Path: v.Path, Version: v.Version, Err: errors.New("version already live")}
	case r.Blocked:
		return &modproxy.Error{Kind: modproxy.ErrExists, Path: v.Path, Version: v.Version, Err: errors.New("version blocked")}
	}
	r = copyVersion(r)
	r.DeletedAt = time.Time{}
	r.DeletedBy = ""
	r.DeleteReason = ""
	r.PublishedBy = v.PublishedBy
	r.PublishedAt = storedTime(v.PublishedAt)
	tx.staged[versionKey{v.Path, v.Version}] = r
	tx.updated[v.Path] = r.PublishedAt
	return nil
}

// FillVersion implements modproxy.MetadataTx.
func (tx *memTx) FillVersion(v *modproxy.Version, kind storage.Kind) error {
	if err := tx.check("FillVersion"); err != nil {
		return err
	}
	r := tx.lookup(v.Path, v.Version)
	switch {
	case r == nil:
		return notFound(v.Path, v.Version)
	case !r.Live():
		return &modproxy.Error{Kind: modproxy.ErrGone, Path: v.Path, Version: v.Version, Err: fmt.Errorf("recording its %s: the version is deleted", kind)}
	case kind == storage.Zip && r.ZipHash != "" && r.ZipHash != v.ZipHash:
		return &modproxy.Error{Kind: modproxy.ErrConflict, Path: v.Path, Version: v.Version, Err: fmt.Errorf("zip hash %s is recorded, not %s", r.ZipHash, v.ZipHash)}
	case (kind == storage.Zip || kind == storage.Mod) && r.ModHash != "" && r.ModHash != v.ModHash:
		return &modproxy.Error{Kind: modproxy.ErrConflict, Path: v.Path, Version: v.Version, Err: fmt.Errorf("go.mod hash %s is recorded, not %s", r.ModHash, v.ModHash)}
	}
	r = copyVersion(r)
	switch kind {
	case storage.Info:
		r.Time = storedTime(v.Time)
	case storage.Mod:
		r.ModHash = v.ModHash
	case storage.Zip:
		r.ZipHash, r.Size, r.ModHash = v.ZipHash, v.Size, v.ModHash
	default:
		return fmt.Errorf("modproxytest: FillVersion: unknown kind %q", kind)
	}
	tx.staged[versionKey{v.Path, v.Version}] = r
	return nil
}

// PurgeVersion implements modproxy.MetadataTx. Purging a missing record is
// not an error.
func (tx *memTx) PurgeVersion(path, version string) error {
	if err := tx.check("PurgeVersion"); err != nil {
		return err
	}
	tx.staged[versionKey{path, version}] = nil
	return nil
}

// AppendAudit implements modproxy.MetadataTx. IDs count up from 1 in commit
// order.
func (tx *memTx) AppendAudit(e *modproxy.AuditEvent) error {
	if err := tx.check("AppendAudit"); err != nil {
		return err
	}
	e.ID = int64(len(tx.m.events)+len(tx.events)) + 1
	e.At = storedTime(e.At)
	tx.events = append(tx.events, *e)
	return nil
}

// commit applies the staged changes to the store. The caller holds m.mu.
func (tx *memTx) commit() {
	m := tx.m
	for k, v := range tx.staged {
		if v == nil {
			delete(m.versions[k.path], k.version)
			if len(m.versions[k.path]) == 0 {
				delete(m.versions, k.path)
			}
			continue
		}
		if m.versions[k.path] == nil {
			m.versions[k.path] = make(map[string]*modproxy.Version)
		}
		m.versions[k.path][k.version] = v
	}
	for path, at := range tx.updated {
		m.updated[path] = at
	}
	m.events = append(m.events, tx.events...)
}
