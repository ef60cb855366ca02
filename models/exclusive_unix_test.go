//go:build unix

package models_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"agora/models"
	"agora/models/modelstest"
)

// TestRegistryExclusiveAcrossProcesses checks that a lock Exclusive holds
// in one process keeps another process out, on SQLite as on PostgreSQL:
// agora import runs beside the server on one SQLite data directory, and
// both write a version's files.
func TestRegistryExclusiveAcrossProcesses(t *testing.T) {
	if spec := os.Getenv("AGORA_TEST_EXCLUSIVE_HOLDER"); spec != "" {
		// The other process: it holds the lock until its stdin closes.
		var url, key string
		if _, err := fmt.Sscanf(spec, "%q %q", &url, &key); err != nil {
			t.Fatal(err)
		}
		conn, err := models.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = models.NewRegistry(conn).Exclusive(context.Background(), key, func(context.Context) error {
			fmt.Println("holding")
			_, err := io.Copy(io.Discard, os.Stdin)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := modelstest.URL(t, dialect)
			conn := modelstest.OpenURL(t, url)
			r := models.NewRegistry(conn)
			const key = "version example.com/m@v1.0.0"

			cmd := exec.Command(os.Args[0], "-test.run=^TestRegistryExclusiveAcrossProcesses$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("AGORA_TEST_EXCLUSIVE_HOLDER=%q %q", url, key))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "holding\n" {
				t.Fatalf("the other process said %q, %v; want it holding the lock", line, err)
			}

			// The lock is the other process's: this one waits, until
			// its context ends.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			ran := false
			err = r.Exclusive(ctx, key, func(context.Context) error { ran = true; return nil })
			if ran || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Exclusive of a key another process holds: ran %v, %v; want it to wait until its context ends", ran, err)
			}
			// Other keys are free.
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.Exclusive(ctx, "version example.com/m@v1.1.0", func(context.Context) error { return nil }); err != nil {
				t.Errorf("Exclusive of another key: %v", err)
			}
			// Once the other lets go, the lock is this one's.
			stdin.Close()
			if err := r.Exclusive(ctx, key, func(context.Context) error { return nil }); err != nil {
				t.Errorf("Exclusive once the other process let go: %v", err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("the other process: %v", err)
			}
		})
	}
}

// TestSQLiteLockFiles checks the lock files of Exclusive on SQLite: beside
// the database, readable by their owner only as the database is, and
// removed once released, so that the directory does not fill with one
// file per version ever written; and that holders who wait while others
// remove and make the file again still keep each other out.
func TestSQLiteLockFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agora.db")
	conn := modelstest.OpenURL(t, "sqlite3://"+file)
	r := models.NewRegistry(conn)
	dir := file + ".locks"
	ctx := context.Background()

	err := r.Exclusive(ctx, "version example.com/m@v1.0.0", func(context.Context) error {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if mode := fi.Mode().Perm(); mode != 0o700 {
			t.Errorf("%s has mode %v; want 0700", dir, mode)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("lock files while one lock is held: %v, %v; want one", entries, err)
		}
		fi, err = entries[0].Info()
		if err != nil {
			return err
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("lock file %s has mode %v; want 0600", entries[0].Name(), mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				err := r.Exclusive(ctx, "version example.com/m@v1.0.0", func(context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					if n > most.Load() {
						most.Store(n)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("at most %d held the lock at once; want 1", most.Load())
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("lock files once every lock is released: %v, %v; want none", entries, err)
	}
}
