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

// TestRegistryExclusiveServerStopsAnswering checks that an Exclusive on
// PostgreSQL, which waits for its lock for as long as its caller's context
// lets it (a holder keeps the lock for as long as its fetch takes), gives
// up when the server stops answering while it waits, before its
// transaction has begun or while another holds the lock, at the top or
// nested in another: within twice StatementTimeout, with an error wrapping
// context.DeadlineExceeded, of which Unavailable reports true, so that the
// request behind it is answered 503, where it waited for as long as its
// fetch may take (minutes for a zip). A wait for a holder that keeps the
// lock longer, while the server answers, goes on.
func TestRegistryExclusiveServerStopsAnswering(t *testing.T) {
	const within = 3 * time.Second // after the bound, on a loaded machine
	defer func(d time.Duration) { models.StatementTimeout = d }(models.StatementTimeout)
	models.StatementTimeout = 300 * time.Millisecond
	bound := 2*models.StatementTimeout + within

	// hold takes key through r and keeps it until release is called,
	// which the test's end calls too; it returns once the lock is held,
	// and the channel reports the end of the hold.
	hold := func(t *testing.T, r *models.Registry, key string) (release func(), ended <-chan error) {
		held, done := make(chan struct{}), make(chan error, 1)
		releaseCh := make(chan struct{})
		release = sync.OnceFunc(func() { close(releaseCh) })
		t.Cleanup(release)
		go func() {
			done <- r.Exclusive(context.Background(), key, func(context.Context) error {
				close(held)
				<-releaseCh
				return nil
			})
		}()
		select {
		case <-held:
		case err := <-done:
			t.Fatalf("holding %q: %v", key, err)
		}
		return release, done
	}
	// wait runs an Exclusive of key (nested in one of "outer" if nested)
	// and returns its error and whether its fn ran.
	wait := func(r *models.Registry, key string, nested bool) <-chan error {
		errs := make(chan error, 1)
		go func() {
			ran := false
			lock := func(ctx context.Context) error {
				return r.Exclusive(ctx, key, func(context.Context) error { ran = true; return nil })
			}
			var err error
			if nested {
				err = r.Exclusive(context.Background(), "outer", lock)
			} else {
				err = lock(context.Background())
			}
			if ran && err != nil {
				err = fmt.Errorf("fn ran, and then: %w", err)
			}
			errs <- err
		}()
		return errs
	}
	wantGivenUp := func(t *testing.T, errs <-chan error, start time.Time) {
		t.Helper()
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) || !models.Unavailable(err) {
				t.Errorf("against a server that stopped answering: %v; want an error wrapping context.DeadlineExceeded that Unavailable reports", err)
			}
			t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(bound):
			t.Fatalf("still waiting for the lock %v after the server stopped answering", bound)
		}
	}

	for _, nested := range []bool{false, true} {
		t.Run(fmt.Sprintf("nested=%v", nested), func(t *testing.T) {
			t.Run("before its transaction", func(t *testing.T) {
				p := modelstest.NewProxy(t) // skips without a server
				r := models.NewRegistry(modelstest.OpenURL(t, p.URL))
				if nested {
					// The outer lock's transaction is under way.
					errs := make(chan error, 1)
					start := time.Now()
					go func() {
						errs <- r.Exclusive(context.Background(), "outer", func(ctx context.Context) error {
							p.Stall()
							return r.Exclusive(ctx, "k", func(context.Context) error {
								return errors.New("fn ran")
							})
						})
					}()
					wantGivenUp(t, errs, start)
					return
				}
				p.Stall()
				wantGivenUp(t, wait(r, "k", false), time.Now())
			})

			t.Run("while another holds the lock", func(t *testing.T) {
				p := modelstest.NewProxy(t)
				r := models.NewRegistry(modelstest.OpenURL(t, p.URL))
				release, holderEnded := hold(t, r, "k")
				errs := wait(r, "k", nested)
				time.Sleep(models.StatementTimeout / 2) // the waiter waits for the lock
				p.Stall()
				wantGivenUp(t, errs, time.Now())
				p.Stop() // the holder's connection too, so that its end ends
				release()
				<-holderEnded
			})

			t.Run("for a holder that keeps the lock long", func(t *testing.T) {
				p := modelstest.NewProxy(t)
				r := models.NewRegistry(modelstest.OpenURL(t, p.URL))
				release, holderEnded := hold(t, r, "k")
				errs := wait(r, "k", nested)
				select {
				case err := <-errs:
					t.Fatalf("Exclusive of a key held: %v before the holder let go; want it to wait", err)
				case <-time.After(4 * models.StatementTimeout):
				}
				release()
				if err := <-holderEnded; err != nil {
					t.Fatalf("holder: %v", err)
				}
				select {
				case err := <-errs:
					if err != nil {
						t.Errorf("Exclusive, after a wait of several checks for a holder: %v; want the lock", err)
					}
				case <-time.After(bound):
					t.Fatal("still waiting for a lock let go of")
				}
			})
		})
	}
}
