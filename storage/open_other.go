//go:build !unix

package storage

import "os"

// openFile opens name for reading.
func openFile(name string) (*os.File, error) { return os.Open(name) }
