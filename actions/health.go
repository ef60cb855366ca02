package actions

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/gobuffalo/buffalo"

	"agora/models"
)

// healthz answers GET /healthz: 200 while the process serves requests.
func healthz(c buffalo.Context) error {
	return c.Render(http.StatusOK, r.String("ok"))
}

// readyz answers GET /readyz: 200 when the database answers and storage
// accepts writes, 503 with the reason otherwise.
func (d *Deps) readyz(c buffalo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "storage": "ok"}
	status := http.StatusOK
	if err := models.Ping(ctx, d.DB); err != nil {
		checks["database"], status = err.Error(), http.StatusServiceUnavailable
	}
	if f, err := os.CreateTemp(d.Config.StorageDir, ".readyz-*"); err != nil {
		checks["storage"], status = err.Error(), http.StatusServiceUnavailable
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	return c.Render(status, r.JSON(checks))
}
