// Package migrations holds Agora's database migrations, embedded in the
// binary. Fizz files run on every dialect; a file named
// <version>_<name>.<dialect>.<up|down>.sql runs only on that dialect
// (postgres or sqlite3). Every migration makes one change and has a down.
//
// This file is not called embed.go because `buffalo build` writes and then
// deletes a file of that name here.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.fizz *.sql
var FS embed.FS
