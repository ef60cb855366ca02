// Package assets holds the CSS of Agora's site, embedded in the binary and
// served under /assets. There is no node build step.
package assets

import "embed"

// FS holds the assets.
//
//go:embed css
var FS embed.FS
