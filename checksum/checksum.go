// Package checksum is Agora's side of the Go checksum database
// (https://go.dev/design/25530-sumdb): it verifies the go.sum hashes of
// module versions fetched from upstream proxies before they are stored, and
// it is the cache behind Agora's own /sumdb/<name>/ endpoints, through which
// go commands that can reach only Agora talk to the database.
//
// A [DB] reaches the database the way the go command does: through the
// first upstream proxy whose /sumdb/<name>/supported answers 200, else
// directly. Everything it fetches is kept on disk under Options.CacheDir:
//
//	<CacheDir>/<name>/lookup/<escaped path>@<escaped version>  forever
//	<CacheDir>/<name>/tile/8/<L>/<N>[.p/<W>]                  forever (tiles never change)
//	<CacheDir>/<name>/latest                                  the last latest fetched, served when the upstream fails
//	<CacheDir>/<name>/verified-latest                         the newest tree head Lookup proved consistent
//
// Lookups are kept forever too: a lookup embeds a signed tree head, and a go
// client proves it consistent with its own newest one using tiles, so an old
// answer is as good as a new one; keeping them lets builds that only need
// modules looked up before work without any network.
//
// Nothing the upstream serves is trusted, so that it cannot poison the
// cache: a tree head must carry the database's signature; a lookup's record
// is proven against the signed tree head it comes with, and a tile against
// the newest signed tree seen, and that tree must be one history with the
// newest one known to be genuine (the largest proven so, or the one Lookup
// verified), reading (and caching) the tiles of the proofs, before either
// is cached. So the answers of a fork of the log, signed with the
// database's key, are refused rather than cached. An answer that cannot be
// proven for want of a tree or of the proof's tiles is passed on,
// uncached; one whose proof fails is refused. Lookup, in addition, checks
// that every tree head it meets is consistent with the ones before, as the
// go command does, with golang.org/x/mod/sumdb.Client.
package checksum

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"agora/internal/slots"
)

// The kinds of failure this package reports. Every error it returns wraps
// one of them, so that callers map them to statuses with errors.Is.
var (
	// ErrNotFound: the database has no such record or tile (the upstream
	// answered 404 or 410), or, from Lookup, the module version is not in
	// the database (a private module not listed in NoSumDB, say).
	ErrNotFound = errors.New("not found in the checksum database")
	// ErrInvalid: the request is malformed (an unknown path shape, an
	// invalid module path, version or hash).
	ErrInvalid = errors.New("invalid checksum database request")
	// ErrUnavailable: the database cannot be asked: the upstream failed,
	// timed out, or served something that is not valid; or fetching is off
	// (Options.Offline) and the answer is not in the cache.
	ErrUnavailable = errors.New("checksum database unavailable")
	// ErrBusy: too many fetches from the upstream are under way, and too
	// many wait for one of them to end, to take another; it may be tried
	// again shortly. Errors wrapping it wrap ErrUnavailable too.
	ErrBusy = slots.ErrFull
	// ErrMismatch: the hashes of what the upstream served differ from those
	// the checksum database records. Errors wrapping it are *MismatchError.
	ErrMismatch = errors.New("checksum mismatch")
)

// MismatchError reports content whose hash differs from the checksum
// database's. It wraps ErrMismatch.
type MismatchError struct {
	DB       string // the database's name, such as sum.golang.org
	Path     string
	Version  string
	File     string // "zip" or "go.mod"
	Upstream string // the h1: hash of what the upstream served
	Recorded string // the h1: hash the checksum database records
}

// Error names the module version, both hashes and what they mean, in the
// spirit of the go command's "SECURITY ERROR".
func (e *MismatchError) Error() string {
	return fmt.Sprintf("SECURITY ERROR: %s@%s: checksum mismatch of the %s: the upstream served %s, the checksum database %s records %s; "+
		"the upstream served content that differs from what the checksum database recorded (replaced at the origin, or tampered with), so it was refused",
		e.Path, e.Version, e.File, e.Upstream, e.DB, e.Recorded)
}

// Unwrap returns ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Config is a checksum database as GOSUMDB names it.
type Config struct {
	// Name is the database's name, such as sum.golang.org; empty when
	// checksum verification is off.
	Name string
	// Key is the database's verifier key (golang.org/x/mod/sumdb/note
	// syntax: name+hash+key).
	Key string
	// URL is the database's base URL when GOSUMDB gives one ("name+key
	// URL"); empty means https://<Name>.
	URL string
}

// knownKeys are the keys of the databases the go command knows by name.
var knownKeys = map[string]string{
	"sum.golang.org": "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
}

// ParseDB parses a checksum database in the syntax of GOSUMDB, as the go
// command does:
//
//	off                   verification off: the zero Config
//	sum.golang.org        a database the go command knows the key of
//	sum.golang.google.cn  sum.golang.org, reached at https://sum.golang.google.cn
//	name+hash+key         any database, reached at https://name
//	name+hash+key URL     any database, reached at URL
//
// The empty string means sum.golang.org, the go command's default.
func ParseDB(s string) (Config, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "off":
		return Config{}, nil
	case "":
		s = "sum.golang.org"
	case "sum.golang.google.cn":
		s = "sum.golang.org https://sum.golang.google.cn"
	}
	const want = `want "off", "sum.golang.org", "name+hash+key" or "name+hash+key URL"`
	f := strings.Fields(s)
	if len(f) > 2 {
		return Config{}, fmt.Errorf("too many fields in %q: %s", s, want)
	}
	key := f[0]
	if k, ok := knownKeys[key]; ok {
		key = k
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		if !strings.Contains(key, "+") {
			return Config{}, fmt.Errorf("unknown checksum database %q: give its key (%s)", key, want)
		}
		return Config{}, fmt.Errorf("invalid checksum database key %q: %v (%s)", key, err, want)
	}
	c := Config{Name: v.Name(), Key: key}
	if err := checkName(c.Name); err != nil {
		return Config{}, err
	}
	if len(f) == 2 {
		if c.URL, err = checkURL(f[1]); err != nil {
			return Config{}, fmt.Errorf("invalid checksum database URL %q: %v", f[1], err)
		}
	}
	return c, nil
}

// checkName reports an error unless name is a database name the go command
// accepts: host[/path], nothing else.
func checkName(name string) error {
	u, err := url.Parse("https://" + name)
	if err != nil || strings.HasSuffix(name, "/") || u.Host == "" || u.RawPath != "" ||
		*u != (url.URL{Scheme: "https", Host: u.Host, Path: u.Path}) ||
		strings.Contains(name, "/./") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
		return fmt.Errorf("invalid checksum database name %q: must be host[/path]", name)
	}
	return nil
}

// checkURL validates an http or https base URL and returns it without a
// trailing slash.
func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want an http or https URL without query or fragment")
	}
	return strings.TrimSuffix(s, "/"), nil
}
