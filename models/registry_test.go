package models_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// newVersion returns a live version record published by alice at t0.
func newVersion(path, version string) *modproxy.Version {
	return &modproxy.Version{
		Path: path, Version: version, Time: t0, Size: 10,
		ZipHash: "h1:zip-" + version, ModHash: "h1:mod-" + version,
		Source: modproxy.SourceUploaded, PublishedBy: "alice", PublishedAt: t0,
	}
}

// insert records versions, failing the test on error.
func insert(t *testing.T, r *models.Registry, vs ...*modproxy.Version) {
	t.Helper()
	err := r.Update(context.Background(), func(tx modproxy.MetadataTx) error {
		for _, v := range vs {
			if err := tx.InsertVersion(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRegistryVersionRoundTrip(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		want := newVersion("example.com/a", "v1.0.0")
		insert(t, r, want)

		got, err := r.Version(ctx, "example.com/a", "v1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if *got != *want {
			t.Errorf("Version() = %+v\nwant        %+v", got, want)
		}
		if _, err := r.Version(ctx, "example.com/a", "v1.0.1"); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("unknown version: %v, want ErrNotFound", err)
		}
		if _, err := r.Version(ctx, "example.com/b", "v1.0.0"); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("unknown module: %v, want ErrNotFound", err)
		}
	})
}

func TestRegistryInsertExisting(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		insert(t, r, newVersion("example.com/a", "v1.0.0"))
		other := newVersion("example.com/a", "v1.0.0")
		other.ZipHash = "h1:other"
		err := r.Update(context.Background(), func(tx modproxy.MetadataTx) error { return tx.InsertVersion(other) })
		if !errors.Is(err, modproxy.ErrExists) {
			t.Fatalf("InsertVersion of a recorded version: %v, want ErrExists", err)
		}
		got, _ := r.Version(context.Background(), "example.com/a", "v1.0.0")
		if got.ZipHash != "h1:zip-v1.0.0" {
			t.Errorf("the refused insert changed the record: %+v", got)
		}
	})
}

func TestRegistryConcurrentInsertsOneWins(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
			errs    []error
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := newVersion("example.com/race", "v1.0.0")
				v.ZipHash = fmt.Sprintf("h1:%d", i)
				err := r.Update(context.Background(), func(tx modproxy.MetadataTx) error { return tx.InsertVersion(v) })
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case !errors.Is(err, modproxy.ErrExists):
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
		if created != 1 || len(errs) > 0 {
			t.Errorf("%d of %d concurrent inserts created the version, unexpected errors: %v", created, n, errs)
		}
	})
}

func TestRegistryRollback(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		boom := errors.New("boom")
		err := r.Update(ctx, func(tx modproxy.MetadataTx) error {
			if err := tx.InsertVersion(newVersion("example.com/a", "v1.0.0")); err != nil {
				return err
			}
			if err := tx.AppendAudit(&modproxy.AuditEvent{Actor: "alice", Action: modproxy.ActionPublish}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want fn's error", err)
		}
		if vs, _ := r.Versions(ctx, "example.com/a"); len(vs) != 0 {
			t.Errorf("rolled-back version is visible: %v", vs)
		}
		page, err := r.Audit(ctx, modproxy.AuditQuery{Limit: 10})
		if err != nil || len(page.Items) != 0 {
			t.Errorf("rolled-back audit event is visible: %v, %v", page.Items, err)
		}
	})
}

func TestRegistryTombstoneRestorePurge(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		insert(t, r, newVersion("example.com/a", "v1.0.0"))
		update := func(fn func(tx modproxy.MetadataTx) error) error { return r.Update(ctx, fn) }

		dead := newVersion("example.com/a", "v1.0.0")
		dead.DeletedAt, dead.DeletedBy, dead.DeleteReason = t0.Add(time.Hour), "bob", "leaked a secret"
		if err := update(func(tx modproxy.MetadataTx) error { return tx.Tombstone(dead) }); err != nil {
			t.Fatal(err)
		}
		got, _ := r.Version(ctx, "example.com/a", "v1.0.0")
		if got.Live() || !got.DeletedAt.Equal(dead.DeletedAt) || got.DeletedBy != "bob" || got.DeleteReason != "leaked a secret" || got.Blocked {
			t.Errorf("after Tombstone: %+v", got)
		}

		again := newVersion("example.com/a", "v1.0.0")
		again.PublishedBy, again.PublishedAt = "carol", t0.Add(2*time.Hour)
		if err := update(func(tx modproxy.MetadataTx) error { return tx.Restore(again) }); err != nil {
			t.Fatal(err)
		}
		got, _ = r.Version(ctx, "example.com/a", "v1.0.0")
		if !got.Live() || got.PublishedBy != "carol" || got.DeletedBy != "" {
			t.Errorf("after Restore: %+v", got)
		}
		err := update(func(tx modproxy.MetadataTx) error { return tx.Restore(again) })
		if !errors.Is(err, modproxy.ErrExists) {
			t.Errorf("Restore of a live version: %v, want ErrExists", err)
		}

		blocked := *dead
		blocked.Blocked = true
		if err := update(func(tx modproxy.MetadataTx) error { return tx.Tombstone(&blocked) }); err != nil {
			t.Fatal(err)
		}
		if err := update(func(tx modproxy.MetadataTx) error { return tx.Restore(again) }); !errors.Is(err, modproxy.ErrExists) {
			t.Errorf("Restore of a blocked version: %v, want ErrExists", err)
		}

		missing := newVersion("example.com/a", "v9.0.0")
		missing.DeletedAt = t0
		if err := update(func(tx modproxy.MetadataTx) error { return tx.Tombstone(missing) }); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("Tombstone of an unknown version: %v, want ErrNotFound", err)
		}

		if err := update(func(tx modproxy.MetadataTx) error { return tx.PurgeVersion("example.com/a", "v1.0.0") }); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Version(ctx, "example.com/a", "v1.0.0"); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("after PurgeVersion: %v, want ErrNotFound", err)
		}
		// A purged version may be recorded again, with other content.
		other := newVersion("example.com/a", "v1.0.0")
		other.ZipHash = "h1:new"
		insert(t, r, other)
	})
}

func TestRegistryModules(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		// Prefix-sharing paths, and the @latest rule inside each summary.
		insert(t, r,
			newVersion("a.com/b", "v1.0.0"), newVersion("a.com/b", "v1.2.0"), newVersion("a.com/b", "v1.3.0-rc.1"),
			newVersion("a.com/b-c", "v0.1.0-pre"),
			newVersion("a.com/b/v2", "v2.0.0"),
			newVersion("a.com/bc", "v0.0.0-20260101000000-abcdefabcdef"),
			newVersion("z.org/x", "v1.0.0"),
		)
		dead := newVersion("z.org/x", "v1.0.0")
		dead.DeletedAt = t0
		if err := r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.Tombstone(dead) }); err != nil {
			t.Fatal(err)
		}

		page, err := r.Modules(ctx, modproxy.ModuleQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		want := []modproxy.ModuleSummary{
			{Path: "a.com/b", Latest: "v1.2.0", Versions: 3},
			{Path: "a.com/b-c", Latest: "v0.1.0-pre", Versions: 1},
			{Path: "a.com/b/v2", Latest: "v2.0.0", Versions: 1},
			{Path: "a.com/bc", Latest: "v0.0.0-20260101000000-abcdefabcdef", Versions: 1},
			{Path: "z.org/x", Latest: "", Versions: 0},
		}
		// Databases may collate "a.com/b-c" and "a.com/b/v2" differently;
		// compare as sets, and check order stability through pagination below.
		got := map[string]modproxy.ModuleSummary{}
		for _, m := range page.Items {
			m.UpdatedAt = time.Time{}
			got[m.Path] = m
		}
		if len(got) != len(want) || page.Next != "" {
			t.Fatalf("Modules() = %+v (next %q), want %d modules and no next page", page.Items, page.Next, len(want))
		}
		for _, w := range want {
			if got[w.Path] != w {
				t.Errorf("Modules()[%s] = %+v, want %+v", w.Path, got[w.Path], w)
			}
		}

		// Paging one at a time visits every module once, in the same order.
		var paged []string
		q := modproxy.ModuleQuery{Limit: 1}
		for i := 0; i < 10; i++ {
			p, err := r.Modules(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range p.Items {
				paged = append(paged, m.Path)
			}
			if p.Next == "" {
				break
			}
			q.Cursor = p.Next
		}
		if len(paged) != len(page.Items) {
			t.Fatalf("paging visited %v, want %d modules", paged, len(page.Items))
		}
		for i := range paged {
			if paged[i] != page.Items[i].Path {
				t.Errorf("page %d = %s, want %s", i, paged[i], page.Items[i].Path)
			}
		}

		p, err := r.Modules(ctx, modproxy.ModuleQuery{Prefix: "a.com/b/", Limit: 10})
		if err != nil || len(p.Items) != 1 || p.Items[0].Path != "a.com/b/v2" {
			t.Errorf("prefix a.com/b/: %+v, %v", p.Items, err)
		}
		p, err = r.Modules(ctx, modproxy.ModuleQuery{Prefix: "a.com/b", Limit: 10})
		if err != nil || len(p.Items) != 4 {
			t.Errorf("prefix a.com/b: %+v, %v; want 4 modules", p.Items, err)
		}
		if _, err := r.Modules(ctx, modproxy.ModuleQuery{Cursor: "not base64!", Limit: 10}); !errors.Is(err, modproxy.ErrInvalid) {
			t.Errorf("bad cursor: %v, want ErrInvalid", err)
		}
	})
}

func TestRegistryAudit(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		events := []modproxy.AuditEvent{
			{At: t0, Actor: "alice", Action: modproxy.ActionPublish, Path: "example.com/a", Version: "v1.0.0"},
			{At: t0.Add(time.Minute), Actor: "bob", Action: modproxy.ActionPublish, Path: "example.com/b", Version: "v1.0.0"},
			{At: t0.Add(2 * time.Minute), Actor: "alice", Action: modproxy.ActionDelete, Path: "example.com/a", Version: "v1.0.0", Detail: "oops"},
			{At: t0.Add(3 * time.Minute), Actor: "cli", Action: modproxy.ActionUserCreate, Detail: "user carol"},
		}
		err := r.Update(ctx, func(tx modproxy.MetadataTx) error {
			for i := range events {
				if err := tx.AppendAudit(&events[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := func(q modproxy.AuditQuery) []string {
			t.Helper()
			if q.Limit == 0 {
				q.Limit = 100
			}
			p, err := r.Audit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range p.Items {
				out = append(out, e.Actor+"/"+e.Action)
			}
			return out
		}
		for _, tt := range []struct {
			name string
			q    modproxy.AuditQuery
			want string
		}{
			{"all, newest first", modproxy.AuditQuery{}, "[cli/user.create alice/delete bob/publish alice/publish]"},
			{"actor", modproxy.AuditQuery{Actor: "alice"}, "[alice/delete alice/publish]"},
			{"action", modproxy.AuditQuery{Action: modproxy.ActionPublish}, "[bob/publish alice/publish]"},
			{"module", modproxy.AuditQuery{Path: "example.com/a"}, "[alice/delete alice/publish]"},
			{"since inclusive", modproxy.AuditQuery{Since: t0.Add(time.Minute)}, "[cli/user.create alice/delete bob/publish]"},
			{"until exclusive", modproxy.AuditQuery{Until: t0.Add(time.Minute)}, "[alice/publish]"},
			{"combined", modproxy.AuditQuery{Actor: "alice", Since: t0.Add(time.Second)}, "[alice/delete]"},
		} {
			if got := fmt.Sprint(ids(tt.q)); got != tt.want {
				t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
			}
		}

		p, err := r.Audit(ctx, modproxy.AuditQuery{Limit: 3})
		if err != nil || len(p.Items) != 3 || p.Next == "" {
			t.Fatalf("first page: %v (next %q), %v", p.Items, p.Next, err)
		}
		p2, err := r.Audit(ctx, modproxy.AuditQuery{Limit: 3, Cursor: p.Next})
		if err != nil || len(p2.Items) != 1 || p2.Next != "" || p2.Items[0].ID != events[0].ID {
			t.Errorf("second page: %+v (next %q), %v", p2.Items, p2.Next, err)
		}
		if got := p.Items[1]; got.Detail != "oops" || !got.At.Equal(events[2].At) || got.Path != "example.com/a" {
			t.Errorf("event round trip: %+v", got)
		}
	})
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		err := r.Update(context.Background(), func(tx modproxy.MetadataTx) error {
			return tx.AppendAudit(&modproxy.AuditEvent{Actor: "alice", Action: modproxy.ActionPublish})
		})
		if err != nil {
			t.Fatal(err)
		}
		// No code path changes an audit row; the database refuses to, too.
		if err := conn.RawQuery("UPDATE audit_events SET actor = 'mallory'").Exec(); err == nil {
			t.Error("UPDATE of audit_events succeeded")
		}
		if err := conn.RawQuery("DELETE FROM audit_events").Exec(); err == nil {
			t.Error("DELETE from audit_events succeeded")
		}
		var n int
		if err := conn.RawQuery("SELECT count(*) FROM audit_events WHERE actor = 'alice'").First(&n); err != nil || n != 1 {
			t.Errorf("audit rows after refused changes: %d, %v", n, err)
		}
	})
}

func TestMigrationsGoDownAndUp(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		box, err := pop.NewMigrationBox(migrationsFS(), conn)
		if err != nil {
			t.Fatal(err)
		}
		if err := box.Down(-1); err != nil {
			t.Fatalf("every down: %v", err)
		}
		if err := models.Migrate(conn); err != nil {
			t.Fatalf("up again: %v", err)
		}
	})
}

// Nodes starting together on a fresh database all migrate it: they must
// take turns, and all start. On SQLite, the processes are a server and the
// commands that may run beside it (agora import, agora user create), each
// on connections of its own, as these are here.
func TestMigrateConcurrently(t *testing.T) {
	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			// The race is lost or won at random: give it a few chances.
			for range 5 {
				url := modelstest.URL(t, dialect)
				const nodes = 4
				errs := make(chan error, nodes)
				start := make(chan struct{})
				for range nodes {
					conn, err := models.Connect(url)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { conn.Close() })
					go func() {
						<-start
						errs <- models.Migrate(conn)
					}()
				}
				close(start)
				for range nodes {
					if err := <-errs; err != nil {
						t.Fatalf("Migrate beside %d others: %v", nodes-1, err)
					}
				}
			}
		})
	}
}

// TestRegistryConcurrentWritersAndReaders runs many write transactions
// beside readers: on SQLite, writers queue in this process instead of
// failing or sleeping on a locked database, and readers are not held up.
func TestRegistryConcurrentWritersAndReaders(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		const writers, readers = 48, 8
		ctx := context.Background()
		done := make(chan struct{})
		var (
			wg, rg sync.WaitGroup
			mu     sync.Mutex
			errs   []error
		)
		fail := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		}
		for range readers {
			rg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := r.Versions(ctx, "example.com/busy"); err != nil && !errors.Is(err, modproxy.ErrNotFound) {
						fail(err)
						return
					}
				}
			})
		}
		for i := range writers {
			wg.Go(func() {
				v := newVersion("example.com/busy", fmt.Sprintf("v1.0.%d", i))
				if err := r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(v) }); err != nil {
					fail(err)
				}
			})
		}
		wg.Wait()
		close(done)
		rg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%d errors, the first: %v", len(errs), errs[0])
		}
		vs, err := r.Versions(ctx, "example.com/busy")
		if err != nil || len(vs) != writers {
			t.Fatalf("Versions: %d versions, %v; want %d", len(vs), err, writers)
		}
	})
}

// TestSQLiteWriterWaitingGivesUp checks that a write transaction waiting for
// SQLite's one writer returns when its context ends.
func TestSQLiteWriterWaitingGivesUp(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		if conn.Dialect.Name() != "sqlite3" {
			t.Skip("PostgreSQL lets writers of different rows run at once")
		}
		r := models.NewRegistry(conn)
		inside, release := make(chan struct{}), make(chan struct{})
		go r.Update(context.Background(), func(tx modproxy.MetadataTx) error {
			close(inside)
			<-release
			return nil
		})
		<-inside
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		res := make(chan error, 1)
		go func() {
			res <- r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(newVersion("example.com/late", "v1.0.0")) })
		}()
		select {
		case err := <-res:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Update while another writer holds SQLite: %v, want %v", err, context.DeadlineExceeded)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Update still waits for the writer 10 s after its context ended")
		}
		if _, err := r.Version(context.Background(), "example.com/late", "v1.0.0"); !errors.Is(err, modproxy.ErrNotFound) {
			t.Fatalf("the abandoned write was recorded: %v", err)
		}
	})
}

// TestRegistryTxReadWaitsForWriter checks that a transaction's read of a
// record waits for another transaction that read it to end, and then sees
// what that one wrote: two nodes completing one fetched version read its
// record in turn, so only the first records a zip hash. (On SQLite, one
// transaction runs at a time in any case.)
func TestRegistryTxReadWaitsForWriter(t *testing.T) {
	conn, _ := openPostgres(t)
	a, b := models.NewRegistry(conn), models.NewRegistry(conn)
	ctx := context.Background()
	v := newVersion("example.com/fetched", "v1.0.0")
	v.ZipHash, v.Size, v.Source = "", 0, "https://proxy.example"
	insert(t, a, v)

	bRead := make(chan *modproxy.Version, 1)
	bMayWrite := make(chan struct{})
	bDone := make(chan error, 1)
	err := a.Update(ctx, func(tx modproxy.MetadataTx) error {
		rec, err := tx.Version(v.Path, v.Version)
		if err != nil {
			return err
		}
		go func() {
			bDone <- b.Update(ctx, func(tx modproxy.MetadataTx) error {
				rec, err := tx.Version(v.Path, v.Version)
				if err != nil {
					return err
				}
				bRead <- rec
				<-bMayWrite
				if rec.Has(storage.Zip) {
					return nil
				}
				y := *rec
				y.ZipHash, y.Size = "h1:B", 2
				return tx.FillVersion(&y, storage.Zip)
			})
		}()
		waitForLockOrDone(t, conn, bRead)
		x := *rec
		x.ZipHash, x.Size = "h1:A", 1
		return tx.FillVersion(&x, storage.Zip)
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := <-bRead
	close(bMayWrite)
	if err := <-bDone; err != nil {
		t.Fatalf("the second transaction: %v", err)
	}
	if seen.ZipHash != "h1:A" {
		t.Errorf("the second transaction read zip hash %q while the first held the record; want %q, which the first committed", seen.ZipHash, "h1:A")
	}
	got, err := a.Version(ctx, v.Path, v.Version)
	if err != nil {
		t.Fatal(err)
	}
	if got.ZipHash != "h1:A" || got.Size != 1 {
		t.Errorf("recorded zip hash %q, size %d; want the first's, h1:A and 1", got.ZipHash, got.Size)
	}
}

// waitForLockOrDone returns once a session of conn's PostgreSQL database
// waits for a lock, or once done has a value, which it leaves there.
func waitForLockOrDone[T any](t *testing.T, conn *pop.Connection, done chan T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case x := <-done:
			done <- x
			return
		default:
		}
		var waiting int
		err := conn.RawQuery(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).First(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
	}
	t.Fatal("no session waited for a lock, nor did the other transaction go on, within 10 s")
}

// TestRegistryLongestPathAndVersion checks that the longest module path and
// version the registry accepts (512 and 256 bytes) fit the columns.
func TestRegistryLongestPathAndVersion(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		v := newVersion("example.com"+strings.Repeat("/abcdefghi", 50)+"j", "v1.0.0-"+strings.Repeat("a", 249))
		if len(v.Path) != 512 || len(v.Version) != 256 {
			t.Fatalf("a path of %d bytes and a version of %d", len(v.Path), len(v.Version))
		}
		v.ZipHash, v.ModHash = "h1:zip", "h1:mod"
		insert(t, r, v)
		update(t, r, func(tx modproxy.MetadataTx) error {
			return tx.AppendAudit(&modproxy.AuditEvent{Action: modproxy.ActionPublish, Path: v.Path, Version: v.Version})
		})
		if _, err := r.Version(context.Background(), v.Path, v.Version); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRegistryPageSizes checks that the Registry takes page sizes as the
// in-memory store does: 0 is the default size, on an empty page too, and
// one below 1 or over the maximum is invalid.
func TestRegistryPageSizes(t *testing.T) {
	check := func(t *testing.T, m modproxy.Metadata) {
		ctx := context.Background()
		for _, limit := range []int{0, -1, modproxy.MaxPageSize + 1} {
			mods, err := m.Modules(ctx, modproxy.ModuleQuery{Limit: limit})
			if limit == 0 && (err != nil || len(mods.Items) != 0) || limit != 0 && !errors.Is(err, modproxy.ErrInvalid) {
				t.Errorf("Modules(Limit %d) of none: %+v, %v", limit, mods, err)
			}
			events, err := m.Audit(ctx, modproxy.AuditQuery{Limit: limit})
			if limit == 0 && (err != nil || len(events.Items) != 0) || limit != 0 && !errors.Is(err, modproxy.ErrInvalid) {
				t.Errorf("Audit(Limit %d) of none: %+v, %v", limit, events, err)
			}
		}
		err := m.Update(ctx, func(tx modproxy.MetadataTx) error {
			for i := range modproxy.DefaultPageSize + 1 {
				if err := tx.InsertVersion(newVersion(fmt.Sprintf("example.com/m%03d", i), "v1.0.0")); err != nil {
					return err
				}
				if err := tx.AppendAudit(&modproxy.AuditEvent{Actor: "alice", Action: modproxy.ActionPublish}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mods, err := m.Modules(ctx, modproxy.ModuleQuery{})
		if err != nil || len(mods.Items) != modproxy.DefaultPageSize || mods.Next == "" {
			t.Errorf("Modules(Limit 0): %d modules, next %q, %v; want %d and a next page", len(mods.Items), mods.Next, err, modproxy.DefaultPageSize)
		}
		events, err := m.Audit(ctx, modproxy.AuditQuery{})
		if err != nil || len(events.Items) != modproxy.DefaultPageSize || events.Next == "" {
			t.Errorf("Audit(Limit 0): %d events, next %q, %v; want %d and a next page", len(events.Items), events.Next, err, modproxy.DefaultPageSize)
		}
	}
	t.Run("memstore", func(t *testing.T) { check(t, modproxytest.NewMemStore()) })
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("panic: %v", p)
			}
		}()
		check(t, models.NewRegistry(conn))
	})
}

// TestRegistryTimesToTheMicrosecond checks that every store keeps times to
// the microsecond, cutting off the rest as the in-memory store does:
// PostgreSQL keeps microseconds and rounds, so 05.999999999 would read
// back as 06, a second later than the .info that gave it.
func TestRegistryTimesToTheMicrosecond(t *testing.T) {
	at := time.Date(2023, 1, 2, 3, 4, 5, 999999999, time.UTC)
	kept := at.Truncate(time.Microsecond)
	check := func(t *testing.T, m modproxy.Metadata) {
		ctx := context.Background()
		v := newVersion("example.com/t", "v1.0.0")
		v.Time, v.PublishedAt = at, at
		fetched := newVersion("example.com/t", "v1.1.0")
		fetched.Time = time.Time{}
		deleted := *v
		deleted.DeletedAt, deleted.DeletedBy = at, "admin"
		e := &modproxy.AuditEvent{At: at, Actor: "alice", Action: modproxy.ActionPublish}
		err := m.Update(ctx, func(tx modproxy.MetadataTx) error {
			if err := tx.InsertVersion(v); err != nil {
				return err
			}
			if err := tx.InsertVersion(fetched); err != nil {
				return err
			}
			filled := *fetched
			filled.Time = at
			if err := tx.FillVersion(&filled, storage.Info); err != nil {
				return err
			}
			if err := tx.Tombstone(&deleted); err != nil {
				return err
			}
			return tx.AppendAudit(e)
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Version(ctx, v.Path, v.Version)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(kept) || !got.PublishedAt.Equal(kept) || !got.DeletedAt.Equal(kept) {
			t.Errorf("times of %s read back as %v, %v, %v; want %v", v.Version, got.Time, got.PublishedAt, got.DeletedAt, kept)
		}
		if got, err := m.Version(ctx, fetched.Path, fetched.Version); err != nil || !got.Time.Equal(kept) {
			t.Errorf("time of %s read back as %v, %v; want %v", fetched.Version, got.Time, err, kept)
		}
		err = m.Update(ctx, func(tx modproxy.MetadataTx) error {
			restored := *v
			restored.PublishedAt = at.Add(time.Hour)
			return tx.Restore(&restored)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := m.Version(ctx, v.Path, v.Version); !got.PublishedAt.Equal(kept.Add(time.Hour)) {
			t.Errorf("published at %v after a restore; want %v", got.PublishedAt, kept.Add(time.Hour))
		}
		// An event is found from the time it is shown with, and before it
		// only, whether that time or the one given is asked for.
		for _, bound := range []time.Time{at, kept} {
			since, err := m.Audit(ctx, modproxy.AuditQuery{Since: bound})
			if err != nil || len(since.Items) != 1 || !since.Items[0].At.Equal(kept) {
				t.Errorf("events since %v: %+v, %v; want the one at %v", bound, since.Items, err, kept)
			}
			until, err := m.Audit(ctx, modproxy.AuditQuery{Until: bound})
			if err != nil || len(until.Items) != 0 {
				t.Errorf("events until %v: %+v, %v; want none", bound, until.Items, err)
			}
		}
	}
	t.Run("memstore", func(t *testing.T) { check(t, modproxytest.NewMemStore()) })
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) { check(t, models.NewRegistry(conn)) })
}

// TestRegistryRestoreRefusals checks that the Registry and the in-memory
// store refuse alike to restore a record that is live, blocked or missing:
// with ErrExists, changing nothing.
func TestRegistryRestoreRefusals(t *testing.T) {
	check := func(t *testing.T, m modproxy.Metadata) {
		ctx := context.Background()
		blocked := newVersion("example.com/r", "v1.1.0")
		err := m.Update(ctx, func(tx modproxy.MetadataTx) error {
			if err := tx.InsertVersion(newVersion("example.com/r", "v1.0.0")); err != nil {
				return err
			}
			if err := tx.InsertVersion(blocked); err != nil {
				return err
			}
			b := *blocked
			b.DeletedAt, b.DeletedBy, b.Blocked = t0, "admin", true
			return tx.Tombstone(&b)
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, version := range []string{"v1.0.0", "v1.1.0", "v9.0.0"} {
			again := newVersion("example.com/r", version)
			again.PublishedBy = "mallory"
			err := m.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.Restore(again) })
			if !errors.Is(err, modproxy.ErrExists) {
				t.Errorf("Restore of %s: %v; want ErrExists", version, err)
			}
		}
		got, err := m.Version(ctx, blocked.Path, blocked.Version)
		if err != nil || got.Live() || !got.Blocked || got.PublishedBy != "alice" {
			t.Errorf("the blocked version after a refused restore: %+v, %v", got, err)
		}
	}
	t.Run("memstore", func(t *testing.T) { check(t, modproxytest.NewMemStore()) })
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) { check(t, models.NewRegistry(conn)) })
}

// TestRegistryAuditCursorBeyondIDs checks that an audit cursor past every
// id (any int64 is one) gives the same page on both databases: PostgreSQL
// took the id for its integer column's type, and failed the query.
func TestRegistryAuditCursorBeyondIDs(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		update(t, r, func(tx modproxy.MetadataTx) error {
			return tx.AppendAudit(&modproxy.AuditEvent{Actor: "alice", Action: modproxy.ActionPublish})
		})
		for _, id := range []string{"2147483648", "9223372036854775807"} {
			cursor := base64.RawURLEncoding.EncodeToString([]byte(id))
			p, err := r.Audit(context.Background(), modproxy.AuditQuery{Cursor: cursor})
			if err != nil || len(p.Items) != 1 {
				t.Errorf("events before id %s: %+v, %v; want the one event", id, p.Items, err)
			}
		}
	})
}
