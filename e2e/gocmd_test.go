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

// TestGoCommandQueries drives Agora, a pull-through cache of a fake
// upstream that resolves queries as proxy.golang.org does, the way users
// drive the go command: version queries the go command answers from the
// list (@patch, @upgrade, @latest, a pre-release), queries the upstream
// resolves (a branch, a commit prefix), retractions and deprecations read
// from the latest go.mod, a +incompatible version of a module without
// go.mod, case-encoded paths and versions, go install outside a module,
// and go mod download -json. Then the upstream goes away, and a fresh
// module cache builds the same program from what Agora stored.
func TestGoCommandQueries(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 3, 4, 5, 0, time.UTC) }
	const (
		q       = "example.org/q"
		mainRev = "abcdef1234567890abcdef1234567890abcdef12"
		fixRev  = "0123456789abcdef0123456789abcdef01234567"
		pre     = "example.org/pre"
		rt      = "example.org/retracted"
		dep     = "example.org/deprecated"
		inc     = "example.org/incompat"
		upper   = "example.org/Upper"
		cmd     = "example.org/cmd"
	)
	// pkg returns the files of a module whose package pkg has a constant V.
	pkg := func(path, goMod, v string) map[string]string {
		files := map[string]string{"p.go": "package " + filepath.Base(strings.ToLower(path)) + "\n\n// V names the version.\nconst V = \"" + v + "\"\n"}
		if goMod != "" {
			files["go.mod"] = "module " + path + "\n\ngo 1.21\n" + goMod
		}
		return files
	}
	qRev := func(version string, d int, names ...string) *revision {
		hash := strings.Repeat(fmt.Sprint(d), 40)
		if len(names) > 0 {
			hash = names[0]
		}
		return &revision{Path: q, Version: version, Time: day(d), Files: pkg(q, "", version), Names: names, Hash: hash}
	}
	mainPseudo := module.PseudoVersion("v1", "v1.1.0", day(8), mainRev[:12])
	fixPseudo := module.PseudoVersion("v1", "v1.1.0", day(7), fixRev[:12])
	cmdRev := func(v string, d int) *revision {
		return &revision{Path: cmd, Version: v, Time: day(d), Files: map[string]string{
			"go.mod":  "module " + cmd + "\n\ngo 1.21\n",
			"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"cmd " + v + "\") }\n",
		}}
	}
	up := newVCSUpstream(t,
		withGoMod(qRev("v1.0.0", 1)), withGoMod(qRev("v1.0.1", 2)), withGoMod(qRev("v1.1.0", 3)), withGoMod(qRev("v1.2.0-rc.1", 4)),
		withGoMod(qRev(mainPseudo, 8, mainRev, "main", mainRev[:8])),
		withGoMod(qRev(fixPseudo, 7, fixRev, "Fix-Branch")),
		&revision{Path: pre, Version: "v0.1.0-alpha", Time: day(1), Files: pkg(pre, "\n", "alpha")},
		&revision{Path: pre, Version: "v0.1.0-beta", Time: day(2), Files: pkg(pre, "\n", "beta")},
		&revision{Path: rt, Version: "v1.0.0", Time: day(1), Files: pkg(rt, "\n", "v1.0.0")},
		&revision{Path: rt, Version: "v1.1.0", Time: day(2), Files: pkg(rt, "\n", "v1.1.0")},
		&revision{Path: rt, Version: "v1.2.0", Time: day(3), Files: pkg(rt, "\n// It loses data.\nretract v1.2.0\n", "v1.2.0")},
		&revision{Path: dep, Version: "v1.0.0", Time: day(1), Files: pkg(dep, "\n", "v1.0.0")},
		&revision{Path: dep, Version: "v1.1.0", Time: day(2), Files: map[string]string{
			"go.mod": "// Deprecated: use example.org/q.\nmodule " + dep + "\n\ngo 1.21\n",
			"p.go":   "package deprecated\n\n// V names the version.\nconst V = \"v1.1.0\"\n",
		}},
		&revision{Path: inc, Version: "v1.0.0", Time: day(1), Files: pkg(inc, "", "v1.0.0")},
		&revision{Path: inc, Version: "v2.0.0+incompatible", Time: day(2), Files: pkg(inc, "", "v2.0.0")},
		&revision{Path: upper, Version: "v1.0.0-RC1", Time: day(1), Files: pkg(upper, "\n", "RC1")},
		cmdRev("v1.0.0", 1), cmdRev("v1.1.0", 2),
	)
	s := startAgora(t, agoraBinary(t), "sqlite3", "AGORA_UPSTREAM="+up.URL)
	g := newGoTool(t, s.URL)
	g.env = append(g.env, "GONOSUMDB=example.com,example.org")

	// Queries of one module, each followed by the version it gave.
	dir := t.TempDir()
	g.run(t, dir, "mod", "init", "example.com/consumer")
	for _, tt := range []struct{ query, want string }{
		{"v1.0.0", "v1.0.0"},
		{"patch", "v1.0.1"},
		{"upgrade", "v1.1.0"},
		{"v1.2.0-rc.1", "v1.2.0-rc.1"},
		{"latest", "v1.1.0"}, // a release, over a later pre-release
		{"main", mainPseudo},
		{"Fix-Branch", fixPseudo}, // case-encoded in the request
		{mainRev[:8], mainPseudo},
		{"<v1.1.0", "v1.0.1"},
	} {
		g.run(t, dir, "get", q+"@"+tt.query)
		checkOutput(t, g, dir, q+" "+tt.want+"\n", "list", "-m", q)
	}
	g.run(t, dir, "get", q+"@none")
	checkOutput(t, g, dir, "example.com/consumer\n", "list", "-m", "all")
	checkOutput(t, g, dir, q+" v1.0.0 v1.0.1 v1.1.0 v1.2.0-rc.1\n", "list", "-m", "-versions", q)
	// What a query names is stored under the version it names only.
	for _, name := range storedFiles(t, s.StorageDir) {
		if base := filepath.Base(name); strings.Contains(base, "main") || strings.Contains(base, "ix-") || strings.HasPrefix(base, mainRev[:8]+".") {
			t.Errorf("stored %s, under a query's name", name)
		}
	}
	// An unknown branch: Agora's reason, on one line, as the go command
	// prints it.
	_, all, err := runCommand(dir, g.env, "go", "get", q+"@nosuchbranch")
	if want := "\n\tserver response: not found: " + q + "@nosuchbranch: reading " + up.URL + "/" + q + "/@v/nosuchbranch.info: 404 Not Found; server response: not found: unknown revision nosuchbranch\n"; err == nil || !strings.HasSuffix(all, want) {
		t.Errorf("go get %s@nosuchbranch: %v\n%s\nwant it to end %q", q, err, all, want)
	}

	// Module versions: a pre-release only, retracted, deprecated,
	// +incompatible and case-encoded.
	g.run(t, dir, "get", pre+"@latest", rt+"@latest", dep+"@v1.0.0", inc+"@v2.0.0", upper+"@latest")
	checkOutput(t, g, dir, pre+" v0.1.0-alpha v0.1.0-beta\n", "list", "-m", "-versions", pre)
	checkOutput(t, g, dir, rt+" v1.0.0 v1.1.0\n", "list", "-m", "-versions", rt)
	checkOutput(t, g, dir, rt+" v1.0.0 v1.1.0 v1.2.0\n", "list", "-m", "-retracted", "-versions", rt)
	checkOutput(t, g, dir, inc+" v1.0.0 v2.0.0+incompatible\n", "list", "-m", "-versions", inc)
	g.run(t, dir, "get", rt+"@v1.2.0")
	checkOutput(t, g, dir, "example.com/consumer\n"+
		upper+" v1.0.0-RC1\n"+
		dep+" v1.0.0 [v1.1.0] (deprecated)\n"+
		inc+" v2.0.0+incompatible\n"+
		pre+" v0.1.0-beta\n"+
		rt+" v1.2.0 (retracted)\n", "list", "-m", "-u", "all")
	g.run(t, dir, "get", q+"@"+mainRev[:12])
	writeFile(t, filepath.Join(dir, "main.go"), `package main

import (
	"fmt"

	"example.org/Upper"
	"example.org/deprecated"
	"example.org/incompat"
	"example.org/pre"
	"example.org/q"
	"example.org/retracted"
)

func main() { fmt.Println(q.V, pre.V, retracted.V, deprecated.V, incompat.V, upper.V) }
`)
	const output = " beta v1.2.0 v1.0.0 v2.0.0 RC1\n"
	checkProgram(t, g, dir, mainPseudo+output)

	// go mod download -json gives the upstream's Origin, through Agora.
	var d struct {
		Version, Query string
		Origin         struct{ VCS, URL, Hash, Ref string }
	}
	if err := json.Unmarshal([]byte(g.run(t, dir, "mod", "download", "-json", q+"@v1.0.0")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Version != "v1.0.0" || d.Origin.Ref != "refs/tags/v1.0.0" || d.Origin.Hash != strings.Repeat("1", 40) || d.Origin.URL != "https://"+q {
		t.Errorf("go mod download -json %s@v1.0.0 = %+v; want the upstream's Origin", q, d)
	}

	// go install, outside any module.
	for _, tt := range []struct{ query, want string }{{"v1.0.0", "v1.0.0"}, {"latest", "v1.1.0"}} {
		gobin := t.TempDir()
		install := &goTool{env: append(g.env[:len(g.env):len(g.env)], "GOBIN="+gobin)}
		install.run(t, t.TempDir(), "install", cmd+"@"+tt.query)
		out, all, err := runCommand(t.TempDir(), nil, filepath.Join(gobin, "cmd"))
		if want := "cmd " + tt.want + "\n"; err != nil || out != want {
			t.Errorf("the command installed from %s@%s printed %q (%v, %s); want %q", cmd, tt.query, out, err, all, want)
		}
	}

	// The upstream is gone: a fresh module cache builds the program, and
	// lists the same updates, retractions and deprecations.
	up.Close()
	offline := newGoTool(t, s.URL)
	offline.env = append(offline.env, "GONOSUMDB=example.com,example.org")
	checkProgram(t, offline, dir, mainPseudo+output)
	checkOutput(t, offline, dir, "all modules verified\n", "mod", "verify")
	offline.run(t, dir, "mod", "tidy")
	checkOutput(t, offline, dir, q+" "+mainPseudo+"\n", "list", "-m", q+"@"+mainRev[:12])
}

// withGoMod gives r a go.mod, and returns it.
func withGoMod(r *revision) *revision {
	r.Files["go.mod"] = "module " + r.Path + "\n\ngo 1.21\n"
	return r
}
