package upstream

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var parseListTests = []struct {
	in   string
	want []Proxy
	err  string // a part of the error, "" for none
}{
	{in: "", want: nil},
	{in: "off", want: nil},
	{in: "direct", want: nil},
	{in: " off ", want: nil},
	{in: "https://proxy.golang.org,direct", want: []Proxy{{URL: "https://proxy.golang.org"}}},
	{in: "https://a.example/,https://b.example|http://c.example/x/", want: []Proxy{
		{URL: "https://a.example"}, {URL: "https://b.example", FallThrough: true}, {URL: "http://c.example/x"},
	}},
	{in: " https://a.example | https://b.example , https://c.example ", want: []Proxy{
		{URL: "https://a.example", FallThrough: true}, {URL: "https://b.example"}, {URL: "https://c.example"},
	}},
	{in: "https://a.example,,|https://b.example", want: []Proxy{{URL: "https://a.example"}, {URL: "https://b.example"}}},
	{in: "proxy.example", want: []Proxy{{URL: "https://proxy.example"}}},
	{in: "proxy.example:8443/go/", want: []Proxy{{URL: "https://proxy.example:8443/go"}}},
	{in: "https://u:secret@proxy.example/", want: []Proxy{{URL: "https://u:secret@proxy.example"}}},
	{in: "https://a.example,off,https://b.example", want: []Proxy{{URL: "https://a.example"}}},
	{in: "https://a.example|direct|https://b.example", want: []Proxy{{URL: "https://a.example", FallThrough: true}}},
	{in: "off,https://a.example", want: nil},
	{in: "file:///srv/goproxy/", want: []Proxy{{URL: "file:///srv/goproxy"}}},

	{in: ",", err: "no entries"},
	{in: " ", err: "no entries"},
	{in: "ftp://a.example", err: `unsupported scheme "ftp"`},
	{in: "https://", err: "no host"},
	{in: "https://a.example/?x=1", err: "no query"},
	{in: "https://a.example/#frag", err: "no query"},
	{in: "noscheme", err: "no scheme"},
	{in: "/srv/goproxy", err: "no scheme"},
	{in: "file://host/srv/goproxy", err: "only a path"},
	{in: "https://a.example,ftp://b.example", err: "ftp"},
	{in: "https://u:secret@a.example/%zz", err: "a.example"},
}

func TestParseList(t *testing.T) {
	for _, tt := range parseListTests {
		got, err := ParseList(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParseList(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseList(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.err)
		case !slices.Equal(got, tt.want):
			t.Errorf("ParseList(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseList(%q): error %q shows the password", tt.in, err)
		}
	}
}

func TestString(t *testing.T) {
	const in = "https://a.example|https://u:secret@b.example,http://tok3n@c.example"
	list, err := ParseList(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := String(list), "https://a.example|https://u:xxxxx@b.example,http://xxxxx@c.example"; got != want {
		t.Errorf("String = %q; want %q", got, want)
	}
}

var redactListTests = []struct{ in, want string }{
	{"", ""},
	{"off", "off"},
	{"https://a.example,direct", "https://a.example,direct"},
	{"https://u:secret@a.example/go | http://b.example", "https://u:xxxxx@a.example/go | http://b.example"},
	{"https://tok3n@a.example,u:secret@b.example,tok3n@c.example/go", "https://xxxxx@a.example,u:xxxxx@b.example,xxxxx@c.example/go"},
	{"https://u:secret@a.example/%zz,ftp://u:secret@b", "https://u:xxxxx@a.example/%zz,ftp://u:xxxxx@b"},
	{"/srv/goproxy|file:///srv/a@b", "/srv/goproxy|file:///srv/a@b"},
}

func TestRedactList(t *testing.T) {
	for _, tt := range redactListTests {
		if got := RedactList(tt.in); got != tt.want {
			t.Errorf("RedactList(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestDefaultList(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	goEnv := func() (string, error) { return "https://go-env.example,direct\n", nil }
	if got := DefaultList(getenv, goEnv); got != "https://go-env.example,direct" {
		t.Errorf("without $GOPROXY: %q; want go env's", got)
	}
	env["GOPROXY"] = "https://env.example"
	if got := DefaultList(getenv, goEnv); got != "https://env.example" {
		t.Errorf("with $GOPROXY: %q; want it", got)
	}
	delete(env, "GOPROXY")
	if got := DefaultList(getenv, func() (string, error) { return "", errors.New("no go") }); got != "" {
		t.Errorf("go env failing: %q; want empty", got)
	}
	if got := DefaultList(getenv, nil); got != "" {
		t.Errorf("no go env: %q; want empty", got)
	}
}

func TestGoEnvGOPROXY(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	t.Setenv("GOPROXY", "https://set-by-test.example|off")
	got, err := GoEnvGOPROXY()
	if err != nil || got != "https://set-by-test.example|off" {
		t.Errorf("GoEnvGOPROXY() = %q, %v; want $GOPROXY", got, err)
	}
	t.Setenv("PATH", t.TempDir())
	if got, err := GoEnvGOPROXY(); got != "" || err != nil {
		t.Errorf("without a go command: %q, %v; want empty, no error", got, err)
	}
}
