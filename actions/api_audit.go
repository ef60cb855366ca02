package actions

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gobuffalo/buffalo"

	"agora/modproxy"
)

// auditEventJSON is an audit event as the API shows it.
type auditEventJSON struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Module  string    `json:"module,omitempty"`
	Version string    `json:"version,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// listAudit answers GET /api/v1/audit?actor=&action=&module=&since=&until=&limit=&cursor=,
// newest first. since and until are RFC 3339 times.
func (d *Deps) listAudit(c buffalo.Context) error {
	q := c.Request().URL.Query()
	aq := modproxy.AuditQuery{Actor: q.Get("actor"), Action: q.Get("action"), Path: q.Get("module"), Cursor: q.Get("cursor")}
	var err error
	if aq.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		return d.renderError(c, err)
	}
	if aq.Since, err = timeParam(q.Get("since"), "since"); err != nil {
		return d.renderError(c, err)
	}
	if aq.Until, err = timeParam(q.Get("until"), "until"); err != nil {
		return d.renderError(c, err)
	}
	page, err := d.Registry.Audit(c.Request().Context(), principal(c), aq)
	if err != nil {
		return d.renderError(c, err)
	}
	events := make([]auditEventJSON, len(page.Items))
	for i, e := range page.Items {
		events[i] = auditEventJSON{e.ID, e.At, e.Actor, e.Action, e.Path, e.Version, e.Detail}
	}
	return c.Render(http.StatusOK, r.JSON(map[string]any{"events": events, "next_cursor": page.Next}))
}

// timeParam parses an optional RFC 3339 time query parameter.
func timeParam(s, name string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s=%q: want an RFC 3339 time such as 2026-11-21T09:00:00Z", modproxy.ErrInvalid, name, s)
	}
	return t, nil
}
