package modproxy_test

import (
	"archive/zip"
	"bytes"
	"io"
	"strings"
	"testing"
)

// zipFile is one entry of a zip under construction. A name ending in a slash
// makes a directory entry.
type zipFile struct {
	name string
	data string
}

// buildZip returns a zip archive holding files, in order, with their names
// exactly as given.
func buildZip(t *testing.T, files []zipFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate})
		if err != nil {
			t.Fatalf("zip entry %q: %v", f.name, err)
		}
		if _, err := io.WriteString(w, f.data); err != nil {
			t.Fatalf("zip entry %q: %v", f.name, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// goMod returns a minimal go.mod declaring path.
func goMod(path string) string { return "module " + path + "\n\ngo 1.22\n" }

// moduleZip returns a valid module zip of path@version: a go.mod declaring
// path and one Go file whose comment is content, so that different content
// makes a different zip hash.
func moduleZip(t *testing.T, path, version, content string) []byte {
	t.Helper()
	prefix := path + "@" + version + "/"
	return buildZip(t, []zipFile{
		{prefix + "go.mod", goMod(path)},
		{prefix + "m.go", "// " + content + "\npackage m\n"},
	})
}

// parseTxtar splits a txtar archive into its comment and its files. A file
// starts at a line "-- name --" and runs to the next such line; the names
// are kept exactly, duplicates included.
func parseTxtar(data []byte) (comment string, files []zipFile) {
	var cur *zipFile
	var text strings.Builder
	flush := func() {
		if cur == nil {
			comment = text.String()
		} else {
			cur.data = text.String()
			files = append(files, *cur)
		}
		text.Reset()
	}
	for line := range strings.Lines(string(data)) {
		trimmed := strings.TrimRight(line, "\r\n")
		if name, ok := strings.CutPrefix(trimmed, "-- "); ok && strings.HasSuffix(name, " --") && len(name) > 3 {
			flush()
			cur = &zipFile{name: strings.TrimSpace(strings.TrimSuffix(name, " --"))}
			continue
		}
		text.WriteString(line)
	}
	flush()
	return comment, files
}
