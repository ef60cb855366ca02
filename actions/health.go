package actions

import (
	"context"
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
// in accept writes, 503 with the reason otherwise. A write of a few KiB,
// synced, fails on a full disk, where creating an empty file does not.
func (d *Deps) readyz(c buffalo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "storage": "ok", "tmp": "ok"}
	status := http.StatusOK
	if err := models.Ping(ctx, d.DB); err != nil {
		checks["database"], status = err.Error(), http.StatusServiceUnavailable
	}
	if err := writeProbe(d.Config.StorageDir); err != nil {
		checks["storage"], status = err.Error(), http.StatusServiceUnavailable
	}
	if err := d.Registry.CheckTempDir(); err != nil {
		checks["tmp"], status = err.Error(), http.StatusServiceUnavailable
	}
	return c.Render(status, r.JSON(checks))
}

// writeProbe checks that dir takes data (see storage.Probe).
func writeProbe(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	return storage.Probe(f)
}
