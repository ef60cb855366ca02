package actions

import (
	"testing"

	"golang.org/x/mod/module"
)

// escapeSeeds are escaped paths and versions, valid and not, for the
// comparisons below.
var escapeSeeds = []string{
	"", "golang.org/x/mod", "github.com/!burnt!sushi/toml", "github.com/BurntSushi/toml",
	"github.com/!", "github.com/!!x", "example.com/a!b", "example.com/ä", "example.com/..",
	"example.com/x/v2", "gopkg.in/yaml.v3", ".example.com", "example.com/x/", "/example.com",
	"v1.2.3", "v1.2.3-pre", "v0.0.0-20240526193622-a339e1f7089c", "v1.0.0+incompatible",
	"v1.0.0-!r!c1", "v1.0.0-RC1", "master", "v1.0.0/..", "v1.0.0 ", "com1", "v1.0.0~1",
}

// TestUnescapeMatchesModule checks that the allocation-free forms answer
// exactly as x/mod does, value and error.
func TestUnescapeMatchesModule(t *testing.T) {
	for _, s := range escapeSeeds {
		checkUnescape(t, s)
	}
}

// FuzzUnescape compares them on any input.
func FuzzUnescape(f *testing.F) {
	for _, s := range escapeSeeds {
		f.Add(s)
	}
	f.Fuzz(checkUnescape)
}

func checkUnescape(t *testing.T, s string) {
	for _, c := range []struct {
		name       string
		fast, want func(string) (string, error)
	}{
		{"path", unescapePath, module.UnescapePath},
		{"version", unescapeVersion, module.UnescapeVersion},
	} {
		got, gotErr := c.fast(s)
		want, wantErr := c.want(s)
		if got != want || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Errorf("unescape %s %q = %q, %v; x/mod says %q, %v", c.name, s, got, gotErr, want, wantErr)
		}
	}
}

// TestUnescapeAllocations checks that a plain path and version, the common
// case, unescape without allocating.
func TestUnescapeAllocations(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		unescapePath("github.com/gobuffalo/buffalo")
		unescapeVersion("v1.1.3")
	})
	if n != 0 {
		t.Errorf("%v allocations per plain path and version, want 0", n)
	}
}
