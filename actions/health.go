package actions

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/gobuffalo/buffalo"

	"agora/models"
	"agora/storage"
)

// healthz answers GET /healthz: 200 while the process serves requests.
func healthz(c buffalo.Context) error {
	return c.Render(http.StatusOK, r.String("ok"))
}

// readyz answers GET /readyz: 200 when the database answers and both
// storage and the temporary directory that uploads and fetches are staged
// in accept writes, 503 with the reason otherwise (see notReady). A write
// of a few KiB, synced, fails on a full disk, where creating an empty file
// does not.
func (d *Deps) readyz(c buffalo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "storage": "ok", "tmp": "ok"}
	status := http.StatusOK
	if err := models.Ping(ctx, d.DB); err != nil {
		checks["database"], status = d.notReady("database", err), http.StatusServiceUnavailable
	}
	if err := writeProbe(d.Config.StorageDir); err != nil {
		checks["storage"], status = d.notReady("storage", err), http.StatusServiceUnavailable
	}
	if err := d.Registry.CheckTempDir(); err != nil {
		checks["tmp"], status = d.notReady("tmp", err), http.StatusServiceUnavailable
	}
	return c.Render(status, r.JSON(checks))
}

// notReady logs the error of a failed readiness check and returns what
// /readyz answers of it: the cause of a file system error without the
// file's name (such as "no space left on device"), else only that the
// check failed. /readyz is open to anyone, who has no business learning
// where the server keeps its files or how it reaches its database.
func (d *Deps) notReady(check string, err error) string {
	d.Logger.Error("not ready", "check", check, "err", err)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return "failed; the server's log has the error"
}

// writeProbe checks that dir takes data (see storage.Probe).
func writeProbe(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	return storage.Probe(f)
}
