package models_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// TestRegistryFillVersion records a version fetched file by file: each
// fill writes its own columns only, so concurrent fills of different kinds
// keep each other's.
func TestRegistryFillVersion(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		const path, version = "example.com/fetched", "v1.0.0"
		insert(t, r, &modproxy.Version{Path: path, Version: version, ModHash: "h1:mod", Source: "https://proxy.example", PublishedAt: t0})

		fills := []struct {
			kind storage.Kind
			v    modproxy.Version
		}{
			{storage.Info, modproxy.Version{Time: t0.Add(-time.Hour)}},
			{storage.Zip, modproxy.Version{ZipHash: "h1:zip", Size: 42, ModHash: "h1:mod"}},
		}
		var wg sync.WaitGroup
		for _, f := range fills {
			wg.Go(func() {
				v := f.v
				v.Path, v.Version = path, version
				if err := r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.FillVersion(&v, f.kind) }); err != nil {
					t.Errorf("FillVersion(%s): %v", f.kind, err)
				}
			})
		}
		wg.Wait()
		got, err := r.Version(ctx, path, version)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(t0.Add(-time.Hour)) || got.ZipHash != "h1:zip" || got.Size != 42 || got.ModHash != "h1:mod" || got.Source != "https://proxy.example" {
			t.Errorf("record after both fills = %+v", got)
		}
		err = r.Update(ctx, func(tx modproxy.MetadataTx) error {
			return tx.FillVersion(&modproxy.Version{Path: path, Version: "v9.0.0"}, storage.Mod)
		})
		if !errors.Is(err, modproxy.ErrNotFound) {
			t.Errorf("FillVersion of a missing record: %v; want ErrNotFound", err)
		}
	})
}

// TestRegistryExclusive checks that Exclusive excludes, across
// connections (as across nodes) on PostgreSQL, across opens of the lock
// file on SQLite, and that the fn can query the database while the lock
// is held.
func TestRegistryExclusive(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		var inside, most atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				err := r.Exclusive(ctx, "fetch example.com/m@v1.0.0.zip", func(ctx context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for {
						m := most.Load()
						if n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					_, err := r.Versions(ctx, "example.com/m") // the pool still has connections
					time.Sleep(5 * time.Millisecond)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if most.Load() != 1 {
			t.Errorf("at most %d ran inside Exclusive at once; want 1", most.Load())
		}
		// Other keys do not wait.
		if err := r.Exclusive(ctx, "a", func(ctx context.Context) error {
			return r.Exclusive(ctx, "b", func(context.Context) error { return nil })
		}); err != nil {
			t.Errorf("nested Exclusive of another key: %v", err)
		}
	})
}

// TestRegistryFillVersionGuards checks that FillVersion fills only a live
// record and records a hash once, whatever its caller read before: a fill
// of a deleted record, or with another hash, changes nothing.
func TestRegistryFillVersionGuards(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		const path = "example.com/fetched"
		insert(t, r,
			&modproxy.Version{Path: path, Version: "v1.0.0", ModHash: "h1:mod", Source: "https://proxy.example", PublishedAt: t0},
			&modproxy.Version{Path: path, Version: "v1.1.0", ModHash: "h1:mod", ZipHash: "h1:zip", Size: 1, Source: "https://proxy.example", PublishedAt: t0},
			&modproxy.Version{Path: path, Version: "v1.2.0", ModHash: "h1:mod", Source: "https://proxy.example", PublishedAt: t0},
		)
		update(t, r, func(tx modproxy.MetadataTx) error {
			return tx.Tombstone(&modproxy.Version{Path: path, Version: "v1.2.0", DeletedAt: t0, DeletedBy: "admin"})
		})
		tests := []struct {
			name string
			kind storage.Kind
			v    modproxy.Version
			want error
		}{
			{"zip of a deleted record", storage.Zip, modproxy.Version{Version: "v1.2.0", ZipHash: "h1:zip", ModHash: "h1:mod"}, modproxy.ErrGone},
			{"info of a deleted record", storage.Info, modproxy.Version{Version: "v1.2.0", Time: t0}, modproxy.ErrGone},
			{"another zip hash", storage.Zip, modproxy.Version{Version: "v1.1.0", ZipHash: "h1:other", Size: 2, ModHash: "h1:mod"}, modproxy.ErrConflict},
			{"a zip with another go.mod", storage.Zip, modproxy.Version{Version: "v1.0.0", ZipHash: "h1:zip", ModHash: "h1:other"}, modproxy.ErrConflict},
			{"another go.mod hash", storage.Mod, modproxy.Version{Version: "v1.0.0", ModHash: "h1:other"}, modproxy.ErrConflict},
			{"a missing record", storage.Zip, modproxy.Version{Version: "v9.0.0", ZipHash: "h1:zip", ModHash: "h1:mod"}, modproxy.ErrNotFound},
			{"the same zip again", storage.Zip, modproxy.Version{Version: "v1.1.0", ZipHash: "h1:zip", Size: 1, ModHash: "h1:mod"}, nil},
		}
		for _, tt := range tests {
			v := tt.v
			v.Path = path
			err := r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.FillVersion(&v, tt.kind) })
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Errorf("FillVersion(%s): %v; want %v", tt.name, err, tt.want)
			}
		}
		for version, want := range map[string]string{"v1.0.0": "h1:mod/", "v1.1.0": "h1:mod/h1:zip", "v1.2.0": "h1:mod/"} {
			got, err := r.Version(ctx, path, version)
			if err != nil {
				t.Fatal(err)
			}
			if got.ModHash+"/"+got.ZipHash != want || !got.Time.IsZero() {
				t.Errorf("%s after the refused fills: %+v; want hashes %s and no time", version, got, want)
			}
		}
	})
}
