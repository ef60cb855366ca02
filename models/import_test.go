package models_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"agora/auth"
	"agora/models"
	"agora/models/modelstest"
	"agora/modproxy"
	"agora/storage"
)

// writeImportDir writes a module cache download directory of n modules
// whose paths start with prefix, each with the kinds of version an import meets: a zip with its .info,
// .mod and .ziphash, a zip alone, a go.mod with its .info and a go.mod
// alone. It returns the directory and the number of versions.
func writeImportDir(t *testing.T, prefix string, n int) (string, int) {
	t.Helper()
	dir := t.TempDir()
	write := func(path, version, ext string, data []byte) {
		t.Helper()
		name := filepath.Join(dir, filepath.FromSlash(path), "@v", version+ext)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	info := func(version string) []byte {
		return []byte(`{"Version":"` + version + `","Time":"2024-01-02T03:04:05Z"}`)
	}
	for i := range n {
		path := fmt.Sprintf("%s/m%02d", prefix, i)
		mod := []byte("module " + path + "\n")
		src := t.TempDir()
		for name, data := range map[string][]byte{"go.mod": mod, "m.go": []byte("package m\n")} {
			if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, version := range []string{"v1.0.0", "v1.1.0"} {
			var zip bytes.Buffer
			if err := modzip.CreateFromDir(&zip, module.Version{Path: path, Version: version}, src); err != nil {
				t.Fatal(err)
			}
			write(path, version, ".zip", zip.Bytes())
			write(path, version, ".mod", mod)
		}
		h, err := dirhash.HashZip(filepath.Join(dir, filepath.FromSlash(path), "@v", "v1.0.0.zip"), dirhash.Hash1)
		if err != nil {
			t.Fatal(err)
		}
		write(path, "v1.0.0", ".ziphash", []byte(h))
		write(path, "v1.0.0", ".info", info("v1.0.0"))
		write(path, "v0.9.0", ".mod", mod)
		write(path, "v0.9.0", ".info", info("v0.9.0"))
		write(path, "v0.8.0", ".mod", mod)
	}
	return dir, 4 * n
}

// TestImportTwiceAtOnce runs two imports of one directory at once, as two
// processes on one database and one storage directory do: each version
// counts as imported in exactly one of their summaries, and as skipped in
// the other, so that the two add up to the versions stored.
func TestImportTwiceAtOnce(t *testing.T) {
	for _, dialect := range modelstest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := modelstest.URL(t, dialect)
			disk, err := storage.NewDisk(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			process := func() *modproxy.Service {
				return modproxy.New(modproxy.Config{Metadata: models.NewRegistry(modelstest.OpenURL(t, url)), Blobs: disk, TempDir: t.TempDir()})
			}
			imports := []*modproxy.Service{process(), process()}
			operator := auth.Principal{User: "cli", Role: auth.RoleAdmin, Scope: auth.ScopeAdmin}

			for round := range 3 {
				dir, n := writeImportDir(t, fmt.Sprintf("example.com/round%d", round), 15)
				sums := make([]modproxy.ImportSummary, len(imports))
				outcomes := make([]map[string]modproxy.ImportOutcome, len(imports))
				var start, done sync.WaitGroup
				start.Add(1)
				for i, s := range imports {
					outcomes[i] = make(map[string]modproxy.ImportOutcome)
					done.Go(func() {
						start.Wait()
						var err error
						sums[i], err = s.ImportDir(context.Background(), operator, dir, func(e modproxy.ImportEvent) {
							outcomes[i][e.Path+"@"+e.Version] = e.Outcome
							if e.Err != nil {
								t.Errorf("import %d: %s", i, e)
							}
						})
						if err != nil {
							t.Errorf("import %d: %v", i, err)
						}
					})
				}
				start.Done()
				done.Wait()

				if got := sums[0].Imported + sums[1].Imported; got != n {
					t.Errorf("round %d: the summaries count %d and %d imported, %d in all; want %d, the versions stored:\n%s\n%s",
						round, sums[0].Imported, sums[1].Imported, got, n, sums[0], sums[1])
				}
				var twice []string
				for key, o := range outcomes[0] {
					if (o == modproxy.ImportImported) == (outcomes[1][key] == modproxy.ImportImported) {
						twice = append(twice, fmt.Sprintf("%s %s and %s", key, o, outcomes[1][key]))
					}
				}
				if len(twice) > 0 {
					t.Errorf("round %d: want each version imported by one import and skipped by the other:\n%s", round, strings.Join(twice, "\n"))
				}
			}
		})
	}
}
