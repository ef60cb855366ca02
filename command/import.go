package command

import (
	"errors"

	"github.com/spf13/cobra"

	"agora/grifts"
)

func newImport() *cobra.Command {
	return &cobra.Command{
		Use:   "import DIR",
		Short: "Import the module versions of a module cache or GOPROXY directory",
		Long: `Import every module version that DIR holds a zip or a .mod of into the registry:
DIR is a module cache ($GOMODCACHE, or its cache/download directory) or any
GOPROXY file tree (<escaped path>/@v/<escaped version>.info, .mod, .zip).
DIR may be a symbolic link; links to directories inside it are not followed,
and each is named in a warning.

Every zip is checked against the rules of module zips and hashed (and must
match the .ziphash the go command recorded next to it), except that of a
version already stored with the hash its .ziphash records, which is skipped
without reading it (a module cache imports again quickly); the .mod must be the
zip's go.mod, and without a .mod the zip's go.mod is imported (or, for a
module from before modules, "module PATH", as the go command makes). A
version with a .mod and no zip, as a module cache holds of most of a build's
dependencies, is imported as its go.mod (and .info, if there is one): the go
command reads them to work out the module graph ('go mod tidy',
'go list -m all'); the zip can be imported or fetched later. A zip without its
.info (which 'go mod tidy' leaves for the modules of dependencies' tests) is
imported without a time, unless it is a pseudo-version, which names its own;
its .info can be imported or fetched later. So is a version whose .info has
no time, as the go command keeps the .info an Agora serves of a version
stored without one. Versions already stored identically are skipped (or
restored: the files that storage lost of them are put back), conflicting
ones are reported and not imported, and versions deleted on this server are
not brought back. Imported versions are recorded with source "imported" and
the audit log names the actor "` + cliActor + `".

One line is printed per version, then a summary. A version counts as
imported by the import that recorded it (or the files of it the registry
lacked): of imports of one directory run at once, one counts it, the others
skip it, and their summaries add up to the versions stored. The import can
be interrupted (Ctrl-C stops it after the version in progress, a second
Ctrl-C at once; SIGTERM too, and only SIGTERM when a shell script ran it in
the background, with SIGINT ignored) and run again: what was imported is
skipped. Interrupted, agora ends killed by the signal, as if it had not
caught it, so that a script running it stops too. The exit status is 1 if a
version was conflicting, invalid or unreadable.`,
		Args: arguments("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" { // "$GOMODCACHE", unset
				return usage(cmd, errors.New("DIR is empty: give a module cache or a GOPROXY directory"))
			}
			return grifts.Import(cmd.Context(), openTaskEnv, args[0], cmd.OutOrStdout())
		},
	}
}
