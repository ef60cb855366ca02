package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
)

// Lookup returns the go.sum hashes the checksum database records for
// path@version, proven against its signed tree as the go command proves
// them. It needs only the module and the version, so a fetch can ask while
// it downloads, and wait for the longer of the two round trips rather than
// for both. For a path that matches NoSumDB it returns nil Sums (which
// accept any hash) without contacting anything.
//
// It returns an error wrapping
//   - ErrNotFound when the database does not know path@version: a private
//     module, which belongs in NoSumDB. The go command refuses such a
//     version too, so storing it unverified would only defer the failure
//     to every client;
//   - ErrUnavailable when the database cannot be asked (with Offline, when
//     what is needed is not cached), or misbehaves (a "SECURITY ERROR",
//     also logged);
//   - ErrInvalid for an invalid path or version.
//
// The records and tiles it reads go through Get, so a lookup fills the
// cache that go clients then read through Agora.
func (db *DB) Lookup(ctx context.Context, path, version string) (*Sums, error) {
	if !db.Covers(path) {
		return nil, nil
	}
	if err := module.Check(path, version); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}

	// Fetch the record first: Get reports why it fails, which the client
	// would flatten into text.
	escPath, _ := module.EscapePath(path) // valid: checked above
	escVers, _ := module.EscapeVersion(version)
	if _, err := db.Get(ctx, "lookup/"+escPath+"@"+escVers); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %s@%s is not in the checksum database %s: refusing to store it unverified; if it is a private module, add its path to AGORA_NOSUMDB (%v)",
				ErrNotFound, path, version, db.name, err)
		}
		return nil, fmt.Errorf("verifying %s@%s against %s: %w", path, version, db.name, err)
	}

	// Prove the record against the signed tree, as the go command does. The
	// client has no context: it runs on, filling the cache, if ctx ends.
	// Both lookups read the one record, which the client fetches once.
	c := db.sumdbClient()
	type answer struct {
		zip, mod []string
		err      error
	}
	ch := make(chan answer, 1)
	go func() {
		var a answer
		a.zip, a.err = c.Lookup(path, version)
		if a.err == nil {
			a.mod, a.err = c.Lookup(path, version+"/go.mod")
		}
		if a.err != nil {
			// The client keeps failures in memory for good: start afresh,
			// whether or not the caller still waits.
			db.dropClient(c)
		}
		ch <- a
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: verifying %s@%s against %s: %w", ErrUnavailable, path, version, db.name, ctx.Err())
	}
	if a.err != nil {
		if strings.Contains(a.err.Error(), sumdb.ErrSecurity.Error()) {
			return nil, fmt.Errorf("%w: SECURITY ERROR: the checksum database %s misbehaved (see the log): %v", ErrUnavailable, db.name, a.err)
		}
		return nil, fmt.Errorf("%w: verifying against %s: %v", ErrUnavailable, db.name, a.err)
	}
	return &Sums{DB: db.name, Path: path, Version: version, Zip: h1Hashes(a.zip), Mod: h1Hashes(a.mod)}, nil
}

// h1Hashes returns the h1: hashes of go.sum lines.
func h1Hashes(lines []string) []string {
	var hashes []string
	for _, line := range lines {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], "h1:") {
			hashes = append(hashes, f[2])
		}
	}
	return hashes
}

// Sums are the go.sum hashes that a checksum database records for one
// module version: what Lookup proved.
type Sums struct {
	DB      string   // the database's name, such as sum.golang.org
	Path    string   // the module path
	Version string   // the version
	Zip     []string // the h1: hashes of the zip (one, normally)
	Mod     []string // the h1: hashes of the go.mod file
}

// Check compares zipHash and modHash, the h1: hashes of what an upstream
// served, with the recorded ones; an empty hash is not checked. Nil Sums,
// Lookup's answer for a path the database does not cover, accept any hash.
//
// It returns an error wrapping ErrMismatch (a *MismatchError) when a hash
// differs from the database's, ErrNotFound when the database records no
// hash of that file, and ErrInvalid for a hash that is not an h1: hash.
func (s *Sums) Check(zipHash, modHash string) error {
	if s == nil {
		return nil
	}
	if err := checkHashes(s.Path, s.Version, zipHash, modHash); err != nil {
		return err
	}
	if err := s.compare(s.Mod, "go.mod", modHash); err != nil {
		return err
	}
	return s.compare(s.Zip, "zip", zipHash)
}

// compare checks hash (skipped when empty) against the recorded hashes of
// file.
func (s *Sums) compare(recorded []string, file, hash string) error {
	if hash == "" {
		return nil
	}
	if len(recorded) == 0 {
		return fmt.Errorf("%w: %s@%s: the checksum database %s has no h1: hash of the %s", ErrNotFound, s.Path, s.Version, s.DB, file)
	}
	if slices.Contains(recorded, hash) {
		return nil
	}
	return &MismatchError{DB: s.DB, Path: s.Path, Version: s.Version, File: file, Upstream: hash, Recorded: strings.Join(recorded, ", ")}
}

// checkHashes reports an error wrapping ErrInvalid for a hash of
// path@version that is neither empty nor an h1: hash.
func checkHashes(path, version string, hashes ...string) error {
	for _, h := range hashes {
		if h != "" && !strings.HasPrefix(h, "h1:") {
			return fmt.Errorf("%w: %s@%s: hash %q is not an h1: hash", ErrInvalid, path, version, h)
		}
	}
	return nil
}

// sumdbClient returns the client Lookup uses, a new one when the last is
// too old.
func (db *DB) sumdbClient() *sumdb.Client {
	db.clientMu.Lock()
	defer db.clientMu.Unlock()
	if db.client == nil || db.now().Sub(db.clientBorn) > clientMaxAge {
		db.client, db.clientBorn = sumdb.NewClient(&clientOps{db}), db.now()
	}
	return db.client
}

// dropClient makes the next Lookup use a new client, unless c was replaced
// already.
func (db *DB) dropClient(c *sumdb.Client) {
	db.clientMu.Lock()
	if db.client == c {
		db.client = nil
	}
	db.clientMu.Unlock()
}

// clientOps gives the sumdb.Client the DB's fetching and caching.
type clientOps struct{ db *DB }

// ReadRemote gets path (/lookup/... or /tile/...) through Get.
func (o *clientOps) ReadRemote(path string) ([]byte, error) {
	return o.db.Get(context.Background(), strings.TrimPrefix(path, "/"))
}

// ReadConfig returns the key, or the newest tree head proven consistent.
func (o *clientOps) ReadConfig(file string) ([]byte, error) {
	switch file {
	case "key":
		return []byte(o.db.key), nil
	case o.db.name + "/latest":
		return o.db.readVerified()
	}
	return nil, fmt.Errorf("checksum database: unknown configuration file %q", file)
}

// WriteConfig replaces the newest tree head proven consistent, if it is
// still old (a compare-and-swap).
func (o *clientOps) WriteConfig(file string, old, new []byte) error {
	if file != o.db.name+"/latest" {
		return fmt.Errorf("checksum database: cannot write configuration file %q", file)
	}
	db := o.db
	db.configMu.Lock()
	defer db.configMu.Unlock()
	cur, err := db.readVerified()
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return sumdb.ErrWriteConflict
	}
	return db.writeFile(db.verifiedPath(), new)
}

// readVerified returns the newest tree head proven consistent, or nothing
// when there is none yet. One that does not carry the database's signature
// (a changed key, a damaged file) is logged and ignored: the client then
// starts afresh instead of failing for good.
func (db *DB) readVerified() ([]byte, error) {
	data, err := os.ReadFile(db.verifiedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := db.checkTree(data); err != nil {
		db.log.Error("ignoring the checksum database's stored tree head", "db", db.name, "file", db.verifiedPath(), "err", err)
		return nil, nil
	}
	return data, nil
}

// ReadCache reads a lookup or tile from the cache.
func (o *clientOps) ReadCache(file string) ([]byte, error) {
	req, ok := o.cacheRequest(file)
	if !ok {
		return nil, fs.ErrNotExist
	}
	if data, ok := o.db.readCache(req); ok {
		return data, nil
	}
	return nil, fs.ErrNotExist
}

// WriteCache caches a lookup or tile the client has proven, unless Get has
// cached it already.
func (o *clientOps) WriteCache(file string, data []byte) {
	if req, ok := o.cacheRequest(file); ok {
		o.db.writeCache(req, data)
	}
}

// cacheRequest parses a cache file name, <name>/lookup/... or
// <name>/tile/...
func (o *clientOps) cacheRequest(file string) (request, bool) {
	rel, ok := strings.CutPrefix(file, o.db.name+"/")
	if !ok {
		return request{}, false
	}
	req, err := parseRel(rel)
	return req, err == nil && req.kind != kindLatest
}

// Log logs a message of the client.
func (o *clientOps) Log(msg string) {
	o.db.log.Debug("checksum database client", "db", o.db.name, "msg", msg)
}

// SecurityError logs the proof that the database misbehaved: it served two
// trees that are not one history. The client then fails the lookup.
func (o *clientOps) SecurityError(msg string) {
	o.db.log.Error("SECURITY ERROR: the checksum database misbehaved: it served inconsistent trees", "db", o.db.name, "proof", msg)
}
