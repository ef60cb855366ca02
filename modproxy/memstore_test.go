package modproxy_test

// These tests hold modproxytest.MemStore to the documented contract of
// modproxy.Metadata, since every other test here trusts it.

import (
	"context"
	"errors"
	"testing"
	"time"

	"agora/modproxy"
	"agora/modproxy/modproxytest"
	"agora/storage"
)

// record returns a live version record of example.com/m.
func record(version string) *modproxy.Version {
	return &modproxy.Version{
		Path: "example.com/m", Version: version, Time: t0, Size: 1,
		ZipHash: "h1:zip-" + version, ModHash: "h1:mod", Source: modproxy.SourceUploaded,
		PublishedBy: "alice", PublishedAt: t0,
	}
}

// update runs fn in a transaction of m and fails the test if it fails.
func update(t *testing.T, m *modproxytest.MemStore, fn func(tx modproxy.MetadataTx) error) {
	t.Helper()
	if err := m.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func TestMemStoreRollback(t *testing.T) {
	ctx := context.Background()
	m := modproxytest.NewMemStore()
	update(t, m, func(tx modproxy.MetadataTx) error {
		for _, v := range []string{"v1.0.0", "v1.1.0"} {
			if err := tx.InsertVersion(record(v)); err != nil {
				return err
			}
		}
		return tx.AppendAudit(&modproxy.AuditEvent{Action: modproxy.ActionPublish})
	})

	errFailed := errors.New("failed")
	err := m.Update(ctx, func(tx modproxy.MetadataTx) error {
		if err := tx.InsertVersion(record("v1.2.0")); err != nil {
			return err
		}
		gone := record("v1.0.0")
		gone.DeletedAt = t0
		if err := tx.Tombstone(gone); err != nil {
			return err
		}
		if err := tx.PurgeVersion("example.com/m", "v1.1.0"); err != nil {
			return err
		}
		if err := tx.AppendAudit(&modproxy.AuditEvent{Action: modproxy.ActionDelete}); err != nil {
			return err
		}
		// The transaction sees its own writes.
		if v, err := tx.Version("example.com/m", "v1.0.0"); err != nil || v.Live() {
			t.Errorf("in tx: Version(v1.0.0) = %+v, %v; want tombstoned", v, err)
		}
		if _, err := tx.Version("example.com/m", "v1.1.0"); !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("in tx: Version(purged) = %v; want ErrNotFound", err)
		}
		if vs, err := tx.Versions("example.com/m"); err != nil || len(vs) != 2 {
			t.Errorf("in tx: Versions = %d records, %v; want 2", len(vs), err)
		}
		return errFailed
	})
	if err != errFailed {
		t.Fatalf("Update = %v; want fn's error itself", err)
	}

	vs, err := m.Versions(ctx, "example.com/m")
	if err != nil || len(vs) != 2 {
		t.Fatalf("after rollback: Versions = %d records, %v; want 2", len(vs), err)
	}
	for _, v := range vs {
		if !v.Live() {
			t.Errorf("after rollback: %s tombstoned", v.Version)
		}
	}
	if events := m.Events(); len(events) != 1 || events[0].ID != 1 {
		t.Errorf("after rollback: events %+v; want the first only, ID 1", events)
	}
	// IDs continue from the committed log.
	var e modproxy.AuditEvent
	update(t, m, func(tx modproxy.MetadataTx) error { return tx.AppendAudit(&e) })
	if e.ID != 2 {
		t.Errorf("next event ID = %d; want 2", e.ID)
	}
}

func TestMemStoreErrors(t *testing.T) {
	ctx := context.Background()
	m := modproxytest.NewMemStore()
	update(t, m, func(tx modproxy.MetadataTx) error {
		blocked := record("v1.1.0")
		blocked.DeletedAt, blocked.Blocked = t0, true
		for _, v := range []*modproxy.Version{record("v1.0.0"), blocked} {
			if err := tx.InsertVersion(v); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		name string
		fn   func(tx modproxy.MetadataTx) error
		want error
	}{
		{"insert existing", func(tx modproxy.MetadataTx) error { return tx.InsertVersion(record("v1.0.0")) }, modproxy.ErrExists},
		{"restore live", func(tx modproxy.MetadataTx) error { return tx.Restore(record("v1.0.0")) }, modproxy.ErrExists},
		{"restore missing", func(tx modproxy.MetadataTx) error { return tx.Restore(record("v9.0.0")) }, modproxy.ErrExists},
		{"restore blocked", func(tx modproxy.MetadataTx) error { return tx.Restore(record("v1.1.0")) }, modproxy.ErrExists},
		{"tombstone missing", func(tx modproxy.MetadataTx) error {
			v := record("v9.0.0")
			v.DeletedAt = t0
			return tx.Tombstone(v)
		}, modproxy.ErrNotFound},
		{"tombstone without a time", func(tx modproxy.MetadataTx) error { return tx.Tombstone(record("v1.0.0")) }, modproxy.ErrInvalid},
		{"fill deleted", func(tx modproxy.MetadataTx) error { return tx.FillVersion(record("v1.1.0"), storage.Info) }, modproxy.ErrGone},
		{"fill another zip hash", func(tx modproxy.MetadataTx) error {
			v := record("v1.0.0")
			v.ZipHash = "h1:other"
			return tx.FillVersion(v, storage.Zip)
		}, modproxy.ErrConflict},
		{"fill another go.mod hash", func(tx modproxy.MetadataTx) error {
			v := record("v1.0.0")
			v.ModHash = "h1:other"
			return tx.FillVersion(v, storage.Mod)
		}, modproxy.ErrConflict},
		{"version missing", func(tx modproxy.MetadataTx) error {
			_, err := tx.Version("example.com/m", "v9.0.0")
			return err
		}, modproxy.ErrNotFound},
	}
	for _, tt := range tests {
		if err := m.Update(ctx, tt.fn); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}
	if _, err := m.Version(ctx, "example.com/m", "v9.0.0"); !errors.Is(err, modproxy.ErrNotFound) {
		t.Errorf("Version(missing) = %v; want ErrNotFound", err)
	}
	if vs, err := m.Versions(ctx, "example.com/none"); err != nil || len(vs) != 0 {
		t.Errorf("Versions(unknown) = %v, %v; want none and no error", vs, err)
	}

	var leaked modproxy.MetadataTx
	update(t, m, func(tx modproxy.MetadataTx) error { leaked = tx; return nil })
	if err := leaked.InsertVersion(record("v2.0.0")); err == nil {
		t.Error("a transaction was usable after Update returned")
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Update(cancelled, func(modproxy.MetadataTx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update(cancelled) = %v; want context.Canceled", err)
	}
}

func TestMemStoreRestore(t *testing.T) {
	ctx := context.Background()
	m := modproxytest.NewMemStore()
	deleted := record("v1.0.0")
	deleted.DeletedAt, deleted.DeletedBy, deleted.DeleteReason = t0, "alice", "oops"
	update(t, m, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(deleted) })

	later := t0.Add(time.Hour)
	again := record("v1.0.0")
	again.Time, again.PublishedBy, again.PublishedAt = later, "bob", later
	update(t, m, func(tx modproxy.MetadataTx) error { return tx.Restore(again) })

	v, err := m.Version(ctx, "example.com/m", "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	want := *record("v1.0.0")
	want.PublishedBy, want.PublishedAt = "bob", later
	if *v != want {
		t.Errorf("restored = %+v\nwant %+v", *v, want)
	}
}

func TestMemStoreReturnsCopies(t *testing.T) {
	ctx := context.Background()
	m := modproxytest.NewMemStore()
	v := record("v1.0.0")
	update(t, m, func(tx modproxy.MetadataTx) error {
		if err := tx.InsertVersion(v); err != nil {
			return err
		}
		got, err := tx.Version("example.com/m", "v1.0.0")
		if err != nil {
			return err
		}
		got.ZipHash = "changed in tx"
		return nil
	})
	v.ZipHash = "changed by the inserter"
	got, err := m.Version(ctx, "example.com/m", "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	got.ZipHash = "changed by a reader"
	all, err := m.Versions(ctx, "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	all[0].ZipHash = "changed by a lister"
	if again, _ := m.Version(ctx, "example.com/m", "v1.0.0"); again.ZipHash != "h1:zip-v1.0.0" {
		t.Errorf("stored ZipHash = %q; want it untouched by callers", again.ZipHash)
	}
}

func TestMemStoreCursors(t *testing.T) {
	ctx := context.Background()
	m := modproxytest.NewMemStore()
	update(t, m, func(tx modproxy.MetadataTx) error {
		for _, path := range []string{"example.com/a", "example.com/b"} {
			v := record("v1.0.0")
			v.Path = path
			if err := tx.InsertVersion(v); err != nil {
				return err
			}
			if err := tx.AppendAudit(&modproxy.AuditEvent{Path: path}); err != nil {
				return err
			}
		}
		return nil
	})
	mods, err := m.Modules(ctx, modproxy.ModuleQuery{Limit: 1})
	if err != nil || mods.Next == "" {
		t.Fatalf("Modules = %+v, %v; want a next page", mods, err)
	}
	events, err := m.Audit(ctx, modproxy.AuditQuery{Limit: 1})
	if err != nil || events.Next == "" {
		t.Fatalf("Audit = %+v, %v; want a next page", events, err)
	}
	// Each listing accepts its own cursors only.
	if _, err := m.Modules(ctx, modproxy.ModuleQuery{Cursor: events.Next}); !errors.Is(err, modproxy.ErrInvalid) {
		t.Errorf("Modules(audit cursor) = %v; want ErrInvalid", err)
	}
	if _, err := m.Audit(ctx, modproxy.AuditQuery{Cursor: mods.Next}); !errors.Is(err, modproxy.ErrInvalid) {
		t.Errorf("Audit(modules cursor) = %v; want ErrInvalid", err)
	}
	if page, err := m.Modules(ctx, modproxy.ModuleQuery{Cursor: mods.Next}); err != nil || len(page.Items) != 1 || page.Items[0].Path != "example.com/b" {
		t.Errorf("Modules(next) = %+v, %v; want example.com/b", page, err)
	}
	if page, err := m.Audit(ctx, modproxy.AuditQuery{Cursor: events.Next}); err != nil || len(page.Items) != 1 || page.Items[0].ID != 1 {
		t.Errorf("Audit(next) = %+v, %v; want event 1", page, err)
	}
}
