package command

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"agora/auth"
	"agora/models"
)

func newToken() *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var name, scope string
	create := &cobra.Command{
		Use:   "create USER [--name N] [--scope read|publish|admin]",
		Short: "Create a token and print it, alone, on standard output",
		Long: `Create a token for USER and print it, alone, on standard output, so that
scripts can capture it: TOKEN=$(agora token create ci --scope publish).
The token is shown only this once; Agora keeps only its hash, and revokes a
token it could not write. Its scope is further capped by the user's role when
it is used.`,
		Args: arguments("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := auth.ParseScope(scope)
			if err != nil {
				return usage(cmd, fmt.Errorf("--scope: %w", err))
			}
			_, conn, err := openDB(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			plain, tok, err := models.CreateToken(cmd.Context(), conn, cliActor, args[0], name, s)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), plain); err != nil {
				// Nobody has the token, and nobody can get it again.
				if rerr := models.RevokeToken(context.WithoutCancel(cmd.Context()), conn, cliActor, tok.ID); rerr != nil {
					return fmt.Errorf("writing token %d: %w (and it could not be revoked: %v)", tok.ID, err, rerr)
				}
				return fmt.Errorf("writing token %d: %w (it is revoked, as no one saw it)", tok.ID, err)
			}
			said := s.String() // the scope, and what it acts as
			if u, err := models.UserByName(cmd.Context(), conn, args[0]); err == nil {
				if role := auth.Role(u.Role); auth.EffectiveScope(s, role) < s {
					said += fmt.Sprintf(", which acts as %s while %s is a %s", auth.EffectiveScope(s, role), u.Name, role)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %d for %s, scope %s: shown once, store it now\n", tok.ID, args[0], said)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().StringVar(&scope, "scope", "read", "read, publish or admin")

	list := &cobra.Command{
		Use:   "list USER",
		Short: "List a user's tokens",
		Args:  arguments("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, conn, err := openDB(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			toks, err := models.Tokens(cmd.Context(), conn, args[0])
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTOKEN\tNAME\tSCOPE\tCREATED\tLAST USED\tREVOKED")
			for _, t := range toks {
				fmt.Fprintf(w, "%d\t%s…\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Display, t.Name, t.Scope,
					t.CreatedAt.UTC().Format(time.DateTime), orNever(t.LastUsedAt), orNever(t.RevokedAt))
			}
			return w.Flush()
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token (see token list for IDs)",
		Args:  arguments("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return usage(cmd, fmt.Errorf("token ID %q: want the number that agora token list USER shows", args[0]))
			}
			_, conn, err := openDB(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := models.RevokeToken(cmd.Context(), conn, cliActor, id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "revoked token %d\n", id)
			return nil
		},
	}
	return withSubcommands(token, create, list, revoke)
}

// orNever formats an optional time.
func orNever(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}
