package actions

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gobuffalo/buffalo"
	"golang.org/x/sync/singleflight"

	"agora/models"
	"agora/storage"
)

// healthz answers GET /healthz: 200 while the process serves requests.
func healthz(c buffalo.Context) error {
	return c.Render(http.StatusOK, r.String("ok"))
}

// readyReuse is how long the answer of /readyz's checks is reused.
var readyReuse = time.Second

// readiness answers GET /readyz: 200 when the database answers and both
// storage and the temporary directory that uploads and fetches are staged
// in accept writes, 503 with the reason otherwise (see notReady), and 503
// {"server": "shutting down"} once the server shuts down. A write
// of a few KiB, synced, fails on a full disk, where creating an empty file
// does not.
//
// /readyz is open to anyone, and each run of its checks writes and syncs
// two files: the requests that come while the checks run share their
// answer, which is reused for readyReuse after, so that no client can keep
// the server's disks busy syncing (and its database answering pings) by
// asking again and again. A monitor that asks every few seconds sees
// every change.
type readiness struct {
	d      *Deps
	flight singleflight.Group

	mu   sync.Mutex
	last *readyAnswer // nil before the first run
}

// readyAnswer is the answer of one run of the checks.
type readyAnswer struct {
	at     time.Time // when the checks ended
	status int
	checks map[string]string // not modified once made
}

func (rd *readiness) serve(c buffalo.Context) error {
	if rd.d.ShuttingDown != nil && rd.d.ShuttingDown() {
		return c.Render(http.StatusServiceUnavailable, r.JSON(map[string]string{"server": "shutting down"}))
	}
	a := rd.answer()
	return c.Render(a.status, r.JSON(a.checks))
}

// answer returns the last answer if it is recent, else that of the run of
// the checks under way, or of a new one. The checks run detached from the
// requests that wait for them, so that one that goes away does not fail
// the database's check for the others; they take at most their 5 s.
func (rd *readiness) answer() *readyAnswer {
	rd.mu.Lock()
	last := rd.last
	rd.mu.Unlock()
	if last != nil && time.Since(last.at) < readyReuse {
		return last
	}
	v, _, _ := rd.flight.Do("", func() (any, error) {
		a := rd.d.checkReady()
		rd.mu.Lock()
		rd.last = a
		rd.mu.Unlock()
		return a, nil
	})
	return v.(*readyAnswer)
}

// checkReady runs the checks of /readyz.
func (d *Deps) checkReady() *readyAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	return &readyAnswer{at: time.Now(), status: status, checks: checks}
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

// writeProbe checks that dir takes data (see storage.Probe). It is a
// variable so that tests can count the probes.
var writeProbe = func(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	return storage.Probe(f)
}
