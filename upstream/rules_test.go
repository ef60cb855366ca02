package upstream

import (
	"context"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	f, err := os.Open("testdata/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, err := ParseRules(f, "testdata/rules")
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Pattern: "corp.example.com", None: true, Line: 5},
		{Pattern: "*.corp.example.com", None: true, Line: 6},
		{Pattern: "github.com/acme/special", Line: 10, Proxies: []Proxy{
			{URL: "https://acme-proxy.example", FallThrough: true}, {URL: "https://proxy.example"},
		}},
		{Pattern: "github.com/acme", Line: 11, Proxies: []Proxy{{URL: "https://proxy.example"}}},
		{Pattern: "gopkg.in,golang.org/x", Line: 13, Proxies: []Proxy{{URL: "file:///srv/goproxy"}}},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("ParseRules =\n%+v\nwant\n%+v", rules, want)
	}
}

var parseRulesErrorTests = []struct{ in, want string }{
	{"corp.example.com\n", "rules:1: \"corp.example.com\" has no upstream"},
	{"# comment\n\ncorp.example.com   # none\n", "rules:3: \"corp.example.com\" has no upstream"},
	{"a.example none\n[x none\n", "rules:2: pattern \"[x\": syntax error in pattern"},
	{", none\n", "rules:1: pattern \",\" matches nothing"},
	{"a.example ftp://proxy.example\n", "rules:1: proxy \"ftp://proxy.example\": unsupported scheme"},
	{"a.example direct\n", "rules:1: the list \"direct\" has no proxy URL"},
	{"a.example direct,https://u:secret@proxy.example\n", "rules:1: the list \"direct,https://u:xxxxx@proxy.example\" has no proxy URL"},
	{"a.example https://proxy.example https://other.example\n", "rules:1: proxy \"https://proxy.example https://other.example\""},
	{"a.example " + strings.Repeat("x", 70000) + "\n", "rules: bufio.Scanner: token too long"},
	// Characters no module path has make a rule that never matches:
	// the paths it was written for would go to the default upstream.
	{"a.example none\ncorp.example.com\u200b none\n", `rules:2: pattern "corp.example.com\u200b": U+200B`},
	{"\ufeff\ufeffcorp.example.com none\n", `rules:1: pattern "\ufeffcorp.example.com": U+FEFF`},
	{"corp.example.com,\u00e9.example none\n", `rules:1: pattern "é.example": U+00E9`},
}

// TestParseRulesByteOrderMark checks that a rules file saved with a
// byte-order mark, as some editors do, keeps its first rule: the mark is
// the file's, not the pattern's, which would match no path.
func TestParseRulesByteOrderMark(t *testing.T) {
	rules, err := ParseRules(strings.NewReader("\ufeffcorp.example.com none\r\n"), "rules")
	want := []Rule{{Pattern: "corp.example.com", None: true, Line: 1}}
	if err != nil || !reflect.DeepEqual(rules, want) {
		t.Fatalf("ParseRules = %+v, %v; want %+v", rules, err, want)
	}
	r := NewRouter([]Proxy{{URL: "https://proxy.example"}}, rules, Options{})
	if c := r.For("corp.example.com/x"); c != nil {
		t.Errorf("For(corp.example.com/x) = %v; want nil (never fetched)", String(c.Proxies()))
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, tt := range parseRulesErrorTests {
		rules, err := ParseRules(strings.NewReader(tt.in), "rules")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRules(%.40q) = %+v, %v; want an error with %q", tt.in, rules, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseRules(%.40q): error %q shows the password", tt.in, err)
		}
	}
}

func TestRouter(t *testing.T) {
	const rules = `
corp.example.com              none
example.com/special/private   none
example.com/special           https://special.example
example.com/other/*/x         off
example.com/other             https://other.example | https://fallback.example
`
	parsed, err := ParseRules(strings.NewReader(rules), "rules")
	if err != nil {
		t.Fatal(err)
	}
	def := []Proxy{{URL: "https://default.example"}}
	for _, tt := range []struct {
		def  []Proxy
		path string
		want string // the client's list, "" for nil
	}{
		{def, "corp.example.com", ""},
		{def, "corp.example.com/a/b", ""},
		{def, "corp.example.comx", "https://default.example"},
		{def, "example.com/special/private/v2", ""},
		{def, "example.com/special/public", "https://special.example"},
		{def, "example.com/special", "https://special.example"},
		{def, "example.com/other/a/x/y", ""},
		{def, "example.com/other/a/y", "https://other.example|https://fallback.example"},
		{def, "example.com/else", "https://default.example"},
		{nil, "example.com/else", ""},
		{nil, "example.com/special", "https://special.example"},
	} {
		r := NewRouter(tt.def, parsed, Options{})
		c := r.For(tt.path)
		if got := String(c.Proxies()); got != tt.want || (c == nil) != (tt.want == "") {
			t.Errorf("For(%q) with default %v = %v (%q); want %q", tt.path, tt.def, c, got, tt.want)
		}
	}
	var nilRouter *Router
	if c := nilRouter.For("example.com/m"); c != nil {
		t.Errorf("nil Router: For = %v; want nil", c)
	}
	if c := NewRouter(nil, nil, Options{}).For("example.com/m"); c != nil {
		t.Errorf("no default, no rules: For = %v; want nil", c)
	}
}

func TestRouterFetches(t *testing.T) {
	def := newFakeProxy(t, serveFiles(modFiles))
	special := newFakeProxy(t, serveFiles(map[string]string{"example.com/special/@v/v1.0.0.mod": "module example.com/special\n"}))
	rules, err := ParseRules(strings.NewReader("example.com/special "+special.URL+"\n"), "rules")
	if err != nil {
		t.Fatal(err)
	}
	proxies, _ := ParseList(def.URL)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	r := NewRouter(proxies, rules, Options{Transport: tr})
	ctx := context.Background()
	if _, src, err := r.For("example.com/special").Mod(ctx, "example.com/special", "v1.0.0"); err != nil || src != special.URL {
		t.Errorf("Mod of example.com/special: from %q, %v; want from %s", src, err, special.URL)
	}
	if _, src, err := r.For(modPath).Mod(ctx, modPath, "v1.0.0"); err != nil || src != def.URL {
		t.Errorf("Mod of %s: from %q, %v; want from %s", modPath, src, err, def.URL)
	}
	if def.count() != 1 || special.count() != 1 {
		t.Errorf("requests: default %d, special %d; want one each", def.count(), special.count())
	}

	// All clients share one transport, the one given or a new one.
	for _, opts := range []Options{{Transport: tr}, {}} {
		r := NewRouter(proxies, rules, opts)
		a, b := r.For("example.com/special").opts.Transport, r.For(modPath).opts.Transport
		if a != b || a == nil || (opts.Transport != nil && a != opts.Transport) {
			t.Errorf("with Transport %v: the clients' transports are %p and %p; want one shared", opts.Transport, a, b)
		}
	}
}
