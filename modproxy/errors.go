package modproxy

import (
	"errors"
	"fmt"
)

// The kinds of failure the registry reports. Errors about what a caller asked
// for wrap exactly one of them, so that callers map them to statuses with
// errors.Is in one place (package actions). Failures of the machinery itself
// (disk, database, a client that stops sending) wrap none, and are internal
// errors.
var (
	ErrNotFound     = errors.New("not found")
	ErrGone         = errors.New("gone")      // deleted or blocked
	ErrInvalid      = errors.New("invalid")   // bad input
	ErrConflict     = errors.New("conflict")  // other content already recorded
	ErrTooLarge     = errors.New("too large") // over a size limit
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrUnavailable  = errors.New("unavailable") // a dependency is down
	// ErrUpstream is a failure of the upstream proxy: it did not answer,
	// or answered with something refused (an invalid zip, hashes that the
	// checksum database contradicts). A bad gateway, not a missing module.
	ErrUpstream = errors.New("upstream failed")

	// ErrExists is returned by MetadataTx when a record it would create
	// already exists. The registry handles it; callers never see it.
	ErrExists = errors.New("already exists")
)

// Error is a registry error about one module version.
type Error struct {
	Kind    error // one of the sentinel errors above
	Path    string
	Version string // may be empty
	Err     error  // the cause, in words a user can act on
}

// Error returns "path@version: cause".
func (e *Error) Error() string {
	m := e.Path
	if e.Version != "" {
		m += "@" + e.Version
	}
	if m == "" {
		return e.Err.Error()
	}
	return m + ": " + e.Err.Error()
}

// Unwrap returns both the kind and the cause, so errors.Is finds either.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// cause returns the cause of err if it is an *Error, without the module
// version it names, for a message about that version; else err.
func cause(err error) error {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e.Err
	}
	return err
}

// errorf returns an *Error of the given kind about path@version.
func errorf(kind error, path, version, format string, args ...any) error {
	return &Error{Kind: kind, Path: path, Version: version, Err: fmt.Errorf(format, args...)}
}

// ConflictError reports an attempt to publish a version whose recorded
// content differs. It wraps ErrConflict.
type ConflictError struct {
	Path         string
	Version      string
	RecordedHash string // h1: of the zip first published
	UploadedHash string // h1: of the zip just uploaded
	Deleted      bool   // the recorded version has since been deleted
}

// Error names both hashes, so the publisher can tell what differs.
func (e *ConflictError) Error() string {
	state := "was published"
	if e.Deleted {
		state = "was published and later deleted"
	}
	return fmt.Sprintf("%s@%s %s with zip hash %s; the upload has hash %s: a version's content can never change, publish a new version",
		e.Path, e.Version, state, e.RecordedHash, e.UploadedHash)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }
