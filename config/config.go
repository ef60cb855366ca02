// Package config is Agora's configuration: one typed Config read from the
// environment through envy, in one place, and Data, the part of it that
// the commands other than serve read. A missing or bad setting is an
// error of one line that names the variable.
//
// The directory also holds buffalo-app.toml and buffalo-plugins.toml, which
// the buffalo command reads.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gobuffalo/envy"

	"agora/upstream"
)

// Data is where the registry's data is kept: the settings that every
// command uses, and all that the commands other than serve use.
type Data struct {
	// DataDir holds the SQLite database, the session secret, the checksum
	// database's cache, temporary uploads and, by default, storage
	// (AGORA_DATA_DIR).
	DataDir string
	// StorageDir holds module sources in the GOPROXY layout
	// (AGORA_STORAGE_DIR).
	StorageDir string
	// DatabaseURL is a postgres:// or sqlite3:// URL (DATABASE_URL).
	DatabaseURL string
}

// Config is every setting of an Agora server.
type Config struct {
	// Data is where the data is kept (AGORA_DATA_DIR, AGORA_STORAGE_DIR,
	// DATABASE_URL).
	Data
	// Addr is the listen address, host:port (ADDR, PORT).
	Addr string
	// Env is development, test or production (GO_ENV).
	Env string
	// ReadAuth is "public" (anyone may download) or "token" (downloads need
	// a token with read scope) (AGORA_READ_AUTH).
	ReadAuth string
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM, once ShutdownDelay has passed (AGORA_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long a server goes on serving after SIGTERM,
	// answering /readyz 503, before it stops accepting connections, so
	// that a load balancer stops sending it requests first; 0 stops at
	// once (AGORA_SHUTDOWN_DELAY).
	ShutdownDelay time.Duration
	// LogFormat is how the server writes its log, to standard error: text
	// (key=value pairs) or json (an object per line) (AGORA_LOG_FORMAT).
	LogFormat string
	// LogLevel is the least level the server logs: info logs a line per
	// request, warn only what an operator should look at, debug also why
	// a fallback was taken (AGORA_LOG_LEVEL).
	LogLevel slog.Level

	// Upstream is the GOPROXY-style list of proxies that public modules are
	// fetched from; empty when fetching is off (AGORA_UPSTREAM: a list, or
	// off; by default the GOPROXY of Agora's environment, $GOPROXY or `go env
	// GOPROXY`, without its direct and off entries).
	Upstream []upstream.Proxy
	// UpstreamOff says why Upstream is empty when AGORA_UPSTREAM is unset
	// (no GOPROXY in the environment and no go command to ask, or one that
	// names no proxy), for a warning at start; "" when AGORA_UPSTREAM is
	// set or the environment gave a proxy.
	UpstreamOff string
	// Rules route module paths to other upstreams or to none, first match
	// first (the file named by AGORA_RULES; none when unset).
	Rules []upstream.Rule
	// SumDB names the checksum database fetched versions are verified
	// against, in GOSUMDB syntax, or is "off" (AGORA_SUMDB, default
	// sum.golang.org). Package checksum parses it.
	SumDB string
	// NoSumDB lists the path patterns that are not verified (AGORA_NOSUMDB,
	// GONOSUMDB syntax).
	NoSumDB string
	// ListTTL is how long a module's merged version list is reused
	// (AGORA_LIST_TTL).
	ListTTL time.Duration

	sessionSecret string
}

// Variables are the environment variables a server reads, in the order
// the README's table of settings gives them. `agora help` names them all.
var Variables = []string{
	"ADDR", "PORT", "AGORA_DATA_DIR", "AGORA_STORAGE_DIR", "DATABASE_URL",
	"AGORA_READ_AUTH", "SESSION_SECRET", "GO_ENV", "AGORA_SHUTDOWN_TIMEOUT",
	"AGORA_SHUTDOWN_DELAY", "AGORA_UPSTREAM", "AGORA_RULES", "AGORA_SUMDB",
	"AGORA_NOSUMDB", "AGORA_LIST_TTL", "AGORA_LOG_FORMAT", "AGORA_LOG_LEVEL",
}

// Read auth modes.
const (
	ReadPublic = "public"
	ReadToken  = "token"
)

// Log formats.
const (
	LogText = "text"
	LogJSON = "json"
)

// logLevels are the values of AGORA_LOG_LEVEL.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// TempDir is where uploads wait while they are checked: in the data
// directory, so on the same file system as storage by default.
// Only the server that holds the data directory's lock uses it, and it
// clears it when it starts.
func (c *Config) TempDir() string { return filepath.Join(c.DataDir, "tmp") }

// ImportTempDir is where `agora import` and the tasks stage copies of
// zips: beside TempDir, not in it, so that a server starting meanwhile
// does not clear them, and on the same file system. Commands may run
// while a server runs, and several at once.
func (d *Data) ImportTempDir() string { return filepath.Join(d.DataDir, "tmp-import") }

// Production reports whether Agora runs with GO_ENV=production.
func (c *Config) Production() bool { return c.Env == "production" }

// Load reads the configuration of a server from the environment and a .env
// file in the working directory, whose settings override the environment's:
// envy loads it when the program starts.
func Load() (*Config, error) {
	envy.Reload() // envy copies the environment once at start-up; read it now
	c := &Config{
		Env:      setting("GO_ENV", "development"),
		ReadAuth: setting("AGORA_READ_AUTH", ReadPublic),
	}
	switch c.Env {
	case "development", "test", "production":
	default:
		return nil, fmt.Errorf("config: GO_ENV=%q: want development, test or production", c.Env)
	}
	addr, err := listenAddr(setting("ADDR", ""), setting("PORT", ""))
	if err != nil {
		return nil, err
	}
	c.Addr = addr
	if c.Data, err = loadData(); err != nil {
		return nil, err
	}
	switch c.ReadAuth {
	case ReadPublic, ReadToken:
	default:
		return nil, fmt.Errorf("config: AGORA_READ_AUTH=%q: want public or token", c.ReadAuth)
	}
	if c.ShutdownTimeout, err = time.ParseDuration(setting("AGORA_SHUTDOWN_TIMEOUT", "30s")); err != nil || c.ShutdownTimeout <= 0 {
		return nil, fmt.Errorf("config: AGORA_SHUTDOWN_TIMEOUT=%q: want a positive duration such as 30s", setting("AGORA_SHUTDOWN_TIMEOUT", ""))
	}
	if c.ShutdownDelay, err = time.ParseDuration(setting("AGORA_SHUTDOWN_DELAY", "0s")); err != nil || c.ShutdownDelay < 0 {
		return nil, fmt.Errorf("config: AGORA_SHUTDOWN_DELAY=%q: want a duration such as 5s, or 0", setting("AGORA_SHUTDOWN_DELAY", ""))
	}
	switch c.LogFormat = strings.ToLower(setting("AGORA_LOG_FORMAT", LogText)); c.LogFormat {
	case LogText, LogJSON:
	default:
		return nil, fmt.Errorf("config: AGORA_LOG_FORMAT=%q: want text or json", setting("AGORA_LOG_FORMAT", ""))
	}
	level, ok := logLevels[strings.ToLower(setting("AGORA_LOG_LEVEL", "info"))]
	if !ok {
		return nil, fmt.Errorf("config: AGORA_LOG_LEVEL=%q: want debug, info, warn or error", setting("AGORA_LOG_LEVEL", ""))
	}
	c.LogLevel = level
	if err := c.loadUpstream(); err != nil {
		return nil, err
	}
	c.sessionSecret = envy.Get("SESSION_SECRET", "") // as given: spaces are part of the key
	if strings.TrimSpace(c.sessionSecret) == "" {
		c.sessionSecret = "" // blank is unset: generated, outside production
	}
	if c.Production() && nonSpace(c.sessionSecret) < 32 {
		return nil, errors.New("config: SESSION_SECRET must be set to at least 32 random characters, not counting spaces, when GO_ENV=production")
	}
	return c, nil
}

// LoadData reads the settings of where the registry's data is kept
// (AGORA_DATA_DIR, AGORA_STORAGE_DIR, DATABASE_URL), as Load does, and
// checks them, with the same errors, but no other setting: a command that
// works on the database and storage is not stopped by a setting only the
// server uses, such as SESSION_SECRET when GO_ENV=production.
func LoadData() (*Data, error) {
	envy.Reload() // as Load
	d, err := loadData()
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// loadData reads the settings of Data.
func loadData() (Data, error) {
	var d Data
	var err error
	if d.DataDir, err = absDir("AGORA_DATA_DIR", setting("AGORA_DATA_DIR", "data")); err != nil {
		return Data{}, err
	}
	if d.StorageDir, err = absDir("AGORA_STORAGE_DIR", setting("AGORA_STORAGE_DIR", filepath.Join(d.DataDir, "storage"))); err != nil {
		return Data{}, err
	}
	d.DatabaseURL = setting("DATABASE_URL", "sqlite3://"+filepath.Join(d.DataDir, "agora.db"))
	scheme, _, _ := strings.Cut(d.DatabaseURL, "://")
	switch scheme {
	case "postgres", "postgresql", "sqlite3", "sqlite":
	default:
		return Data{}, errors.New("config: DATABASE_URL must be a postgres:// or sqlite3:// URL")
	}
	return d, nil
}

// loadUpstream reads the settings of the pull-through cache.
func (c *Config) loadUpstream() error {
	list, err := envy.MustGet("AGORA_UPSTREAM")
	defaulted := err != nil
	var goEnv struct { // what `go env GOPROXY` said, if it was asked
		asked bool
		out   string
		err   error
	}
	if defaulted { // unset: the GOPROXY of the environment
		list = upstream.DefaultList(func(k string) string { return envy.Get(k, "") }, func() (string, error) {
			goEnv.asked = true
			goEnv.out, goEnv.err = upstream.GoEnvGOPROXY()
			return goEnv.out, goEnv.err
		})
	}
	if strings.TrimSpace(list) != "" {
		if c.Upstream, err = upstream.ParseList(list); err != nil {
			return fmt.Errorf("config: AGORA_UPSTREAM=%q: %v", upstream.RedactList(list), err)
		}
	}
	if defaulted && len(c.Upstream) == 0 {
		switch {
		case !goEnv.asked:
			c.UpstreamOff = fmt.Sprintf("GOPROXY=%q names no proxy", upstream.RedactList(list))
		case goEnv.err != nil:
			c.UpstreamOff = fmt.Sprintf("GOPROXY is unset and %v", goEnv.err)
		case goEnv.out == "":
			c.UpstreamOff = "GOPROXY is unset and there is no go command in PATH to ask"
		default:
			c.UpstreamOff = fmt.Sprintf("GOPROXY is unset and `go env GOPROXY` (%q) names no proxy", upstream.RedactList(goEnv.out))
		}
	}
	if name := setting("AGORA_RULES", ""); name != "" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("config: AGORA_RULES: %v", err)
		}
		defer f.Close()
		if c.Rules, err = upstream.ParseRules(f, name); err != nil {
			return fmt.Errorf("config: AGORA_RULES: %v", err)
		}
	}
	c.SumDB = setting("AGORA_SUMDB", "sum.golang.org")
	c.NoSumDB = setting("AGORA_NOSUMDB", "")
	if c.NoSumDB != "" {
		if err := upstream.CheckPattern(c.NoSumDB); err != nil {
			return fmt.Errorf("config: AGORA_NOSUMDB=%q: %v", c.NoSumDB, err)
		}
	}
	ttl := setting("AGORA_LIST_TTL", "60s")
	if c.ListTTL, err = time.ParseDuration(ttl); err != nil || c.ListTTL <= 0 {
		return fmt.Errorf("config: AGORA_LIST_TTL=%q: want a positive duration such as 60s", ttl)
	}
	return nil
}

// setting returns the environment variable key, or def when it is unset or
// blank: a deployment template that passes a variable nobody filled in
// gets the default, as the go command does with a blank GOPROXY.
func setting(key, def string) string {
	if v := strings.TrimSpace(envy.Get(key, "")); v != "" {
		return v
	}
	return def
}

// nonSpace returns how many characters of s are not spaces: padding a
// short secret with spaces, inside it or around it, adds no randomness.
func nonSpace(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// listenAddr combines ADDR and PORT: ADDR may be host:port, or a host that
// PORT (default 3000) completes. Unset, it is 127.0.0.1:3000.
func listenAddr(addr, port string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1"
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		// No port in ADDR: a bare host.
		host, p = strings.Trim(addr, "[]"), port
		if p == "" {
			p = "3000"
		}
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", fmt.Errorf("config: ADDR=%q: want host:port or a host", addr)
		}
	}
	// Digits only: strconv.Atoi takes "+80" and "-0" too.
	n, err := strconv.Atoi(p)
	if err != nil || strings.Trim(p, "0123456789") != "" || n > 65535 {
		return "", fmt.Errorf("config: port %q (ADDR or PORT): want a number from 0 to 65535", p)
	}
	return net.JoinHostPort(host, p), nil
}

// absDir returns dir as an absolute path, naming the variable on error.
func absDir(name, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("config: %s=%q: %v", name, dir, err)
	}
	return abs, nil
}

// SessionSecret returns SESSION_SECRET. Outside production, when it is
// unset, it returns a random secret generated once and kept in the data
// directory, so that sessions survive restarts.
func (c *Config) SessionSecret() (string, error) {
	if c.sessionSecret != "" {
		return c.sessionSecret, nil
	}
	name := filepath.Join(c.DataDir, "session_secret")
	if b, err := os.ReadFile(name); err == nil && len(b) >= 32 {
		c.sessionSecret = strings.TrimSpace(string(b))
		return c.sessionSecret, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("config: reading the session secret: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(b)
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return "", fmt.Errorf("config: AGORA_DATA_DIR: %w", err)
	}
	if err := os.WriteFile(name, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("config: writing the session secret: %w", err)
	}
	c.sessionSecret = secret
	return secret, nil
}
