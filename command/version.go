package command

import (
	"runtime"
	"runtime/debug"
)

// version describes this build for `agora --version` and the start-up log
// line: the module version that the go command stamps from the VCS
// (v0.0.0-<time>-<revision>, +dirty for uncommitted changes), else the
// revision alone when only that was recorded, else "(devel)"; then the Go
// toolchain and the platform. An operator asked which Agora runs answers
// with it, and can tell two nodes of a rolling update apart.
func version() string {
	return describeBuild(debug.ReadBuildInfo()) + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// describeBuild returns the version of the build that info describes (ok
// false: no build information, as in a binary built without module support).
func describeBuild(info *debug.BuildInfo, ok bool) string {
	const devel = "(devel)"
	if !ok {
		return devel
	}
	if v := info.Main.Version; v != "" && v != devel {
		return v
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision == "" {
		return devel
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if modified == "true" {
		revision += "+dirty"
	}
	return revision
}
