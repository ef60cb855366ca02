// Package grifts holds Agora's maintenance tasks, run with
// `agora task NAME [ARGS...]` (and listed by `agora task`):
//
//	db:migrate       apply pending migrations
//	storage:verify   re-hash every live version's files against its record
//
// Tasks are registered by Register rather than from init, so that importing
// the package has no side effects; they call the same domain code as the
// server.
package grifts

import (
	"context"
	"fmt"
	"sync"

	"github.com/gobuffalo/grift/grift"

	"agora/modproxy"
)

// Env is what a task works on. Close releases it.
type Env struct {
	Registry *modproxy.Service
	Close    func()
}

// Opener opens the server's database and storage for a task.
type Opener func(ctx context.Context) (*Env, error)

var registerOnce sync.Once

// Register adds Agora's tasks to grift's registry; open gives them the
// database and storage. Calls after the first do nothing.
func Register(open Opener) {
	registerOnce.Do(func() {
		grift.Namespace("db", func() {
			grift.Desc("migrate", "Apply pending database migrations")
			grift.Add("migrate", func(c *grift.Context) error {
				env, err := open(c)
				if err != nil {
					return err
				}
				env.Close()
				fmt.Println("database is up to date")
				return nil
			})
		})
		grift.Namespace("storage", func() {
			grift.Desc("verify", "Re-hash every live version's stored files against its recorded h1: hashes")
			grift.Add("verify", func(c *grift.Context) error {
				env, err := open(c)
				if err != nil {
					return err
				}
				defer env.Close()
				problems := 0
				n, err := env.Registry.VerifyStorage(c, func(p modproxy.Problem) {
					problems++
					fmt.Printf("BAD %s@%s: %v\n", p.Path, p.Version, p.Err)
				})
				if err != nil {
					return err
				}
				fmt.Printf("checked %d versions, %d bad\n", n, problems)
				if problems > 0 {
					return fmt.Errorf("%d versions do not match their records", problems)
				}
				return nil
			})
		})
	})
}
