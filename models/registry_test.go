package models_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
)

func TestRegistrySmoke(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		ctx := context.Background()
		r := models.NewRegistry(conn)
		now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		v := &modproxy.Version{Path: "example.com/a", Version: "v1.0.0", Time: now, Size: 10, ZipHash: "h1:z", ModHash: "h1:m", Source: "uploaded", PublishedBy: "alice", PublishedAt: now}
		err := r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(v) })
		if err != nil {
			t.Fatal(err)
		}
		err = r.Update(ctx, func(tx modproxy.MetadataTx) error { return tx.InsertVersion(v) })
		if !errors.Is(err, modproxy.ErrExists) {
			t.Fatalf("second insert: %v, want ErrExists", err)
		}
		got, err := r.Version(ctx, "example.com/a", "v1.0.0")
		if err != nil || !got.Time.Equal(now) || got.ZipHash != "h1:z" || !got.Live() {
			t.Fatalf("Version = %+v, %v", got, err)
		}
	})
}
