// Package modproxy is Agora's module registry: the use cases behind the
// GOPROXY download protocol (Open, List, Latest), behind publishing
// (Publish, Delete, DeleteModule, Purge) and behind importing (Import,
// ImportDir), composed from a metadata store, a blob store and, for a
// pull-through cache, the upstream proxy each path is routed to and a
// checksum database that what it serves is verified against.
//
// The package knows nothing of HTTP or SQL. Its callers (package actions for
// HTTP, package command for the CLI) pass in a Metadata implementation
// (package models, on Pop), a storage.Store (package storage, on disk) and,
// optionally, an Upstream per path (package upstream) and a Checker
// (package checksum).
//
// # Invariants
//
// A version's zip hash is recorded when it is first published and kept
// forever, through deletion: the same module@version can never be published
// again with other content, because go.sum files everywhere remember the
// first hash. Only an explicit, audited Purge by an administrator forgets it.
//
// The metadata database is the source of truth for which versions exist; the
// files on disk are their content. A version becomes visible only when its
// row is committed, and its files are written before that, so a reader never
// sees a version without its files. Files left by a crash without a row, or
// left after a delete, are never served.
//
// Every change is recorded in the audit log in the same transaction as the
// change itself.
package modproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"golang.org/x/mod/semver"

	"agora/storage"
)

// Source values of Version.Source for versions that did not come from an
// upstream proxy (those record the upstream's URL).
const (
	SourceUploaded = "uploaded"
	SourceImported = "imported"
)

// Version is the record of one module version, live or tombstoned.
type Version struct {
	Path    string
	Version string
	Time    time.Time // the version's time, as served in .info
	Size    int64     // of the zip, in bytes
	ZipHash string    // h1: hash of the zip, as in go.sum
	ModHash string    // h1: hash of go.mod, as in go.sum
	Source  string    // SourceUploaded, SourceImported, or the upstream URL

	PublishedBy string
	PublishedAt time.Time

	// DeletedAt is zero while the version is live.
	DeletedAt    time.Time
	DeletedBy    string
	DeleteReason string
	Blocked      bool // deleted and never to be published again, even identically
}

// Live reports whether the version may be served.
func (v *Version) Live() bool { return v.DeletedAt.IsZero() }

// givesTime reports whether t, the time an .info of v gives, is v's
// recorded time. The record keeps it to the microsecond, cut off; builds
// before times were cut (4644de3) recorded an upstream's time as it came,
// which SQLite kept whole and PostgreSQL rounded to the microsecond. Either
// way the two are less than a microsecond apart.
func (v *Version) givesTime(t time.Time) bool {
	d := t.Sub(v.Time)
	return -time.Microsecond < d && d < time.Microsecond
}

// Has reports whether v's record says its file of kind is stored. Versions
// fetched from an upstream are recorded file by file (a .mod request stores
// the .mod only), and a zip imported without its .info has none.
func (v *Version) Has(kind storage.Kind) bool {
	switch kind {
	case storage.Info:
		return !v.Time.IsZero()
	case storage.Mod:
		return v.ModHash != ""
	}
	return v.ZipHash != ""
}

// Files returns the kinds of file stored for v: .info, .mod, .zip, or fewer.
func (v *Version) Files() []storage.Kind {
	var kinds []storage.Kind
	for _, k := range []storage.Kind{storage.Info, storage.Mod, storage.Zip} {
		if v.Has(k) {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// GoSum returns the go.sum lines that the go command records for v: the
// zip's and the go.mod's, each only when that file is stored, since a line
// without its hash is one the go command refuses.
func (v *Version) GoSum() []string {
	var lines []string
	if v.Has(storage.Zip) {
		lines = append(lines, fmt.Sprintf("%s %s %s", v.Path, v.Version, v.ZipHash))
	}
	if v.Has(storage.Mod) {
		lines = append(lines, fmt.Sprintf("%s %s/go.mod %s", v.Path, v.Version, v.ModHash))
	}
	return lines
}

// AuditEvent is one entry of the append-only audit log.
type AuditEvent struct {
	ID      int64
	At      time.Time
	Actor   string // user name; empty for the system itself
	Action  string // one of the Action constants
	Path    string // module path, when the event concerns one
	Version string
	Detail  string // free text: the reason given, the hashes compared, ...
}

// Audit actions recorded by this package and by account management.
const (
	ActionPublish  = "publish"
	ActionDelete   = "delete"
	ActionBlock    = "block"
	ActionPurge    = "purge"
	ActionRejected = "publish.rejected"
	// ActionFetchRejected records a version fetched from an upstream and
	// refused: its hashes differ from the checksum database's.
	ActionFetchRejected = "fetch.rejected"
	ActionLogin         = "login"
	ActionUserCreate    = "user.create"
	ActionTokenCreate   = "token.create"
	ActionTokenRevoke   = "token.revoke"
)

// ModuleSummary is one row of a module listing.
type ModuleSummary struct {
	Path      string
	Latest    string // highest live version by the @latest rule; empty if none is live
	Versions  int    // live versions
	UpdatedAt time.Time
}

// ModuleQuery selects modules for a listing.
type ModuleQuery struct {
	Prefix string // only paths that start with it
	Limit  int    // page size; see MaxPageSize
	Cursor string // from a previous page's Next; empty for the first page
}

// AuditQuery selects audit events, newest first. Zero fields do not filter.
type AuditQuery struct {
	Actor  string
	Action string
	Path   string
	Since  time.Time // inclusive
	Until  time.Time // exclusive
	Limit  int
	Cursor string
}

// Page is one page of a listing. Next is empty on the last page.
type Page[T any] struct {
	Items []T
	Next  string
}

// Page sizes of listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Metadata is the metadata store: versions, modules and the audit log.
// Package models implements it on Pop for PostgreSQL and SQLite. Stores
// keep times to the microsecond, cutting off the rest (PostgreSQL keeps no
// more), and take the times of a query alike.
type Metadata interface {
	// Version returns the record of path@version, live or tombstoned, or an
	// error wrapping ErrNotFound.
	Version(ctx context.Context, path, version string) (*Version, error)

	// Versions returns every record of path, live and tombstoned, in no
	// particular order; none is not an error.
	Versions(ctx context.Context, path string) ([]*Version, error)

	// Update runs fn in one transaction. If fn returns an error, nothing it
	// did through tx is kept and Update returns that error.
	Update(ctx context.Context, fn func(tx MetadataTx) error) error

	// Modules lists modules with at least one version record, by path.
	// A Limit of 0 means DefaultPageSize; one below 0 or over
	// MaxPageSize is an error wrapping ErrInvalid, as for Audit.
	Modules(ctx context.Context, q ModuleQuery) (Page[ModuleSummary], error)

	// Audit lists audit events, newest first.
	Audit(ctx context.Context, q AuditQuery) (Page[AuditEvent], error)

	// Exclusive runs fn while holding the lock named key against every
	// other process sharing the store (other nodes, agora import beside a
	// server), and returns fn's error: so that several nodes fetch one
	// file from the upstream once, and take turns writing and removing
	// the files of one version (fetches, publishes, imports, restores,
	// deletes). It waits for the lock until ctx is done.
	// fn gets a context to pass to an Exclusive nested in it (of another
	// key: a lock is not taken twice), which may then hold its lock until
	// the outer one ends. A store that only one process uses may just run
	// fn: the registry keeps its own callers apart itself.
	Exclusive(ctx context.Context, key string, fn func(ctx context.Context) error) error
}

// MetadataTx is the part of Metadata available inside a transaction.
// The records a transaction reads stay as it read them until it ends
// (another transaction's change of them waits, or is waited for), so that
// it may read a record, decide, and write.
type MetadataTx interface {
	// Version is Metadata.Version within the transaction.
	Version(path, version string) (*Version, error)

	// Versions is Metadata.Versions within the transaction.
	Versions(path string) ([]*Version, error)

	// InsertVersion records a new version. If path@version already has a
	// record, perhaps committed by a concurrent transaction while this one
	// ran, it changes nothing and returns an error wrapping ErrExists.
	InsertVersion(v *Version) error

	// Tombstone marks a live version deleted (or a deleted one blocked) with
	// v's DeletedAt, DeletedBy, DeleteReason and Blocked. It returns an error
	// wrapping ErrNotFound if the row is gone.
	Tombstone(v *Version) error

	// Restore makes a deleted, unblocked version live again. It returns an
	// error wrapping ErrExists, and changes nothing, if the record is not
	// one to restore: live (a concurrent transaction restored it first),
	// blocked, or missing.
	Restore(v *Version) error

	// FillVersion adds the file of kind to the live record of a version
	// fetched file by file: for storage.Info v.Time, for storage.Mod
	// v.ModHash, for storage.Zip v.ZipHash, v.Size and v.ModHash. It writes
	// only those columns, so concurrent fills of different kinds do not
	// undo each other. It returns an error wrapping ErrNotFound if the
	// record is gone, ErrGone if it is deleted, and ErrConflict if it has
	// another zip or go.mod hash (a hash is recorded once) and changes
	// nothing then.
	FillVersion(v *Version, kind storage.Kind) error

	// PurgeVersion removes the record of path@version.
	PurgeVersion(path, version string) error

	// AppendAudit adds e to the audit log, setting e.ID.
	AppendAudit(e *AuditEvent) error
}

// infoFile returns the .info file of version, committed at t: the JSON
// object the go command reads, as Agora writes it when it has no other. A
// zero t is left out, as the protocol allows.
func infoFile(version string, t time.Time) ([]byte, error) {
	return json.Marshal(struct {
		Version string
		Time    time.Time `json:",omitzero"`
	}{version, t})
}

// LatestVersion returns the version the @latest query resolves to among
// versions: the highest release, else the highest pre-release, else the
// highest pseudo-version. It returns "" for an empty list.
func LatestVersion(versions []string) string {
	var release, pre, pseudo string
	for _, v := range versions {
		switch {
		case isPseudo(v):
			if pseudo == "" || semver.Compare(v, pseudo) > 0 {
				pseudo = v
			}
		case semver.Prerelease(v) != "":
			if pre == "" || semver.Compare(v, pre) > 0 {
				pre = v
			}
		default:
			if release == "" || semver.Compare(v, release) > 0 {
				release = v
			}
		}
	}
	switch {
	case release != "":
		return release
	case pre != "":
		return pre
	}
	return pseudo
}

// sortVersions sorts records by semantic version.
func sortVersions(vs []*Version) {
	sort.Slice(vs, func(i, j int) bool { return semver.Compare(vs[i].Version, vs[j].Version) < 0 })
}
