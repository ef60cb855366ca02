package modproxy

import (
	"archive/zip"
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

// testZipEntry is one entry of a zip that writeTestZip writes.
type testZipEntry struct {
	name   string
	data   []byte
	method uint16
}

// writeTestZip writes the entries, in order, to a zip file in a temporary
// directory and returns its name.
func writeTestZip(t testing.TB, entries []testZipEntry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// randomEntries returns n files of pseudo-random, compressible text under
// prefix, of sizes up to max bytes, some of them stored, some empty.
func randomEntries(r *rand.Rand, prefix string, n, max int) []testZipEntry {
	words := []string{"func ", "return ", "err ", "nil", "\n\t", "if ", "{ ", "} ", "x", "ünï"}
	entries := make([]testZipEntry, n)
	for i := range entries {
		var b strings.Builder
		size := r.IntN(max + 1)
		if i%7 == 0 {
			size = 0
		}
		for b.Len() < size {
			b.WriteString(words[r.IntN(len(words))])
		}
		method := zip.Deflate
		if i%5 == 0 {
			method = zip.Store
		}
		entries[i] = testZipEntry{name: prefix + randomName(r, i), data: []byte(b.String()), method: method}
	}
	return entries
}

func randomName(r *rand.Rand, i int) string {
	dirs := []string{"", "a/", "b/c/", "Üñí/", "z/"}
	return dirs[r.IntN(len(dirs))] + "f" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + ".go"
}

// TestHashZipMatchesDirhash checks that hashZip gives the hash
// dirhash.HashZip, and so the go command, computes, for zips hashed by one
// goroutine and by several.
func TestHashZipMatchesDirhash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 5<<20) // stored incompressible data: over parallelHashMin
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	cases := map[string][]testZipEntry{
		"empty":        nil,
		"one file":     {{name: "m@v1.0.0/go.mod", data: []byte("module m\n"), method: zip.Deflate}},
		"small":        randomEntries(r, "m@v1.0.0/", 40, 4<<10),
		"many":         randomEntries(r, "m@v1.0.0/", 300, 48<<10),
		"one big file": append(randomEntries(r, "m@v1.0.0/", 20, 1<<10), testZipEntry{name: "m@v1.0.0/big.bin", data: big}),
		// dirhash.HashZip hashes a duplicated name twice, with the content
		// of its last entry; CheckZip refuses such zips before, but the
		// hash must still be the same.
		"duplicate name": {
			{name: "m@v1.0.0/a.go", data: []byte("one"), method: zip.Deflate},
			{name: "m@v1.0.0/b.go", data: []byte("b"), method: zip.Deflate},
			{name: "m@v1.0.0/a.go", data: []byte("two"), method: zip.Deflate},
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			file := writeTestZip(t, entries)
			want, err := dirhash.HashZip(file, dirhash.Hash1)
			if err != nil {
				t.Fatal(err)
			}
			zr, err := zip.OpenReader(file)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			got, err := hashZip(&zr.Reader)
			if err != nil || got != want {
				t.Fatalf("hashZip = %q, %v; dirhash.HashZip = %q", got, err, want)
			}
		})
	}
}

// TestHashZipCorrupt checks that a file whose contents do not match its
// CRC-32 fails the hash, in a zip hashed by several goroutines.
func TestHashZipCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	entries := randomEntries(r, "m@v1.0.0/", 100, 16<<10)
	marker := []byte("CORRUPT-ME-PLEASE")
	entries = append(entries, testZipEntry{name: "m@v1.0.0/zz.txt", data: bytes.Repeat(marker, 1<<18), method: zip.Store})
	file := writeTestZip(t, entries)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, marker)
	b[i] ^= 0xff // stored data: flips one byte of the content, not of a header
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if h, err := hashZip(&zr.Reader); err == nil || !strings.Contains(err.Error(), "zz.txt") {
		t.Fatalf("hashZip of a corrupted zip = %q, %v; want an error naming zz.txt", h, err)
	}
}

// BenchmarkHashZip compares hashZip with dirhash.HashZip on a zip of 400
// source-like files, 30 MB uncompressed.
func BenchmarkHashZip(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	file := writeTestZip(b, randomEntries(r, "m@v1.0.0/", 400, 150<<10))
	b.Run("dirhash", func(b *testing.B) {
		for b.Loop() {
			if _, err := dirhash.HashZip(file, dirhash.Hash1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hashZip", func(b *testing.B) {
		for b.Loop() {
			zr, err := zip.OpenReader(file)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := hashZip(&zr.Reader); err != nil {
				b.Fatal(err)
			}
			zr.Close()
		}
	})
}
