package command

import (
	"bytes"
	"context"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion checks that agora --version names the build, the toolchain
// and the platform on standard output, and exits 0.
func TestVersion(t *testing.T) {
	offlineEnv(t)
	var stdout, stderr bytes.Buffer
	if status := runMain(context.Background(), []string{"--version"}, strings.NewReader(""), &stdout, &stderr); status != 0 {
		t.Fatalf("agora --version: exit status %d\n%s", status, stderr.String())
	}
	if !regexp.MustCompile(`^agora \S+ go\S+ \w+/\w+\n$`).MatchString(stdout.String()) {
		t.Errorf("agora --version printed %q; want agora, the build, the Go version and the platform", stdout.String())
	}
}

func TestDescribeBuild(t *testing.T) {
	rev := func(r, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: r}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tt := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "(devel)"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "(devel)"},
		// What go build stamps from a clone (-buildvcs=auto) or go install agora@v1.2.0.
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130193454-1828363fc6dc"}, Settings: rev("1828363fc6dc058d4db4869a02a8416fe5322961", "false")}, true, "v0.0.0-20261130193454-1828363fc6dc"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, true, "v1.2.0"},
		// A module version without the VCS's: only the revision says which.
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("1828363fc6dc058d4db4869a02a8416fe5322961", "false")}, true, "1828363fc6dc"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev("1828363fc6dc058d4db4869a02a8416fe5322961", "true")}, true, "1828363fc6dc+dirty"},
	} {
		if got := describeBuild(tt.info, tt.ok); got != tt.want {
			t.Errorf("describeBuild(%+v) = %q; want %q", tt.info, got, tt.want)
		}
	}
}
