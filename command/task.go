package command

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/gobuffalo/grift/grift"
	"github.com/spf13/cobra"

	"agora/auth"
	"agora/grifts"
)

func newTask() *cobra.Command {
	return &cobra.Command{
		Use:   "task [NAME [ARGS...]]",
		Short: "Run a maintenance task (with no name, list them)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			grifts.Register(openTaskEnv)
			if len(args) == 0 {
				grift.PrintGrifts(cmd.OutOrStdout())
				return nil
			}
			c := grift.NewContextWithContext(args[0], cmd.Context())
			c.Args = args[1:]
			return grift.Run(args[0], c)
		},
	}
}

// cliAdmin is who the command line acts as when it changes the registry:
// the operator, with every right. The audit log records it as cliActor.
var cliAdmin = auth.Principal{User: cliActor, Role: auth.RoleAdmin, Scope: auth.ScopeAdmin}

// openTaskEnv opens the database and storage for a task, as serve does.
func openTaskEnv(ctx context.Context) (*grifts.Env, error) {
	cfg, conn, err := openDB(ctx)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := os.MkdirAll(cfg.TempDir(), 0o700); err != nil {
		conn.Close()
		return nil, fmt.Errorf("AGORA_DATA_DIR: %w", err)
	}
	disk, err := openStorage(cfg, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &grifts.Env{Registry: newRegistry(cfg, conn, disk, log), Operator: cliAdmin, Close: func() { conn.Close() }}, nil
}
