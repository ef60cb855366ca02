// Package grifts holds Agora's maintenance tasks, run with
// `agora task NAME [ARGS...]` (and listed by `agora task`):
//
//	db:migrate       apply pending migrations
//	db:backup FILE   copy the SQLite database, consistent, while the
//	                 server runs (PostgreSQL: pg_dump)
//	storage:verify   re-hash every live version's files against its record,
//	                 report stored files that no live record announces (of
//	                 deleted, blocked or purged versions; storage:verify
//	                 repair removes those of deleted and blocked ones), and
//	                 rewrite each @v/list file that differs from the database
//	modules:import   import a module cache or GOPROXY directory (agora import)
//
// Tasks are registered by Register rather than from init, so that importing
// the package has no side effects; they call the same domain code as the
// server. As every agora command, they write what a script would use (a
// report) to standard output and what they did to standard error; see
// WithOutput.
package grifts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/gobuffalo/grift/grift"

	"agora/auth"
	"agora/internal/stopsignal"
	"agora/modproxy"
)

// ErrUsage is wrapped by the error of a task run with arguments it does
// not take, which says how to run it: "usage: agora task NAME ARGS".
var ErrUsage = errors.New("usage")

// usage returns the error of a task run with arguments it does not take,
// named and used as line says.
func usage(line string) error { return fmt.Errorf("%w: agora task %s", ErrUsage, line) }

// Env is what a task works on. Close releases it.
type Env struct {
	Registry *modproxy.Service
	// Operator is who a task acts as when it changes the registry: the
	// operator at the command line, with every right.
	Operator auth.Principal
	Close    func()
}

// Output is where tasks write: what a script would use (a report's lines
// and summary) to Stdout, and what they did to Stderr.
type Output struct {
	Stdout, Stderr io.Writer
}

type outputKey struct{}

// WithOutput returns a copy of ctx that tasks run with write to out.
// Without one, they write to the process's standard output and error.
func WithOutput(ctx context.Context, out Output) context.Context {
	return context.WithValue(ctx, outputKey{}, out)
}

// outputOf returns where the tasks run with ctx write.
func outputOf(ctx context.Context) Output {
	if out, ok := ctx.Value(outputKey{}).(Output); ok {
		return out
	}
	return Output{Stdout: os.Stdout, Stderr: os.Stderr}
}

// Opener opens the server's database and storage for a task, giving up
// when ctx is done.
type Opener func(ctx context.Context) (*Env, error)

// Backuper writes a consistent copy of the server's database to the new
// file name, giving up when ctx is done, and returns the name of the
// database it copied. It neither migrates the database nor makes one.
type Backuper func(ctx context.Context, name string) (db string, err error)

var registerOnce sync.Once

// Register adds Agora's tasks to grift's registry; open gives them the
// database and storage, and backup copies the database. Calls after the
// first do nothing.
func Register(open Opener, backup Backuper) {
	registerOnce.Do(func() {
		grift.Namespace("db", func() {
			grift.Desc("migrate", "Apply pending database migrations")
			grift.Add("migrate", func(c *grift.Context) error {
				if len(c.Args) != 0 {
					return usage("db:migrate")
				}
				env, err := open(c)
				if err != nil {
					return err
				}
				env.Close()
				fmt.Fprintln(outputOf(c).Stderr, "database is up to date") // as agora migrate
				return nil
			})
			grift.Desc("backup", "Copy the SQLite database to the new file FILE, consistent, while the server runs (PostgreSQL: use pg_dump)")
			grift.Add("backup", func(c *grift.Context) error {
				if len(c.Args) != 1 || c.Args[0] == "" {
					return usage("db:backup FILE")
				}
				db, err := backup(c, c.Args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(outputOf(c).Stderr, "copied %s to %s\n", db, c.Args[0])
				return nil
			})
		})
		grift.Namespace("storage", func() {
			grift.Desc("verify", "Re-hash every live version's stored files against its recorded h1: hashes, report stored files that no live record announces (given the argument repair, remove those of deleted and blocked versions), and rewrite each @v/list file that differs from the database")
			grift.Add("verify", func(c *grift.Context) error {
				var opts modproxy.VerifyOptions
				switch {
				case len(c.Args) == 1 && c.Args[0] == "repair":
					opts.Repair = true
				case len(c.Args) != 0:
					return usage("storage:verify [repair]")
				}
				env, err := open(c)
				if err != nil {
					return err
				}
				defer env.Close()
				out := outputOf(c).Stdout
				problems, fixed := 0, 0
				n, err := env.Registry.VerifyStorage(c, opts, func(p modproxy.Problem) {
					if p.Fixed {
						fixed++
						fmt.Fprintf(out, "FIXED %s\n", p)
						return
					}
					problems++
					fmt.Fprintf(out, "BAD %s\n", p)
				})
				if err != nil {
					return err
				}
				summary := fmt.Sprintf("checked %s, %d bad", versions(n), problems)
				if fixed > 0 {
					summary += fmt.Sprintf(", %d fixed", fixed)
				}
				fmt.Fprintln(out, summary)
				switch {
				case problems == 1:
					return errors.New("storage does not match the records: 1 problem")
				case problems > 1:
					return fmt.Errorf("storage does not match the records: %d problems", problems)
				}
				return nil
			})
		})
		grift.Namespace("modules", func() {
			grift.Desc("import", "Import DIR, a module cache or GOPROXY directory, as `agora import DIR` does")
			grift.Add("import", func(c *grift.Context) error {
				if len(c.Args) != 1 || c.Args[0] == "" {
					return usage("modules:import DIR")
				}
				return Import(c, open, c.Args[0], outputOf(c).Stdout)
			})
		})
	})
}

// Import imports dir, a module cache or a GOPROXY directory, into the
// registry that open gives, as its Operator, printing a line per version
// and a summary to w: `agora import DIR` and `agora task modules:import
// DIR`. SIGINT (Ctrl-C) or SIGTERM stops it after the version in progress,
// with an *InterruptedError, which says to run it again; a second one ends
// the process at once. (SIGINT does not if the process started with it
// ignored, as a shell's command in the background: see stopsignal.) The
// error counts the versions refused, if any.
func Import(ctx context.Context, open Opener, dir string, w io.Writer) error {
	ctx, stop := stopsignal.NotifyContext(ctx)
	defer stop()
	// stopped returns err, or an *InterruptedError if ctx's end caused it.
	stopped := func(err error) error {
		if !errors.Is(err, context.Canceled) {
			return err
		}
		return &InterruptedError{Signal: stopsignal.Received(ctx)} // nil if ctx was canceled
	}
	// Opening waits on the database (one that does not answer, another
	// process's lock on the migrations): a signal stops that too.
	env, err := open(ctx)
	if err != nil {
		return stopped(err)
	}
	defer env.Close()
	sum, err := env.Registry.ImportDir(ctx, env.Operator, dir, func(e modproxy.ImportEvent) {
		fmt.Fprintln(w, e)
	})
	if err == nil || sum.Done() > 0 {
		fmt.Fprintln(w, sum)
	}
	if err != nil {
		return stopped(err)
	}
	return sum.Err()
}

// An InterruptedError is the error of an import stopped between two
// versions, by a signal or by its context.
type InterruptedError struct {
	// Signal is the signal that stopped the import; nil if its context
	// was canceled.
	Signal os.Signal
}

func (e *InterruptedError) Error() string {
	return "import interrupted: run it again to import the rest (what was imported is skipped)"
}

// versions returns "1 version" or "n versions".
func versions(n int) string {
	if n == 1 {
		return "1 version"
	}
	return fmt.Sprintf("%d versions", n)
}
