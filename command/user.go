package command

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"agora/auth"
	"agora/models"
	"agora/modproxy"
)

func newUser() *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Manage users"}
	var (
		role          string
		passwordStdin bool
	)
	create := &cobra.Command{
		Use:   "create NAME --role admin|publisher|viewer [--password-stdin]",
		Short: "Create a user",
		Long: `Create a user. NAME is 1 to 64 characters of a-z, 0-9, '.', '_' and '-',
starting with a letter or digit; "` + cliActor + `" is reserved for the command line itself.
Without --password-stdin the user has no password and can act only through
tokens (robots, CI).`,
		Args: arguments("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return usage(cmd, fmt.Errorf("--role: %w", err))
			}
			// As CreateUser would, before a database is opened, or made.
			if err := auth.CheckUserName(args[0]); err != nil {
				return fmt.Errorf("%w: %v", modproxy.ErrInvalid, err)
			}
			var password string
			if passwordStdin {
				line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), maxPasswordLine)).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("--password-stdin: no password on standard input")
				}
				password = strings.TrimRight(line, "\r\n")
				if password == "" {
					// An empty variable in a script, not a user meant to
					// have no password: that is the default without the flag.
					return errors.New("--password-stdin: the password on standard input is empty")
				}
				if err := auth.CheckPasswordLen(password); err != nil { // as CreateUser would
					return fmt.Errorf("%w: %v", modproxy.ErrInvalid, err)
				}
			}
			_, conn, err := openDB(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer conn.Close()
			u, err := models.CreateUser(cmd.Context(), conn, cliActor, args[0], r, password)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created user %s (%s)\n", u.Name, u.Role)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "admin, publisher or viewer (required)")
	create.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	create.MarkFlagRequired("role")
	return withSubcommands(user, create)
}

// maxPasswordLine is how much of standard input --password-stdin reads, in
// bytes: far more than the 72 of a password bcrypt takes, so that a longer
// one is refused as too long, not read to the end of a stream that has none.
const maxPasswordLine = 1 << 10
