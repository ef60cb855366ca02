// Package command is the agora binary's command tree: with no arguments it
// serves (so that `buffalo dev` works), and its subcommands migrate the
// database, manage users and tokens on the server's own database, and
// import module caches.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gobuffalo/pop/v6"
	"github.com/spf13/cobra"

	"agora/auth"
	"agora/config"
	"agora/grifts"
	"agora/internal/stopsignal"
	"agora/models"
)

// cliActor names the command line in the audit log.
const cliActor = auth.CommandLineActor

// Execute runs the command named by args (without the program name) and
// returns its error; main prints it and sets the exit status.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// newRoot returns the agora command, reading stdin and writing stdout and
// stderr.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "agora",
		Short: "Agora is a Go module proxy that hosts private modules and caches public ones",
		Long: `Agora is a Go module proxy that hosts private modules and caches public ones.

With no command, agora serves. It is configured by environment variables:
ADDR, PORT, AGORA_DATA_DIR, AGORA_STORAGE_DIR, DATABASE_URL, AGORA_READ_AUTH,
SESSION_SECRET, GO_ENV, AGORA_SHUTDOWN_TIMEOUT, AGORA_SHUTDOWN_DELAY, for its
log AGORA_LOG_FORMAT and AGORA_LOG_LEVEL, and for the pull-through cache
AGORA_UPSTREAM, AGORA_RULES, AGORA_SUMDB, AGORA_NOSUMDB and AGORA_LIST_TTL
(see README.md). A .env file in the working directory, if there is one,
overrides them.

The other commands read only AGORA_DATA_DIR, AGORA_STORAGE_DIR and
DATABASE_URL: run them with the server's.

The exit status is 0 when a command did what it was asked, 1 when it failed
(a database out of reach, a name taken, a version refused), and 2 when its
command line is wrong (an unknown command or flag, an argument missing or
too many, a flag's value not one it takes), as for the go command.`,
		Args: noCommand,
		// cobra's default, which it sets only for the suggestions it
		// makes itself.
		SuggestionsMinimumDistance: 2,
		SilenceUsage:               true,
		SilenceErrors:              true,
		RunE:                       runServe,
		Version:                    version(),
		// Before cobra checks them itself, so that a flag missing is
		// told apart from a failure.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return usage(cmd, err)
			}
			return nil
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout) // before the completion command takes it
	root.SetErr(stderr)
	root.SetFlagErrorFunc(usage)
	root.SetVersionTemplate("agora {{.Version}}\n")
	root.AddCommand(newServe(), newMigrate(), newUser(), newToken(), newTask(), newImport())
	root.SetHelpCommand(newHelp())
	// cobra's completion command only groups a command per shell, and
	// prints its help and exits 0 for one it does not know.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			withSubcommands(c)
		}
	}
	usageArgs(root)
	return root
}

// newHelp is the help command: cobra's, but for a command that does not
// exist, which cobra's answers with agora's help and the exit status 0.
func newHelp() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help prints the help of any command: agora help token create is agora token create --help.",
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			if target, rest, err := cmd.Root().Find(args); err == nil && len(rest) == 0 {
				for _, c := range target.Commands() {
					if c.IsAvailableCommand() && strings.HasPrefix(c.Name(), toComplete) {
						names = append(names, cobra.CompletionWithDesc(c.Name(), c.Short))
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usage(cmd.Root(), fmt.Errorf("unknown help topic %q", strings.Join(args, " ")))
			}
			target.InitDefaultHelpFlag() // for the help to show it
			return target.Help()
		},
	}
}

// Exit statuses, as the go command's and package flag's.
const (
	exitFailure = 1 // the command failed
	exitUsage   = 2 // its command line is wrong
)

// A usageError is a command line that agora cannot run: an unknown command
// or flag, an argument missing or too many, a flag's value that is not one
// it takes. Main exits 2 on one, and 1 on any other error, so that a script
// tells a mistake of its own from a failure (a database out of reach).
type usageError struct {
	cmd *cobra.Command // the command whose usage it breaks
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usage returns err as a usageError of cmd.
func usage(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} }

// usageArgs makes the errors of the argument checks of cmd and of its
// subcommands usage errors.
func usageArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usage(cmd, err)
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageArgs(sub)
	}
}

// arguments returns a check that a command is given the arguments named,
// which says which one is missing or one too many, where cobra's
// ExactArgs says "accepts 1 arg(s), received 0".
func arguments(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return fmt.Errorf("missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names) && len(names) == 0:
			return fmt.Errorf("%s takes no arguments, not %q", cmd.CommandPath(), args[0])
		case len(args) > len(names):
			return fmt.Errorf("unexpected argument %q after %s", args[len(names)], strings.Join(names, " "))
		}
		return nil
	}
}

// noCommand checks that a command that groups others is given none it
// does not know, naming the one meant if a known one is close: cobra's
// NoArgs names none.
func noCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	err := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		err += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return errors.New(err)
}

// withSubcommands makes parent a command that only groups others: run
// with no command or an unknown one, it fails (naming the one meant, if a
// known one is close), where cobra would print the help and exit 0, and a
// script's mistyped `agora token revok 3` would seem to have worked.
func withSubcommands(parent *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	parent.AddCommand(subs...)
	parent.SuggestionsMinimumDistance = 2 // as the root's
	parent.Args = noCommand
	parent.RunE = func(cmd *cobra.Command, _ []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		list := strings.Join(names, ", ")
		if n := len(names); n > 1 {
			list = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
		}
		return usage(cmd, fmt.Errorf("name a command after %q: %s", cmd.CommandPath(), list))
	}
	return parent
}

// openDB loads the settings of where the data is kept, and no other (see
// config.LoadData), and opens the migrated database, giving up when ctx
// is done. When it makes the default SQLite database, finding none in the
// data directory, it says so to warn, if not nil: a command run elsewhere
// than the server, or without its AGORA_DATA_DIR, works on a database of
// its own.
func openDB(ctx context.Context, warn io.Writer) (*config.Data, *pop.Connection, error) {
	cfg, err := config.LoadData()
	if err != nil {
		return nil, nil, err
	}
	conn, err := openDataDB(ctx, cfg, warn)
	return cfg, conn, err
}

// openDataDB opens the migrated database of cfg, as openDB does: for a
// server, which has loaded its whole configuration already.
func openDataDB(ctx context.Context, cfg *config.Data, warn io.Writer) (*pop.Connection, error) {
	// The default SQLite database is made in the data directory; a
	// database elsewhere (PostgreSQL) needs none, and the commands that
	// only change it must not litter ./data wherever they are run, or
	// fail where that is not writable. Those that need it make it.
	made := false
	if file := filepath.Join(cfg.DataDir, "agora.db"); cfg.DatabaseURL == "sqlite3://"+file {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("AGORA_DATA_DIR: %w", err)
		}
		_, err := os.Stat(file)
		made = errors.Is(err, fs.ErrNotExist)
	}
	// A database that cannot be opened says little of which it is.
	conn, err := models.ConnectContext(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL=%s: %w", redactURL(cfg.DatabaseURL), err)
	}
	if err := models.MigrateContext(ctx, conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("DATABASE_URL=%s: %w", redactURL(cfg.DatabaseURL), err)
	}
	if made && warn != nil {
		fmt.Fprintf(warn, "agora: made a new database, %s (AGORA_DATA_DIR=%s, DATABASE_URL unset): a server with another AGORA_DATA_DIR or a DATABASE_URL does not use it\n",
			filepath.Join(cfg.DataDir, "agora.db"), cfg.DataDir)
	}
	return conn, nil
}

func newMigrate() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (serve does this too)",
		Args:  arguments(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, conn, err := openDB(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			fmt.Fprintln(cmd.ErrOrStderr(), "database is up to date")
			return nil
		},
	}
}

// Main runs the agora command with the process's arguments and standard
// streams, prints any error, and returns the exit status for main: 0 for
// success, 1 for a failure, 2 for a command line that is wrong. A command
// that a signal stopped (agora import, by Ctrl-C; agora serve, before it
// served) ends the process killed by that signal instead.
func Main() int {
	return runMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// runMain is Main with the arguments and streams given.
func runMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := Execute(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "agora:", err)
	if u, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", u.cmd.CommandPath())
		return exitUsage
	}
	if i, ok := errors.AsType[*grifts.InterruptedError](err); ok && i.Signal != nil {
		return exitBySignal(i.Signal)
	}
	if s, ok := errors.AsType[*stopsignal.Signal](err); ok {
		return exitBySignal(s.Signal)
	}
	return exitFailure
}
