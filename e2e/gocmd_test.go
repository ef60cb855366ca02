package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// revision is one version of a module that a vcsUpstream serves, with the
// names of the branches and commits that resolve to it.
type revision struct {
	Path, Version string
	Time          time.Time
	// Files are the module's files; a module without go.mod has its .mod
	// made up by the upstream, as proxy.golang.org does.
	Files map[string]string
	// Names are queries the upstream resolves to Version: branch names,
	// commit hashes and their prefixes.
	Names []string
	// Hash is the commit hash put in the .info's Origin.
	Hash string
}

// goMod returns the revision's go.mod, or the one a proxy makes up for a
// module without one.
func (r *revision) goMod() string {
	if m, ok := r.Files["go.mod"]; ok {
		return m
	}
	return "module " + r.Path + "\n"
}

// vcsUpstream is a fake public GOPROXY that behaves as proxy.golang.org
// does in front of version control: besides canonical versions it
// resolves queries (branches, commit prefixes) in .info, answering with
// the canonical version and its Origin; it lists tags only, and answers
// @latest with the version the go command would take for it, the newest
// pseudo-version of a module without tags.
type vcsUpstream struct {
	*httptest.Server
	revs map[string][]*revision // by path
	zips map[string][]byte      // by path@version
}

func newVCSUpstream(t *testing.T, revs ...*revision) *vcsUpstream {
	t.Helper()
	u := &vcsUpstream{revs: make(map[string][]*revision), zips: make(map[string][]byte)}
	for _, r := range revs {
		u.revs[r.Path] = append(u.revs[r.Path], r)
		dir := t.TempDir()
		for name, content := range r.Files {
			writeFile(t, filepath.Join(dir, name), content)
		}
		var buf bytes.Buffer
		if err := modzip.CreateFromDir(&buf, module.Version{Path: r.Path, Version: r.Version}, dir); err != nil {
			t.Fatalf("zipping %s@%s: %v", r.Path, r.Version, err)
		}
		u.zips[r.Path+"@"+r.Version] = buf.Bytes()
	}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

// serve answers the download protocol from u's revisions.
func (u *vcsUpstream) serve(w http.ResponseWriter, r *http.Request) {
	esc, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/@")
	path, err := module.UnescapePath(esc)
	if !ok || err != nil || len(u.revs[path]) == 0 {
		http.Error(w, "not found: module unknown", http.StatusNotFound)
		return
	}
	revs := u.revs[path]
	switch rest {
	case "v/list":
		for _, rv := range revs {
			if !module.IsPseudoVersion(rv.Version) {
				fmt.Fprintln(w, rv.Version)
			}
		}
		return
	case "latest":
		var best *revision
		for _, rv := range revs {
			if best == nil || latestOrder(rv.Version, best.Version) > 0 {
				best = rv
			}
		}
		u.writeInfo(w, best, "HEAD")
		return
	}
	file, ok := strings.CutPrefix(rest, "v/")
	ext := filepath.Ext(file)
	query, err := module.UnescapeVersion(strings.TrimSuffix(file, ext))
	if !ok || err != nil {
		http.Error(w, "not found: bad request", http.StatusNotFound)
		return
	}
	var rev *revision
	for _, rv := range revs {
		if rv.Version == query {
			rev = rv
		}
		for _, name := range rv.Names {
			if name == query && ext == ".info" {
				rev = rv
			}
		}
	}
	if rev == nil {
		http.Error(w, "not found: unknown revision "+query, http.StatusNotFound)
		return
	}
	switch ext {
	case ".info":
		ref := "refs/tags/" + rev.Version
		switch {
		case strings.HasPrefix(rev.Hash, query):
			ref = "" // a commit
		case query != rev.Version:
			ref = "refs/heads/" + query
		}
		u.writeInfo(w, rev, ref)
	case ".mod":
		io.WriteString(w, rev.goMod())
	case ".zip":
		w.Write(u.zips[rev.Path+"@"+rev.Version])
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// latestOrder orders versions as @latest picks them: releases over
// pre-releases over pseudo-versions, then by semver.
func latestOrder(a, b string) int {
	rank := func(v string) int {
		switch {
		case module.IsPseudoVersion(v):
			return 0
		case semver.Prerelease(v) != "":
			return 1
		}
		return 2
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	return semver.Compare(a, b)
}

// writeInfo answers with rev's .info, with an Origin naming ref (if not
// empty) when rev has a commit hash.
func (u *vcsUpstream) writeInfo(w http.ResponseWriter, rev *revision, ref string) {
	info := map[string]any{"Version": rev.Version, "Time": rev.Time.UTC().Format(time.RFC3339)}
	if rev.Hash != "" {
		origin := map[string]string{"VCS": "git", "URL": "https://" + rev.Path, "Hash": rev.Hash}
		if ref != "" {
			origin["Ref"] = ref
		}
		info["Origin"] = origin
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(info)
}

// TestGoProxyListFallsThrough runs the go command with a GOPROXY list of
// Agora and then another proxy, while Agora's upstream is down: a module
// that only the other proxy has comes from it, after ',' as after '|'.
// The go command goes down its list for each file anew: Agora's 404 for
// the version's .info sends it to the other proxy, and then it asks Agora
// first for the .mod and the zip too, which must be 404s as well, not a
// 502 that stops it after ','.
func TestGoProxyListFallsThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds agora and runs the go command; skipped in -short mode")
	}
	const path = "example.net/other"
	other := newVCSUpstream(t, &revision{
		Path: path, Version: "v1.0.0", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Files: map[string]string{"go.mod": "module " + path + "\n", "other.go": "package other\n"},
	})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	s := startAgora(t, agoraBinary(t), "sqlite3", "AGORA_UPSTREAM="+down.URL)

	for _, sep := range []string{",", "|"} {
		t.Run(sep, func(t *testing.T) {
			g := newGoTool(t, s.URL+sep+other.URL)
			g.env = append(g.env, "GONOSUMDB=example.com,example.net")
			dir := t.TempDir()
			g.run(t, dir, "mod", "init", "example.com/consumer")
			g.run(t, dir, "get", path+"@v1.0.0")
			checkOutput(t, g, dir, path+" v1.0.0\n", "list", "-m", path)
		})
	}
}
