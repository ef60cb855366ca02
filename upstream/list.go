// Package upstream is a client of GOPROXY servers: the proxies that Agora
// fetches public modules from. It speaks the module download protocol
// (https://go.dev/ref/mod#goproxy-protocol) over plain HTTP, with no go
// command and no version control, and walks a list of proxies exactly as
// the go command walks GOPROXY:
//
//   - after a ',' the next proxy is tried only when this one does not have
//     the module (404 or 410; for Agora also 403, which some mirrors send
//     for unknown modules);
//   - after a '|' the next proxy is tried after any error.
//
// A proxy may also be a file:// URL of a GOPROXY file tree on disk, such as
// a $GOMODCACHE/cache/download directory.
//
// Every request is bounded: a connect timeout, a timeout for the response
// headers, a timeout for the whole body, and a size limit per kind of file
// (the go command's own limits from golang.org/x/mod/zip where they exist).
// Requests that fail with a 5xx, a 429 or a broken connection are retried
// with exponential backoff and jitter, as long as nothing of the body has
// reached the caller.
//
// Which proxies serve which module paths is decided by a Router, from a
// default list and the rules of an AGORA_RULES file (see ParseRules).
//
// The package knows nothing of Agora's storage or database: package
// modproxy decides what to fetch and what to keep.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	pathpkg "path"
	"path/filepath"
	"strings"
	"time"
)

// Proxy is one entry of a proxy list.
type Proxy struct {
	// URL is the proxy's base URL (http, https or file), without a
	// trailing slash.
	URL string
	// FallThrough is true when a '|' follows the entry in the list: then
	// any error falls through to the next proxy, not only "not found"
	// (which a ',' allows).
	FallThrough bool
}

// ParseList parses a GOPROXY-style list, as the go command does: entries
// separated by ',' (the next entry is tried only if this one does not have
// the module) or '|' (the next entry is tried after any error), spaces
// around entries ignored.
//
// Entries are http, https or file URLs. An entry with a dot, colon or
// slash but no scheme, such as "proxy.example.com", is an https URL.
// The go command's "direct" and "off" entries are dropped, since Agora
// never fetches from version control, and so is everything after them,
// which the go command would never reach. "off", "direct" and "" give a nil
// list: no upstream.
func ParseList(s string) ([]Proxy, error) {
	var list []Proxy
	sawEntry := false
	for rest := s; rest != ""; {
		entry, fallThrough := rest, false
		if i := strings.IndexAny(rest, ",|"); i >= 0 {
			entry, fallThrough, rest = rest[:i], rest[i] == '|', rest[i+1:]
		} else {
			rest = ""
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		sawEntry = true
		if entry == "off" || entry == "direct" {
			break
		}
		u, err := parseProxyURL(entry)
		if err != nil {
			return nil, err
		}
		list = append(list, Proxy{URL: u.String(), FallThrough: fallThrough})
	}
	if s != "" && !sawEntry {
		return nil, fmt.Errorf("proxy list %q has no entries: want URLs separated by ',' or '|', or \"off\"", s)
	}
	return list, nil
}

// parseProxyURL checks one proxy entry and returns its base URL, without a
// trailing slash.
func parseProxyURL(entry string) (*url.URL, error) {
	// As the go command: single words are reserved, anything with ":/" or
	// an absolute file path must be a full URL, the rest is https.
	if strings.ContainsAny(entry, ".:/") && !strings.Contains(entry, ":/") && !filepath.IsAbs(entry) && !pathpkg.IsAbs(entry) {
		entry = "https://" + entry
	}
	u, err := url.Parse(entry)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		return nil, fmt.Errorf("proxy %q: %v", redactRaw(entry), err)
	}
	name := RedactURL(u)
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("proxy %q: the URL has no host", name)
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return nil, fmt.Errorf("proxy %q: a proxy URL has no query or fragment", name)
		}
	case "file":
		if *u != (url.URL{Scheme: u.Scheme, Path: u.Path, RawPath: u.RawPath}) {
			return nil, fmt.Errorf("proxy %q: a file:// proxy URL has only a path, as in file:///srv/goproxy", name)
		}
		if !pathpkg.IsAbs(u.Path) {
			return nil, fmt.Errorf("proxy %q: a file:// proxy URL needs an absolute path, as in file:///srv/goproxy", name)
		}
	case "":
		return nil, fmt.Errorf("proxy %q: the URL has no scheme: want https://, http:// or file://", name)
	default:
		return nil, fmt.Errorf("proxy %q: unsupported scheme %q: want https://, http:// or file://", name, u.Scheme)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// String formats a list as GOPROXY does, with secrets redacted: for
// logs, not to be parsed again.
func String(list []Proxy) string {
	var b strings.Builder
	for i, p := range list {
		if i > 0 {
			if list[i-1].FallThrough {
				b.WriteByte('|')
			} else {
				b.WriteByte(',')
			}
		}
		b.WriteString(redact(p.URL))
	}
	return b.String()
}

// redact returns the URL s with its secret, if any, replaced (see
// RedactURL).
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return RedactURL(u)
}

// RedactURL returns u as a string for messages, logs, metric labels and
// versions' sources, which may reach any client: with its password
// replaced, as url.URL.Redacted does, and with a user name that comes
// without a password replaced too, since that is how a token is given in
// a URL (https://TOKEN@proxy.example).
func RedactURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	c := *u
	c.User = url.User("xxxxx")
	return c.String()
}

// RedactList returns a proxy list as written, such as an AGORA_UPSTREAM
// that ParseList rejects, with the password of each entry replaced: for
// messages, not to be parsed again.
func RedactList(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexAny(s, ",|")
		if i < 0 {
			b.WriteString(redactRaw(s))
			return b.String()
		}
		b.WriteString(redactRaw(s[:i]))
		b.WriteByte(s[i])
		s = s[i+1:]
	}
}

// redactRaw returns the URL s, which may not parse and may have no scheme
// (as a list entry such as "u:pass@proxy.example"), with its secret, if
// any, replaced as RedactURL does.
func redactRaw(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if ok {
		scheme += "://"
	} else {
		scheme, rest = "", s
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return scheme + "xxxxx" + rest[at:] // a user name alone: a token
	}
	return scheme + user + ":xxxxx" + rest[at:]
}

// DefaultList returns the proxy list Agora uses when AGORA_UPSTREAM is not
// set: the GOPROXY of the environment it runs in, that is getenv("GOPROXY")
// if set, else what goEnvGOPROXY reports (normally GoEnvGOPROXY: the go
// command's own setting or default, when a go command is installed), else
// "" (no upstream). No proxy host is written into Agora.
func DefaultList(getenv func(string) string, goEnvGOPROXY func() (string, error)) string {
	if v := getenv("GOPROXY"); v != "" {
		return v
	}
	if goEnvGOPROXY == nil {
		return ""
	}
	v, err := goEnvGOPROXY()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(v)
}

// goEnvTimeout bounds `go env GOPROXY`.
const goEnvTimeout = 10 * time.Second

// GoEnvGOPROXY returns what `go env GOPROXY` prints: "" and no error when
// there is no go command in $PATH, an error when it fails or takes longer
// than 10s. It runs in the temporary directory with GOTOOLCHAIN=local, so
// that no go.mod around it makes it download a toolchain.
func GoEnvGOPROXY() (string, error) {
	goCmd, err := exec.LookPath("go")
	if errors.Is(err, exec.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("go env GOPROXY: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), goEnvTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOPROXY")
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("go env GOPROXY: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}
