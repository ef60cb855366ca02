package actions

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gobuffalo/buffalo"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"agora/modproxy"
)

// versionJSON is a version as the API shows it. A version fetched from an
// upstream may lack some of its files (a .mod request stores the .mod only,
// a zip imported without its .info has none): Files says which are served,
// none once the version is deleted, and what is known only from a file that
// was never stored (the time, the zip's size and hash) is left out.
type versionJSON struct {
	Path         string     `json:"path"`
	Version      string     `json:"version"`
	Files        []string   `json:"files"` // of "info", "mod" and "zip"
	Time         time.Time  `json:"time,omitzero"`
	Size         int64      `json:"size,omitempty"`
	ZipHash      string     `json:"zip_hash,omitempty"`
	GoModHash    string     `json:"gomod_hash,omitempty"`
	GoSum        []string   `json:"gosum"`
	Source       string     `json:"source"`
	PublishedBy  string     `json:"published_by"`
	PublishedAt  time.Time  `json:"published_at"`
	Status       string     `json:"status"` // live, deleted or blocked
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
	DeletedBy    string     `json:"deleted_by,omitempty"`
	DeleteReason string     `json:"delete_reason,omitempty"`
}

func newVersionJSON(v *modproxy.Version) versionJSON {
	j := versionJSON{
		Path: v.Path, Version: v.Version, Time: v.Time, Size: v.Size,
		ZipHash: v.ZipHash, GoModHash: v.ModHash, GoSum: v.GoSum(), Source: v.Source,
		PublishedBy: v.PublishedBy, PublishedAt: v.PublishedAt, Status: "live",
		Files: []string{},
	}
	if j.GoSum == nil {
		j.GoSum = []string{}
	}
	if v.Live() {
		for _, k := range v.Files() {
			j.Files = append(j.Files, string(k[1:]))
		}
	} else {
		j.Status = "deleted"
		if v.Blocked {
			j.Status = "blocked"
		}
		at := v.DeletedAt
		j.DeletedAt, j.DeletedBy, j.DeleteReason = &at, v.DeletedBy, v.DeleteReason
	}
	return j
}

// moduleTarget is what the {rest} of /api/v1/modules/{rest} names: a module,
// or one version of it ("<module>/@v/<version>", with ".zip" for uploads).
type moduleTarget struct {
	Path    string
	Version string // empty for the whole module
}

// parseModuleTarget parses {rest}. The module path may be case-encoded as in
// the download protocol (example.com/!upper) or written plainly.
func parseModuleTarget(rest string, wantZip bool) (moduleTarget, error) {
	rest = strings.TrimSuffix(rest, "/") // Buffalo appends a slash to every path
	escPath, file, hasVersion := strings.Cut(rest, "/@v/")
	t := moduleTarget{Path: escPath}
	if path, err := module.UnescapePath(escPath); err == nil {
		t.Path = path
	} // else written plainly, or invalid: the registry checks it
	if !hasVersion {
		if wantZip {
			return t, fmt.Errorf("%w: upload to /api/v1/modules/{module}/@v/{version}.zip", modproxy.ErrNotFound)
		}
		return t, nil
	}
	if wantZip {
		var ok bool
		if file, ok = strings.CutSuffix(file, ".zip"); !ok {
			return t, fmt.Errorf("%w: upload to /api/v1/modules/{module}/@v/{version}.zip", modproxy.ErrNotFound)
		}
	}
	t.Version = file
	if v, err := module.UnescapeVersion(file); err == nil {
		t.Version = v
	}
	return t, nil
}

// publishVersion answers PUT /api/v1/modules/{module}/@v/{version}.zip:
// 201 when created, 200 for an identical re-upload. It is a plain handler in
// front of Buffalo, because Buffalo parses every request body that claims to
// be a form (as curl --data-binary's does) before any handler runs: an
// upload must reach the registry as the stream it is, whatever its
// Content-Type.
func (d *Deps) publishVersion(w http.ResponseWriter, req *http.Request) {
	who, err := d.authenticate(req)
	if err == nil && !who.Authenticated() {
		err = errNoToken
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", challenge)
		d.writeError(w, req, err)
		return
	}
	t, err := parseModuleTarget(strings.TrimPrefix(req.URL.Path, "/api/v1/modules/"), true)
	if err != nil {
		d.writeError(w, req, err)
		return
	}
	if req.ContentLength > modzip.MaxZipFile {
		d.writeError(w, req, fmt.Errorf("%w: module zip of %d bytes is over the limit of %d", modproxy.ErrTooLarge, req.ContentLength, int64(modzip.MaxZipFile)))
		return
	}
	res, err := d.Registry.Publish(req.Context(), who, t.Path, t.Version, req.Body)
	if err != nil {
		d.writeError(w, req, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/v1/modules/"+escapePath(t.Path))
	}
	writeJSON(w, status, newVersionJSON(res.Version))
}

// isPublish reports whether r is an upload, served by publishVersion.
func isPublish(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v1/modules/")
}

// deleteTarget answers DELETE /api/v1/modules/{module}[/@v/{version}]
// ?reason=...&block=true|&purge=true with 204.
func (d *Deps) deleteTarget(c buffalo.Context) error {
	t, err := parseModuleTarget(c.Param("rest"), false)
	if err != nil {
		return d.renderError(c, err)
	}
	q := c.Request().URL.Query()
	block, err := boolParam(q.Get("block"), "block")
	if err != nil {
		return d.renderError(c, err)
	}
	purge, err := boolParam(q.Get("purge"), "purge")
	if err != nil {
		return d.renderError(c, err)
	}
	opts := modproxy.DeleteOptions{Reason: q.Get("reason"), Block: block}
	ctx, who := c.Request().Context(), principal(c)
	switch {
	case purge && (block || t.Version == ""):
		err = fmt.Errorf("%w: purge applies to one version and excludes block", modproxy.ErrInvalid)
	case purge:
		err = d.Registry.Purge(ctx, who, t.Path, t.Version, opts.Reason)
	case t.Version != "":
		err = d.Registry.Delete(ctx, who, t.Path, t.Version, opts)
	default:
		_, err = d.Registry.DeleteModule(ctx, who, t.Path, opts)
	}
	if err != nil {
		return d.renderError(c, err)
	}
	c.Response().WriteHeader(http.StatusNoContent)
	return nil
}

// showModule answers GET /api/v1/modules/{module} with every version,
// deleted ones included.
func (d *Deps) showModule(c buffalo.Context) error {
	t, err := parseModuleTarget(c.Param("rest"), false)
	if err == nil && t.Version != "" {
		err = fmt.Errorf("%w: GET /api/v1/modules/{module} lists a module's versions", modproxy.ErrNotFound)
	}
	if err != nil {
		return d.renderError(c, err)
	}
	vs, err := d.Registry.Module(c.Request().Context(), principal(c), t.Path)
	if err != nil {
		return d.renderError(c, err)
	}
	out := make([]versionJSON, len(vs))
	for i, v := range vs {
		out[i] = newVersionJSON(v)
	}
	return c.Render(http.StatusOK, r.JSON(map[string]any{"path": t.Path, "versions": out}))
}

// listModules answers GET /api/v1/modules?q=&limit=&cursor=.
func (d *Deps) listModules(c buffalo.Context) error {
	q := c.Request().URL.Query()
	limit, err := intParam(q.Get("limit"), "limit")
	if err != nil {
		return d.renderError(c, err)
	}
	page, err := d.Registry.Modules(c.Request().Context(), principal(c), modproxy.ModuleQuery{
		Prefix: q.Get("q"), Limit: limit, Cursor: q.Get("cursor"),
	})
	if err != nil {
		return d.renderError(c, err)
	}
	type moduleJSON struct {
		Path      string    `json:"path"`
		Latest    string    `json:"latest"`
		Versions  int       `json:"versions"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	mods := make([]moduleJSON, len(page.Items))
	for i, m := range page.Items {
		mods[i] = moduleJSON{m.Path, m.Latest, m.Versions, m.UpdatedAt}
	}
	return c.Render(http.StatusOK, r.JSON(map[string]any{"modules": mods, "next_cursor": page.Next}))
}

// escapePath case-encodes a valid module path for a URL.
func escapePath(path string) string {
	esc, err := module.EscapePath(path)
	if err != nil {
		return path
	}
	return esc
}

// intParam parses an optional integer query parameter.
func intParam(s, name string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a number", modproxy.ErrInvalid, name, s)
	}
	return n, nil
}

// boolParam parses an optional boolean query parameter.
func boolParam(s, name string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%w: %s=%q: want true or false", modproxy.ErrInvalid, name, s)
	}
	return b, nil
}
