package modproxy

import (
	"context"

	"agora/auth"
)

// Module returns every record of path, live and tombstoned, in semver order:
// GET /api/v1/modules/{module}.
func (s *Service) Module(ctx context.Context, who auth.Principal, path string) ([]*Version, error) {
	if !who.Can(auth.ScopeRead) {
		return nil, errorf(ErrForbidden, path, "", "reading needs a token with read scope")
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errorf(ErrNotFound, path, "", "no versions")
	}
	sortVersions(all)
	return all, nil
}

// PublishedOnlyHere reports whether a version of path was ever published
// here (uploaded, not fetched or imported), deleted ones included, and none
// was ever fetched from an upstream: a private module, whose path must not
// leave, as in a lookup in a public checksum database. A module that an
// upstream served is public, whatever was published under its path before
// (see checkNotPublic).
func (s *Service) PublishedOnlyHere(ctx context.Context, path string) (bool, error) {
	all, err := s.meta.Versions(ctx, path)
	if err != nil {
		return false, err
	}
	published := false
	for _, v := range all {
		switch v.Source {
		case SourceUploaded:
			published = true
		case SourceImported:
		default:
			return false, nil
		}
	}
	return published, nil
}

// Modules lists modules: GET /api/v1/modules.
func (s *Service) Modules(ctx context.Context, who auth.Principal, q ModuleQuery) (Page[ModuleSummary], error) {
	if !who.Can(auth.ScopeRead) {
		return Page[ModuleSummary]{}, errorf(ErrForbidden, "", "", "reading needs a token with read scope")
	}
	limit, err := PageSize(q.Limit)
	if err != nil {
		return Page[ModuleSummary]{}, err
	}
	q.Limit = limit
	return s.meta.Modules(ctx, q)
}

// Audit lists audit events, newest first: GET /api/v1/audit. Only
// administrators may read the audit log.
func (s *Service) Audit(ctx context.Context, who auth.Principal, q AuditQuery) (Page[AuditEvent], error) {
	if !who.Can(auth.ScopeAdmin) {
		return Page[AuditEvent]{}, errorf(ErrForbidden, "", "", "only administrators may read the audit log")
	}
	limit, err := PageSize(q.Limit)
	if err != nil {
		return Page[AuditEvent]{}, err
	}
	q.Limit = limit
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return Page[AuditEvent]{}, errorf(ErrInvalid, "", "", "since must be before until")
	}
	return s.meta.Audit(ctx, q)
}

// PageSize returns the page size a request's limit n asks for: n, or
// DefaultPageSize for 0; a limit below 0 or over MaxPageSize is an error
// wrapping ErrInvalid. The Service and every Metadata apply it alike.
func PageSize(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, errorf(ErrInvalid, "", "", "limit must be between 1 and %d", MaxPageSize)
	}
	return n, nil
}
