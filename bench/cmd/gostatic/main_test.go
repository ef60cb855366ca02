package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"agora/cork"
)

// TestServesTree checks that every kind of file comes back whole with
// Agora's headers, from memory or from disk, and that anything else is 404.
func TestServesTree(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "example.com", "m", "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"v1.0.0.info": []byte(`{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`),
		"v1.0.0.mod":  []byte("module example.com/m\n"),
		"v1.0.0.zip":  make([]byte, 3<<20),
	}
	rand.Read(files["v1.0.0.zip"])
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := newServer(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.small) != 2 {
		t.Errorf("%d files held in memory, want the .info and the .mod", len(s.small))
	}
	ts := httptest.NewUnstartedServer(s)
	ts.Config.ConnContext = cork.ConnContext
	ts.Start()
	defer ts.Close()

	for name, want := range files {
		for range 2 { // the second on a reused, uncorked connection
			r, err := ts.Client().Get(ts.URL + "/example.com/m/@v/" + name)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if r.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Fatalf("GET %s: %d, %d bytes; want 200 and the file's %d", name, r.StatusCode, len(body), len(want))
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "ETag", "Last-Modified", "Accept-Ranges"} {
				if r.Header.Get(h) == "" {
					t.Errorf("GET %s: no %s", name, h)
				}
			}
			if got := r.Header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
				t.Errorf("GET %s: Content-Length %s, want %d", name, got, len(want))
			}
		}
	}
	for _, p := range []string{"/example.com/m/@v/v2.0.0.mod", "/example.com/m/@v/list", "/../../etc/passwd.zip"} {
		r, err := ts.Client().Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
}
