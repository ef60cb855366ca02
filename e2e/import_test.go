package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestImportedModuleCacheOffline seeds an Agora without internet as README
// says: with the module cache of a machine that built a consumer, here one
// that `go mod tidy` and `go build` alone filled, in which the zip of a
// module that only a dependency's tests need has no .info. A fresh module
// cache then builds, tidies, verifies and lists the consumer's modules
// through it; go list -m all needs an .info of each.
func TestImportedModuleCacheOffline(t *testing.T) {
	bin := agoraBinary(t)
	check := newPublicModule(t, "example.org/check", "v1.0.0", map[string]string{
		"go.mod":   "module example.org/check\n\ngo 1.21\n",
		"check.go": "package check\n\n// OK is true.\nconst OK = true\n",
	})
	greet := newPublicModule(t, "example.org/greet", "v1.0.0", map[string]string{
		"go.mod":        "module example.org/greet\n\ngo 1.21\n\nrequire example.org/check v1.0.0\n",
		"greet.go":      "package greet\n\n// Hello greets.\nfunc Hello() string { return \"hello\" }\n",
		"greet_test.go": "package greet\n\nimport (\n\t\"testing\"\n\n\t\"example.org/check\"\n)\n\nfunc TestHello(t *testing.T) { _ = check.OK }\n",
	})
	up := newFakeUpstream(t, check, greet)

	// A machine with internet builds the consumer.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module consumer\n\ngo 1.21\n\nrequire example.org/greet v1.0.0\n")
	writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.org/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n")
	online := newGoTool(t, up.URL)
	online.env = append(online.env, "GOSUMDB=off")
	online.run(t, dir, "mod", "tidy")
	checkProgram(t, online, dir, "hello\n")
	noInfo := filepath.Join(online.modcache, "cache", "download", "example.org", "check", "@v", "v1.0.0.info")
	if _, err := os.Stat(noInfo); err == nil {
		t.Fatal("go mod tidy downloaded the .info of a module only a dependency's tests need; this test needs a version without one")
	}
	gomod, gosum := readFile(t, filepath.Join(dir, "go.mod")), readFile(t, filepath.Join(dir, "go.sum"))
	up.Close()

	// Its module cache seeds an Agora without internet.
	s := startAgora(t, bin, "sqlite3")
	s.agora(t, "import", online.modcache)
	offline := newGoTool(t, s.URL)
	offline.env = append(offline.env, "GONOSUMDB=example.org")
	checkProgram(t, offline, dir, "hello\n")
	offline.run(t, dir, "mod", "tidy")
	if readFile(t, filepath.Join(dir, "go.mod")) != gomod || readFile(t, filepath.Join(dir, "go.sum")) != gosum {
		t.Error("go mod tidy through the offline Agora changed go.mod or go.sum")
	}
	offline.run(t, dir, "mod", "verify")
	checkOutput(t, offline, dir, "consumer\nexample.org/check v1.0.0\nexample.org/greet v1.0.0\n", "list", "-m", "all")
}

// readFile returns the content of the file name.
func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
