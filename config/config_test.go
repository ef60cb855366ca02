package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var listenAddrTests = []struct {
	addr, port, want, err string
}{
	{"", "", "127.0.0.1:3000", ""},
	{"", "8080", "127.0.0.1:8080", ""},
	{"0.0.0.0", "", "0.0.0.0:3000", ""},
	{"0.0.0.0", "9000", "0.0.0.0:9000", ""},
	{"127.0.0.1:4000", "9000", "127.0.0.1:4000", ""},
	{"[::1]:4000", "", "[::1]:4000", ""},
	{"::1", "", "[::1]:3000", ""},
	{"localhost:0", "", "localhost:0", ""},
	{"127.0.0.1:http", "", "", "want a number"},
	{"", "70000", "", "want a number"},
	{"127.0.0.1:+80", "", "", "want a number"},
	{"127.0.0.1", "+80", "", "want a number"},
	{"127.0.0.1:-0", "", "", "want a number"},
	{"127.0.0.1:", "", "", "want a number"},
}

func TestListenAddr(t *testing.T) {
	for _, tt := range listenAddrTests {
		got, err := listenAddr(tt.addr, tt.port)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("listenAddr(%q, %q) = %q, %v; want error %q", tt.addr, tt.port, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("listenAddr(%q, %q) = %q, %v; want %q", tt.addr, tt.port, got, err, tt.want)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, k := range []string{"ADDR", "PORT", "GO_ENV", "AGORA_DATA_DIR", "AGORA_STORAGE_DIR", "DATABASE_URL", "SESSION_SECRET", "AGORA_READ_AUTH", "AGORA_SHUTDOWN_TIMEOUT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if c.Addr != "127.0.0.1:3000" || c.DataDir != data || c.StorageDir != filepath.Join(data, "storage") ||
		c.DatabaseURL != "sqlite3://"+filepath.Join(data, "agora.db") || c.ReadAuth != ReadPublic {
		t.Errorf("defaults: %+v", c)
	}
	s1, err := c.SessionSecret()
	if err != nil || len(s1) < 32 {
		t.Fatalf("SessionSecret() = %q, %v", s1, err)
	}
	c2, _ := Load()
	if s2, _ := c2.SessionSecret(); s2 != s1 {
		t.Errorf("session secret not persisted: %q then %q", s1, s2)
	}
	// Blank is unset.
	t.Setenv("SESSION_SECRET", "   ")
	c3, _ := Load()
	if s3, _ := c3.SessionSecret(); s3 != s1 {
		t.Errorf("SESSION_SECRET blank: session secret %q; want the generated %q", s3, s1)
	}
}

// TestLoadBlankIsUnset checks that a setting left blank, as a deployment
// template leaves a variable it passes on but nobody filled in, takes its
// default, as the go command takes a blank GOPROXY or GOSUMDB, instead of
// failing for some settings and not others. AGORA_UPSTREAM is the
// exception: blank is documented as off.
func TestLoadBlankIsUnset(t *testing.T) {
	t.Chdir(t.TempDir())
	keys := []string{"ADDR", "PORT", "GO_ENV", "AGORA_DATA_DIR", "AGORA_STORAGE_DIR", "DATABASE_URL", "SESSION_SECRET",
		"AGORA_READ_AUTH", "AGORA_SHUTDOWN_TIMEOUT", "AGORA_SHUTDOWN_DELAY", "AGORA_RULES", "AGORA_SUMDB", "AGORA_NOSUMDB", "AGORA_LIST_TTL",
		"AGORA_LOG_FORMAT", "AGORA_LOG_LEVEL"}
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	want, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, blank := range []string{"", " "} {
		for _, k := range keys {
			t.Setenv(k, blank)
		}
		got, err := Load()
		if err != nil {
			t.Errorf("every setting %q: Load() error = %v; want the defaults", blank, err)
			continue
		}
		// Under go test, envy takes an unset GO_ENV for test; the default
		// a server gets is development.
		if got.Addr != want.Addr || got.Env != "development" || got.DataDir != want.DataDir || got.StorageDir != want.StorageDir ||
			got.DatabaseURL != want.DatabaseURL || got.ReadAuth != want.ReadAuth || got.ShutdownTimeout != want.ShutdownTimeout || got.ShutdownDelay != 0 ||
			got.SumDB != want.SumDB || got.NoSumDB != want.NoSumDB || got.ListTTL != want.ListTTL || len(got.Rules) != 0 ||
			got.LogFormat != LogText || got.LogLevel != slog.LevelInfo {
			t.Errorf("every setting %q: %+v; want the defaults %+v", blank, got, want)
		}
	}
}

func TestLoadLogSettings(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tt := range []struct {
		format, level string
		wantFormat    string
		wantLevel     slog.Level
	}{
		{"json", "warn", LogJSON, slog.LevelWarn},
		{"JSON", "Debug", LogJSON, slog.LevelDebug},
		{"text", "error", LogText, slog.LevelError},
		{" text ", "info", LogText, slog.LevelInfo},
	} {
		t.Setenv("AGORA_LOG_FORMAT", tt.format)
		t.Setenv("AGORA_LOG_LEVEL", tt.level)
		c, err := Load()
		if err != nil || c.LogFormat != tt.wantFormat || c.LogLevel != tt.wantLevel {
			t.Errorf("AGORA_LOG_FORMAT=%q AGORA_LOG_LEVEL=%q: Load() = %v; want %s at %v", tt.format, tt.level, err, tt.wantFormat, tt.wantLevel)
			if c != nil {
				t.Errorf("got %s at %v", c.LogFormat, c.LogLevel)
			}
		}
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for _, tt := range []struct{ key, val, want string }{
		{"GO_ENV", "staging", "GO_ENV"},
		{"DATABASE_URL", "mysql://x", "DATABASE_URL"},
		{"AGORA_READ_AUTH", "open", "AGORA_READ_AUTH"},
		{"AGORA_SHUTDOWN_TIMEOUT", "soon", "AGORA_SHUTDOWN_TIMEOUT"},
		{"AGORA_SHUTDOWN_DELAY", "-5s", "AGORA_SHUTDOWN_DELAY"},
		{"ADDR", "127.0.0.1:x", "ADDR"},
		{"AGORA_UPSTREAM", "ftp://mirror.example", "AGORA_UPSTREAM"},
		{"AGORA_LIST_TTL", "-1s", "AGORA_LIST_TTL"},
		{"AGORA_RULES", "/nonexistent/rules", "AGORA_RULES"},
		{"AGORA_NOSUMDB", "corp.example.com,[", "AGORA_NOSUMDB"},
		{"AGORA_LOG_FORMAT", "logfmt", "AGORA_LOG_FORMAT"},
		{"AGORA_LOG_LEVEL", "verbose", "AGORA_LOG_LEVEL"},
		{"AGORA_LOG_LEVEL", "INFO+2", "AGORA_LOG_LEVEL"},
	} {
		t.Run(tt.key, func(t *testing.T) {
			t.Setenv(tt.key, tt.val)
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s=%q: Load() error = %v; want one line naming %s", tt.key, tt.val, err, tt.want)
			}
		})
	}
	t.Run("production needs SESSION_SECRET", func(t *testing.T) {
		t.Setenv("GO_ENV", "production")
		for _, secret := range []string{"", strings.Repeat(" ", 40), strings.Repeat(" ", 20) + "0123456789abcdef",
			"0123456789abcdef" + strings.Repeat(" ", 20) + "0123456789"} { // spaces inside do not count either
			t.Setenv("SESSION_SECRET", secret)
			if _, err := Load(); err == nil || !strings.Contains(err.Error(), "SESSION_SECRET") {
				t.Errorf("SESSION_SECRET=%q: Load() = %v; want an error naming SESSION_SECRET", secret, err)
			}
		}
		secret := " 0123456789abcdef 0123456789abcdef "
		t.Setenv("SESSION_SECRET", secret)
		if _, err := Load(); err != nil {
			t.Errorf("SESSION_SECRET=%q (32 characters besides spaces): Load() = %v; want no error", secret, err)
		}
	})
}

func TestLoadErrorsHidePasswords(t *testing.T) {
	t.Setenv("AGORA_UPSTREAM", "https://u:secret@a.example|u:secret@b.example,ftp://c.example")
	_, err := Load()
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "https://u:xxxxx@a.example|u:xxxxx@b.example,ftp://c.example") {
		t.Errorf("Load() error = %v; want the list without its passwords", err)
	}
}

func TestLoadUpstream(t *testing.T) {
	t.Chdir(t.TempDir())
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("corp.example.com none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGORA_RULES", rules)
	t.Setenv("AGORA_UPSTREAM", "https://a.example|https://b.example,direct")
	t.Setenv("AGORA_LIST_TTL", "5s")
	t.Setenv("AGORA_NOSUMDB", "corp.example.com,*.internal.example")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Upstream) != 2 || c.Upstream[0].URL != "https://a.example" || !c.Upstream[0].FallThrough ||
		len(c.Rules) != 1 || !c.Rules[0].None || c.ListTTL.Seconds() != 5 || c.SumDB != "sum.golang.org" ||
		c.NoSumDB != "corp.example.com,*.internal.example" {
		t.Errorf("upstream settings: %+v", c)
	}

	// Off is off whatever the environment's GOPROXY names.
	t.Setenv("GOPROXY", "https://x.example")
	for _, off := range []string{"off", ""} {
		t.Setenv("AGORA_UPSTREAM", off)
		if c, err := Load(); err != nil || len(c.Upstream) != 0 {
			t.Errorf("AGORA_UPSTREAM=%q: %v, %+v; want no upstream", off, err, c.Upstream)
		}
	}

	// Unset: the environment's GOPROXY, without direct.
	t.Setenv("AGORA_UPSTREAM", "")
	os.Unsetenv("AGORA_UPSTREAM")
	t.Setenv("GOPROXY", "https://corp-proxy.example,direct")
	if c, err := Load(); err != nil || len(c.Upstream) != 1 || c.Upstream[0].URL != "https://corp-proxy.example" {
		t.Errorf("AGORA_UPSTREAM unset, GOPROXY set: %v, %+v", err, c.Upstream)
	}
}

// TestLoadUpstreamOff checks that an upstream the environment leaves off,
// as it does for a static binary on a server without GOPROXY or a go
// command, is said to be off and why; an upstream set off is not.
func TestLoadUpstreamOff(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no go command
	t.Setenv("AGORA_UPSTREAM", "")
	os.Unsetenv("AGORA_UPSTREAM")
	for _, tt := range []struct{ goproxy, want string }{
		{"", "GOPROXY is unset and there is no go command in PATH"},
		{"direct", `GOPROXY="direct" names no proxy`},
		{"https://corp-proxy.example", ""},
	} {
		t.Setenv("GOPROXY", tt.goproxy)
		c, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == "" && c.UpstreamOff != "" || !strings.Contains(c.UpstreamOff, tt.want) {
			t.Errorf("GOPROXY=%q: UpstreamOff = %q; want %q", tt.goproxy, c.UpstreamOff, tt.want)
		}
	}
	t.Setenv("AGORA_UPSTREAM", "off")
	if c, err := Load(); err != nil {
		t.Fatal(err)
	} else if c.UpstreamOff != "" {
		t.Errorf("AGORA_UPSTREAM=off: UpstreamOff = %q; want none", c.UpstreamOff)
	}
}

// TestLoadData checks that LoadData reads the settings of where the data
// is kept, as Load does, and checks them with Load's errors, but no other
// setting: `agora token create` failed for want of a SESSION_SECRET with
// GO_ENV=production, and a bad ADDR stopped `agora migrate`.
func TestLoadData(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, k := range []string{"AGORA_DATA_DIR", "AGORA_STORAGE_DIR", "DATABASE_URL"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	// Every setting that only the server uses, bad.
	for _, kv := range [][2]string{
		{"GO_ENV", "production"}, {"SESSION_SECRET", ""}, {"ADDR", "127.0.0.1:x"}, {"AGORA_READ_AUTH", "open"},
		{"AGORA_SHUTDOWN_TIMEOUT", "soon"}, {"AGORA_SHUTDOWN_DELAY", "-5s"}, {"AGORA_UPSTREAM", "ftp://mirror.example"},
		{"AGORA_RULES", "/nonexistent/rules"}, {"AGORA_NOSUMDB", "["}, {"AGORA_LIST_TTL", "-1s"},
		{"AGORA_LOG_FORMAT", "xml"}, {"AGORA_LOG_LEVEL", "loud"},
	} {
		t.Setenv(kv[0], kv[1])
	}
	if _, err := Load(); err == nil {
		t.Fatal("Load() = nil error; want the server's settings refused")
	}
	d, err := LoadData()
	data := filepath.Join(dir, "data")
	if err != nil || d.DataDir != data || d.StorageDir != filepath.Join(data, "storage") || d.DatabaseURL != "sqlite3://"+filepath.Join(data, "agora.db") {
		t.Errorf("LoadData() = %+v, %v; want the defaults", d, err)
	}

	t.Setenv("AGORA_DATA_DIR", "/srv/agora")
	t.Setenv("AGORA_STORAGE_DIR", "/mnt/modules")
	t.Setenv("DATABASE_URL", "postgres://agora@db.example/agora")
	if d, err := LoadData(); err != nil || d.DataDir != "/srv/agora" || d.StorageDir != "/mnt/modules" || d.DatabaseURL != "postgres://agora@db.example/agora" {
		t.Errorf("LoadData() = %+v, %v; want the settings given", d, err)
	}

	// What it reads, it checks as Load does.
	t.Setenv("DATABASE_URL", "mysql://x")
	_, err = LoadData()
	want := "config: DATABASE_URL must be a postgres:// or sqlite3:// URL"
	if err == nil || err.Error() != want {
		t.Errorf("DATABASE_URL=mysql://x: LoadData() error = %v; want %q", err, want)
	}
}

// TestVariablesAreTheSettingsRead checks Variables against the code: every
// variable that a call of setting, envy.Get or envy.MustGet in this
// package names is in
// it, and every variable in it is read, so that the list `agora help`
// checks its text against cannot fall behind a new setting.
func TestVariablesAreTheSettingsRead(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	read := map[string]bool{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			switch fun := call.Fun.(type) {
			case *ast.Ident:
				if fun.Name != "setting" {
					return true
				}
			case *ast.SelectorExpr:
				if x, ok := fun.X.(*ast.Ident); !ok || x.Name != "envy" || (fun.Sel.Name != "Get" && fun.Sel.Name != "MustGet") {
					return true
				}
			default:
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				read[v] = true
			}
			return true
		})
	}
	listed := map[string]bool{}
	for _, name := range Variables {
		if listed[name] {
			t.Errorf("Variables names %s twice", name)
		}
		listed[name] = true
		if !read[name] {
			t.Errorf("Variables names %s, which no setting, envy.Get or envy.MustGet call reads", name)
		}
	}
	for name := range read {
		if !listed[name] {
			t.Errorf("%s is read, and not in Variables", name)
		}
	}
}

// TestREADMEDocumentsVariables checks that the README's table of settings
// has a row for each of Variables, in their order, and no other.
func TestREADMEDocumentsVariables(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(readme), "\n") {
		if name, ok := strings.CutPrefix(line, "| `"); ok {
			if name, _, ok := strings.Cut(name, "` |"); ok && strings.ToUpper(name) == name {
				rows = append(rows, name)
			}
		}
	}
	if !slices.Equal(rows, Variables) {
		t.Errorf("the README's table of settings has rows for\n%v\nwant\n%v", rows, Variables)
	}
}
