// Command agora is a Go module proxy: it serves the GOPROXY protocol, hosts
// private modules and caches public ones. Run it with no arguments to serve;
// see `agora --help` for the other commands.
package main

import (
	"os"

	"agora/command"
)

func main() { os.Exit(command.Main()) }
