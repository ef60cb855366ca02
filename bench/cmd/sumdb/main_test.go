package main

import (
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	modzip "golang.org/x/mod/zip"
)

func TestServesTheTreesHashes(t *testing.T) {
	tree := t.TempDir()
	dir := filepath.Join(tree, "example.com", "!m", "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const gomod = "module example.com/M\n"
	m := module.Version{Path: "example.com/M", Version: "v1.0.0"}
	os.WriteFile(filepath.Join(dir, "v1.0.0.mod"), []byte(gomod), 0o644)
	os.WriteFile(filepath.Join(dir, "v0.9.0.mod"), []byte(gomod), 0o644) // a .mod without zip
	z, err := os.Create(filepath.Join(dir, "v1.0.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte(gomod), 0o644)
	os.WriteFile(filepath.Join(src, "m.go"), []byte("package m\n"), 0o644)
	if err := modzip.CreateFromDir(z, m, src); err != nil {
		t.Fatal(err)
	}
	z.Close()

	sums, err := hashTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	zipHash, err := dirhash.HashZip(z.Name(), dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	modHash, _ := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(gomod)), nil })
	// As in sum.golang.org's records: the zip's line, then the go.mod's.
	want := "example.com/M v1.0.0 " + zipHash + "\nexample.com/M v1.0.0/go.mod " + modHash + "\n"
	if got := string(sums["example.com/M@v1.0.0"]); got != want {
		t.Errorf("lines of v1.0.0 = %q; want %q", got, want)
	}
	want = "example.com/M v0.9.0 " + noZipHash + "\nexample.com/M v0.9.0/go.mod " + modHash + "\n"
	if got := string(sums["example.com/M@v0.9.0"]); got != want {
		t.Errorf("lines of v0.9.0, which has no zip = %q; want %q", got, want)
	}

	skey, _, err := note.GenerateKey(rand.Reader, "sum.test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	db, err := newDatabase(skey, sums)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler("sum.test.invalid", db))
	defer srv.Close()
	get := func(p string) (int, string) {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/sumdb/sum.test.invalid/supported"); code != http.StatusOK {
		t.Errorf("supported: %d; want 200", code)
	}
	if code, _ := get("/sumdb/other.invalid/supported"); code != http.StatusNotFound {
		t.Errorf("supported of another database: %d; want 404", code)
	}
	code, body := get("/sumdb/sum.test.invalid/lookup/example.com/!m@v1.0.0")
	if code != http.StatusOK || !strings.Contains(body, zipHash) || !strings.Contains(body, modHash) || !strings.Contains(body, "— sum.test.invalid") {
		t.Errorf("lookup: %d %q; want both hashes and a signed tree head", code, body)
	}
	// Every version is in the tree before the first lookup: 2 records.
	if code, body := get("/sumdb/sum.test.invalid/latest"); code != http.StatusOK || !strings.Contains(body, "\n2\n") {
		t.Errorf("latest: %d %q; want a tree of 2 records", code, body)
	}
}
