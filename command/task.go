package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gobuffalo/grift/grift"
	"github.com/spf13/cobra"

	"agora/auth"
	"agora/config"
	"agora/grifts"
	"agora/models"
)

func newTask() *cobra.Command {
	return &cobra.Command{
		Use:   "task [NAME [ARGS...]]",
		Short: "Run a maintenance task (with no name, list them)",
		Long: `Run the maintenance task NAME with ARGS. With no NAME (or with list), list
the tasks and how each is run.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			grifts.Register(openTaskEnv, backupDB)
			if len(args) == 0 || len(args) == 1 && args[0] == "list" { // as grift's own list
				grift.CommandName = cmd.CommandPath() // how the list says to run each
				grift.PrintGrifts(cmd.OutOrStdout())
				return nil
			}
			if !slices.Contains(grift.List(), args[0]) {
				return usage(cmd, fmt.Errorf("unknown task %q (agora task lists them)", args[0]))
			}
			out := grifts.Output{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			c := grift.NewContextWithContext(args[0], grifts.WithOutput(cmd.Context(), out))
			c.Args = args[1:]
			err := grift.Run(args[0], c)
			if errors.Is(err, grifts.ErrUsage) {
				return usage(cmd, err)
			}
			return err
		},
	}
}

// cliAdmin is who the command line acts as when it changes the registry:
// the operator, with every right. The audit log records it as cliActor.
var cliAdmin = auth.Principal{User: cliActor, Role: auth.RoleAdmin, Scope: auth.ScopeAdmin}

// openTaskEnv opens the database and storage for a task, as serve does,
// with the registry staging in cfg.ImportTempDir.
func openTaskEnv(ctx context.Context) (*grifts.Env, error) {
	cfg, conn, err := openDB(ctx, os.Stderr) // as the warnings below
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(log) // as serve does
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		conn.Close()
		return nil, fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	if err := os.MkdirAll(cfg.ImportTempDir(), 0o700); err != nil {
		conn.Close()
		return nil, fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	// Another command may be staging its copies here now; what a killed
	// one left has long stopped changing.
	if n, err := removeStale(cfg.ImportTempDir(), staleTemp); err != nil {
		log.Warn("removing what killed imports left", "dir", cfg.ImportTempDir(), "err", err)
	} else if n > 0 {
		log.Warn("removed copies that killed imports left", "dir", cfg.ImportTempDir(), "count", n)
	}
	disk, err := openStorage(cfg, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &grifts.Env{Registry: newRegistry(cfg, conn, disk, log), Operator: cliAdmin, Close: func() { conn.Close() }}, nil
}

// backupDB copies the SQLite database of the environment's settings to the
// new file name (see models.BackupSQLite), and returns the database's file
// name. It neither makes a database where there is none nor migrates the
// one there is: a newer agora taking a backup before an upgrade must not
// upgrade the database of the server still running.
func backupDB(ctx context.Context, name string) (string, error) {
	cfg, err := config.LoadData()
	if err != nil {
		return "", err
	}
	file, ok := models.SQLiteFile(cfg.DatabaseURL)
	if !ok {
		return "", fmt.Errorf("DATABASE_URL=%s is PostgreSQL, which db:backup does not copy: back it up with pg_dump (pg_dump -Fc -f agora.dump \"$DATABASE_URL\")", redactURL(cfg.DatabaseURL))
	}
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return "", fmt.Errorf("no database to back up: %w (run this with the server's AGORA_DATA_DIR and DATABASE_URL)", err)
		}
	}
	conn, err := models.ConnectContext(ctx, cfg.DatabaseURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL=%s: %w", redactURL(cfg.DatabaseURL), err)
	}
	defer conn.Close()
	return file, models.BackupSQLite(ctx, conn, name)
}

// removeStale removes the files in dir that have not been modified for age,
// and returns how many it removed.
func removeStale(dir string, age time.Duration) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // its command finished with it
		}
		if err != nil {
			return n, err
		}
		if !info.Mode().IsRegular() || time.Since(info.ModTime()) < age {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}
