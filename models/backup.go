package models

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gobuffalo/pop/v6"

	"agora/storage"
)

// ErrNotSQLite is wrapped by the error of BackupSQLite on a database that
// is not SQLite: PostgreSQL is backed up with its own tools (pg_dump).
var ErrNotSQLite = errors.New("not an SQLite database")

// BackupSQLite writes a copy of the SQLite database conn is connected to,
// as it was at one moment, to the new file name, readable by its owner
// only (the database holds password hashes). It is safe while other
// connections and processes (a server) read and write the database: the
// copy is SQLite's VACUUM INTO, a read transaction, which in WAL mode
// neither waits for writers nor holds them up, and which holds every
// transaction committed before it began and nothing of any other; copying
// the database's files instead can catch them halfway through a commit or
// a checkpoint.
//
// The copy is written under a temporary name in name's directory, synced
// and renamed, so that name holds a complete copy or nothing, and name
// must not exist. A database that is not SQLite is an error wrapping
// ErrNotSQLite.
func BackupSQLite(ctx context.Context, conn *pop.Connection, name string) (err error) {
	if d := conn.Dialect.Name(); d != "sqlite3" {
		return fmt.Errorf("backing up the database: %w (it is %s)", ErrNotSQLite, d)
	}
	// VACUUM INTO takes a name that starts with "file:" for a URI; an
	// absolute one does not.
	name, err = filepath.Abs(name)
	if err != nil {
		return fmt.Errorf("backing up the database: %w", err)
	}
	if _, err := os.Lstat(name); err == nil {
		return fmt.Errorf("backing up the database: %s exists already: name a new file", name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backing up the database: %w", err)
	}
	// Empty, as VACUUM INTO wants it, and 0600, which it keeps.
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return fmt.Errorf("backing up the database: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer func() {
		if err != nil {
			os.Remove(tmpName)
		}
	}()
	if err := conn.WithContext(ctx).RawQuery("VACUUM INTO ?", tmpName).Exec(); err != nil {
		return fmt.Errorf("backing up the database to %s: %w", name, err)
	}
	if err := storage.Sync(tmpName); err != nil {
		return fmt.Errorf("backing up the database to %s: %w", name, err)
	}
	if _, err := os.Lstat(name); err == nil { // made meanwhile
		return fmt.Errorf("backing up the database: %s exists already: name a new file", name)
	}
	if err := os.Rename(tmpName, name); err != nil {
		return fmt.Errorf("backing up the database: %w", err)
	}
	if err := storage.Sync(filepath.Dir(name)); err != nil {
		return fmt.Errorf("backing up the database to %s: %w", name, err)
	}
	return nil
}

// SQLiteFile returns the name of the database file of url, and whether
// url is an SQLite database's (sqlite3://FILE[?OPTIONS]). The name is
// empty if the options cannot be read, which Connect reports.
func SQLiteFile(url string) (string, bool) {
	dialect, rest, _ := strings.Cut(url, "://")
	if dialect != "sqlite3" && dialect != "sqlite" {
		return "", false
	}
	file, _, _ := sqliteFile(rest)
	return file, true
}
