package models_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// openPostgres returns a fresh, migrated PostgreSQL database and its URL.
func openPostgres(t *testing.T) (*pop.Connection, string) {
	t.Helper()
	url := modelstest.URL(t, "postgres") // skips without a server
	conn, err := models.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := models.Migrate(conn); err != nil {
		t.Fatal(err)
	}
	return conn, url
}

// heard is what a ChangeListener reported.
type heard struct {
	changed chan string // path@version
	lost    chan struct{}
}

// listen starts r listening for changes on url until the test ends.
func listen(t *testing.T, r *models.Registry, url string) *heard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	l, err := r.ListenChanges(lctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &heard{changed: make(chan string, 100), lost: make(chan struct{}, 10)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, func(path, version string) { h.changed <- path + "@" + version },
			func() { h.lost <- struct{}{} })
	}()
	t.Cleanup(func() { // before the database is dropped
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context was done")
		}
	})
	return h
}

// until returns what h heard until it heard marker, failing the test if
// that takes longer than a few seconds.
func (h *heard) until(t *testing.T, marker string) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-h.changed:
			if c == marker {
				return got
			}
			got = append(got, c)
		case <-timeout:
			t.Fatalf("did not hear %s; heard %q", marker, got)
		}
	}
}

// update runs fn in a transaction of r, failing the test if it fails.
func update(t *testing.T, r *models.Registry, fn func(tx modproxy.MetadataTx) error) {
	t.Helper()
	if err := r.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// Every committed change of a record is heard by the other registries on
// the database, in commit order; a registry's own changes and rolled-back
// ones are not.
func TestChangesAnnounced(t *testing.T) {
	conn, url := openPostgres(t)
	a, b := models.NewRegistry(conn), models.NewRegistry(conn)
	h := listen(t, b, url)
	const m = "example.com/m"

	insert(t, a, newVersion(m, "v1.0.0"))
	insert(t, b, newVersion(m, "v1.1.0")) // b's own
	errRollback := errors.New("roll back")
	if err := a.Update(context.Background(), func(tx modproxy.MetadataTx) error {
		if err := tx.InsertVersion(newVersion(m, "v1.2.0")); err != nil {
			return err
		}
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	update(t, a, func(tx modproxy.MetadataTx) error {
		return tx.FillVersion(&modproxy.Version{Path: m, Version: "v1.0.0", Time: t0.Add(time.Hour)}, storage.Info)
	})
	gone := newVersion(m, "v1.1.0")
	gone.DeletedAt, gone.DeletedBy = t0, "root"
	update(t, a, func(tx modproxy.MetadataTx) error { return tx.Tombstone(gone) })
	update(t, a, func(tx modproxy.MetadataTx) error { return tx.Restore(newVersion(m, "v1.1.0")) })
	update(t, a, func(tx modproxy.MetadataTx) error { return tx.PurgeVersion(m, "v1.0.0") })
	insert(t, a, newVersion("example.com/marker", "v0.0.1"))

	want := []string{m + "@v1.0.0", m + "@v1.0.0", m + "@v1.1.0", m + "@v1.1.0", m + "@v1.0.0"}
	if got := h.until(t, "example.com/marker@v0.0.1"); !slices.Equal(got, want) {
		t.Errorf("heard %q\nwant  %q", got, want)
	}
	select {
	case <-h.lost:
		t.Error("lost was reported on a connection that was never lost")
	default:
	}
}

// When the listener's connection is lost, it is made again, lost is
// reported (changes may have gone unheard meanwhile), and changes are
// heard again.
func TestChangesAfterLostConnection(t *testing.T) {
	conn, url := openPostgres(t)
	a, b := models.NewRegistry(conn), models.NewRegistry(conn)
	h := listen(t, b, url)

	var killed int
	err := conn.RawQuery(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'listen%'`).First(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminating the listener's connection: %d terminated, %v", killed, err)
	}
	h.lostThenHears(t, a, "the connection was terminated")
}

// A burst of changes larger than the listener's buffers (a module's
// versions deleted at once, an import) is heard to its end even when the
// connection is checked meanwhile: the check's reply comes after the
// burst, and must not wait for Run, which alone reads the burst.
func TestChangesBurstWhileChecking(t *testing.T) {
	models.SetListenPing(t, time.Millisecond, time.Minute)
	conn, url := openPostgres(t)
	a, b := models.NewRegistry(conn), models.NewRegistry(conn)
	h := listen(t, b, url)

	const n = 1000
	burst := make([]*modproxy.Version, n)
	for i := range burst {
		burst[i] = newVersion("example.com/m", fmt.Sprintf("v1.0.%d", i))
	}
	insert(t, a, burst...)
	insert(t, a, newVersion("example.com/marker", "v0.0.1"))
	if got := h.until(t, "example.com/marker@v0.0.1"); len(got) != n {
		t.Errorf("heard %d changes before the marker, want %d", len(got), n)
	}
}

// When the listener's connection stops answering without being closed (a
// database that failed over to another host, a proxy or network path that
// hangs), the check of the connection notices it: the connection is made
// again, lost is reported, and changes are heard again.
func TestChangesAfterHungConnection(t *testing.T) {
	models.SetListenPing(t, 100*time.Millisecond, 500*time.Millisecond)
	conn, url := openPostgres(t)
	a, b := models.NewRegistry(conn), models.NewRegistry(conn)
	p := newHangingProxy(t, url)
	h := listen(t, b, p.url)

	p.hang()
	h.lostThenHears(t, a, "the connection stopped answering")
}

// lostThenHears checks that lost is reported within 10 s, after what
// happened, and that a change a makes afterwards is heard.
func (h *heard) lostThenHears(t *testing.T, a *models.Registry, after string) {
	t.Helper()
	select {
	case <-h.lost:
	case <-time.After(10 * time.Second):
		t.Fatalf("lost was not reported 10 s after %s", after)
	}
	insert(t, a, newVersion("example.com/m", "v1.0.0"))
	if got := h.until(t, "example.com/m@v1.0.0"); len(got) != 0 {
		t.Errorf("heard %q before the change", got)
	}
}

// hangingProxy forwards TCP connections to a PostgreSQL server, and can
// make those it forwards hang: they stay open, and nothing passes any
// more. Connections made after are forwarded again.
type hangingProxy struct {
	url    string // the database's URL through the proxy
	mu     sync.Mutex
	hung   chan struct{} // closed by hang, for the connections made before
	closed chan struct{} // closed when the test ends
}

// newHangingProxy starts a hangingProxy to the server of the database URL
// u until the test ends.
func newHangingProxy(t *testing.T, u string) *hangingProxy {
	t.Helper()
	parsed, err := neturl.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	target := parsed.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	parsed.Host = ln.Addr().String()
	p := &hangingProxy{url: parsed.String(), hung: make(chan struct{}), closed: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); close(p.closed); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			hung := p.hung
			p.mu.Unlock()
			for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
				wg.Go(func() { p.forward(dir[0], dir[1], hung) })
			}
			wg.Go(func() {
				<-p.closed
				c.Close()
				s.Close()
			})
		}
	})
	return p
}

// forward copies from src to dst until either is closed or hung is
// closed; then it keeps both open until the test ends.
func (p *hangingProxy) forward(src, dst net.Conn, hung chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-hung:
			<-p.closed
			return
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// hang makes every connection forwarded so far hang.
func (p *hangingProxy) hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.hung)
	p.hung = make(chan struct{})
}

// Two nodes on one database and one volume: a version one deletes stops
// being served by the other, which held it in memory, without a restart.
func TestChangesInvalidateOtherNode(t *testing.T) {
	ctx := context.Background()
	conn, url := openPostgres(t)
	disk, err := storage.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	node := func() (*models.Registry, *modproxy.Service) {
		r := models.NewRegistry(conn)
		return r, modproxy.New(modproxy.Config{Metadata: r, Blobs: disk, TempDir: t.TempDir()})
	}
	_, a := node()
	rb, b := node()
	h := listen(t, rb, url)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // b's side of listen: drop what is announced
		for {
			select {
			case c := <-h.changed:
				path, version, _ := cut(c)
				b.Invalidate(path, version)
			case <-h.lost:
				b.InvalidateAll()
			case <-stop:
				return
			}
		}
	}()

	const m = "example.com/m"
	mod := []byte("module " + m + "\n")
	if err := disk.Put(ctx, m, "v1.0.0", storage.Mod, bytes.NewReader(mod)); err != nil {
		t.Fatal(err)
	}
	// Recorded as a third process would; b reads it twice, the second
	// time from memory.
	insert(t, models.NewRegistry(conn), newVersion(m, "v1.0.0"))
	for range 2 {
		f, _, err := b.Open(ctx, m, "v1.0.0", storage.Mod)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	root := auth.Principal{UserID: 1, User: "root", Role: auth.RoleAdmin, Scope: auth.ScopeAdmin}
	if err := a.Delete(ctx, root, m, "v1.0.0", modproxy.DeleteOptions{Block: true, Reason: "malware"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, _, err := b.Open(ctx, m, "v1.0.0", storage.Mod)
		if errors.Is(err, modproxy.ErrGone) {
			break
		}
		if err == nil {
			f.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other node still answers %v 10 s after the delete", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cut splits path@version.
func cut(s string) (path, version string, ok bool) {
	i := bytes.LastIndexByte([]byte(s), '@')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
