package e2e

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestChecksumMismatchRefused runs the real server with a fake upstream
// whose checksum database, reached through the upstream's /sumdb/, records
// other hashes than the upstream serves for two versions: a zip replaced
// for one, a go.mod for the other. Both are refused with a bad gateway that
// says why, nothing of them is stored, each refusal is in the audit log,
// and a version whose files match is served. It fails if serve does not
// give the registry the checksum database to verify fetches against.
func TestChecksumMismatchRefused(t *testing.T) {
	const path = "example.org/tampered"
	goMod := "module " + path + "\n\ngo 1.21\n"
	source := func(greeting string) map[string]string {
		return map[string]string{"go.mod": goMod, "tampered.go": "package tampered\n\n// Hello greets.\nfunc Hello() string { return " + `"` + greeting + `"` + " }\n"}
	}
	// The checksum database records each version as newPublicModule made
	// it; the upstream then serves other content for two of them.
	badZip := newPublicModule(t, path, "v1.0.0", source("recorded"))
	badZip.Zip = newPublicModule(t, path, "v1.0.0", source("replaced at the origin")).Zip
	badMod := newPublicModule(t, path, "v1.1.0", source("recorded"))
	badMod.GoMod = goMod + "\nrequire example.org/evil v1.0.0\n"
	good := newPublicModule(t, path, "v1.2.0", source("recorded"))

	up := newFakeUpstream(t, badZip, badMod, good)
	s := startAgora(t, agoraBinary(t), "sqlite3", "AGORA_UPSTREAM="+up.URL, "AGORA_SUMDB="+up.vkey)
	admin := s.createUser(t, "root", "admin", "admin")

	status, body := s.do(t, http.MethodGet, "/"+path+"/@v/v1.0.0.zip", "", nil, nil)
	if status != http.StatusBadGateway || !strings.Contains(string(body), "checksum mismatch") {
		t.Errorf("GET the zip the upstream replaced: %d %.300q; want %d saying checksum mismatch", status, body, http.StatusBadGateway)
	}
	status, body = s.do(t, http.MethodGet, "/"+path+"/@v/v1.1.0.mod", "", nil, nil)
	if status != http.StatusBadGateway || !strings.Contains(string(body), "checksum mismatch") {
		t.Errorf("GET the go.mod the upstream replaced: %d %.300q; want %d saying checksum mismatch", status, body, http.StatusBadGateway)
	}
	if up.total("sumdb") == 0 {
		t.Error("the checksum database was never asked through the upstream's /sumdb/")
	}

	for _, ext := range []string{".info", ".mod", ".zip"} {
		file := "/" + path + "/@v/v1.2.0" + ext
		if status, body := s.do(t, http.MethodGet, file, "", nil, nil); status != http.StatusOK {
			t.Errorf("GET %s, whose files match the checksum database: %d %s; want %d", file, status, body, http.StatusOK)
		}
	}
	if status, body := s.do(t, http.MethodGet, "/"+path+"/@v/v1.2.0.zip", "", nil, nil); status != http.StatusOK || string(body) != strings.TrimSpace(string(good.Zip)) {
		t.Errorf("GET the matching zip: status %d, %d bytes; want %d and the upstream's zip", status, len(body), http.StatusOK)
	}

	// Nothing of the refused versions is stored; the good one is.
	stored := storedFiles(t, s.StorageDir)
	for _, name := range stored {
		if strings.Contains(name, "v1.0.0") || strings.Contains(name, "v1.1.0") {
			t.Errorf("a refused version left %s in the storage directory", name)
		}
	}
	if !strings.Contains(strings.Join(stored, "\n"), "v1.2.0.zip") {
		t.Errorf("the matching version's zip is not in the storage directory, which holds %q", stored)
	}

	// Each refusal is audited.
	var audit struct {
		Events []struct {
			Action, Module, Version, Detail string
		} `json:"events"`
	}
	if status, body := s.do(t, http.MethodGet, "/api/v1/audit?action=fetch.rejected", admin, nil, &audit); status != http.StatusOK {
		t.Fatalf("GET /api/v1/audit: %d %s", status, body)
	}
	for _, version := range []string{"v1.0.0", "v1.1.0"} {
		found := false
		for _, e := range audit.Events {
			if e.Action == "fetch.rejected" && e.Module == path && e.Version == version && strings.Contains(e.Detail, "checksum mismatch") {
				found = true
			}
		}
		if !found {
			t.Errorf("the audit log has no fetch.rejected event for %s@%s saying checksum mismatch: %+v", path, version, audit.Events)
		}
	}
	for _, e := range audit.Events {
		if e.Version == "v1.2.0" {
			t.Errorf("the audit log has a fetch.rejected event for the matching version: %+v", e)
		}
	}
}

// storedFiles returns the slash-separated paths of the regular files under
// dir, relative to it.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, name)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}
