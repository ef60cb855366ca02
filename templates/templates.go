// Package templates holds the plush templates of Agora's site, embedded in
// the binary.
package templates

import "embed"

// FS holds the templates.
//
//go:embed *.plush.html
var FS embed.FS
