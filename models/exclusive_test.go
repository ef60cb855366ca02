package models_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobuffalo/pop/v6"

	"agora/models"
	"agora/models/modelstest"
)

// TestRegistryExclusiveNested checks that an Exclusive nested in another
// (a fetch, which holds its file's lock while it downloads, takes its
// version's lock to store what it downloaded) goes through when as many
// as may hold a lock at once hold one each: on PostgreSQL, were it to hold
// a transaction of its own, the nested ones would wait for one of the
// outer ones to end, which waits for them.
func TestRegistryExclusiveNested(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, conn *pop.Connection) {
		r := models.NewRegistry(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var inside sync.WaitGroup
		inside.Add(models.MaxExclusive)
		errs := make(chan error, models.MaxExclusive)
		for i := range models.MaxExclusive {
			go func() {
				errs <- r.Exclusive(ctx, fmt.Sprintf("fetch example.com/m@v1.0.%d.zip", i), func(ctx context.Context) error {
					inside.Done()
					inside.Wait() // every one holds a lock
					return r.Exclusive(ctx, fmt.Sprintf("version example.com/m@v1.0.%d", i), func(context.Context) error { return nil })
				})
			}()
		}
		for range models.MaxExclusive {
			if err := <-errs; err != nil {
				t.Fatalf("nested Exclusive: %v", err)
			}
		}

		// The nested lock excludes as any other does.
		err := r.Exclusive(ctx, "a", func(actx context.Context) error {
			return r.Exclusive(actx, "b", func(context.Context) error {
				wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond) // another holder's
				defer cancel()
				done := make(chan error)
				go func() { done <- r.Exclusive(wctx, "b", func(context.Context) error { return nil }) }()
				if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("Exclusive of a key held nested: %v; want it to wait", err)
				}
				return nil
			})
		})
		if err != nil {
			t.Error(err)
		}
	})
}

// TestRegistryExclusiveLockEndsWithFn checks that what fn did stands once
// fn has succeeded, whatever becomes of the transaction that held the
// lock: it holds only the lock (fn's work is done and committed on other
// connections), and a commit of it that failed (its connection lost just
// then) turned a publish that was done into an error.
func TestRegistryExclusiveLockEndsWithFn(t *testing.T) {
	p := modelstest.NewProxy(t) // skips without a server
	r := models.NewRegistry(modelstest.OpenURL(t, p.URL))
	err := r.Exclusive(context.Background(), "k", func(context.Context) error {
		p.Stop() // the lock's connection is lost after fn's work is done
		return nil
	})
	if err != nil {
		t.Errorf("Exclusive, fn done and the lock's connection lost: %v; want nil", err)
	}
	want := errors.New("fn failed")
	err = models.NewRegistry(modelstest.Open(t, "postgres")).Exclusive(context.Background(), "k", func(context.Context) error { return want })
	if !errors.Is(err, want) {
		t.Errorf("Exclusive, fn failed: %v; want fn's error", err)
	}
}
