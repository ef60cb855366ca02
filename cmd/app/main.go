// Command app is the entry point `buffalo build` expects; it is the same
// program as the agora command at the repository root.
package main

import (
	"os"

	"agora/command"
)

func main() { os.Exit(command.Main()) }
