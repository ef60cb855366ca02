package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestSoak throws an upstream that misbehaves at random (5xx, 404 and
// 403 for what it has, slow headers, bodies cut off, connections reset,
// slow bodies, a .mod or zip with other content) at many clients of
// Agora at once, some of which give up after a few milliseconds, on two
// nodes sharing PostgreSQL and storage and on one node with SQLite, each
// restarted halfway. Its checksum database, under the upstream's /sumdb/,
// fails now and then too. The test checks what must hold under any
// interleaving:
//
//   - every 200 for an .info, .mod or zip carries the upstream's bytes
//     exactly (Agora stores a zip as it was fetched, and an .info as
//     served, Origin and all), with its ETag (a zip's weak one, of its
//     files); or for an .info, the one Agora makes up, without a time or
//     an ETag, for a version stored without one;
//   - nothing that the upstream never had is answered 200, and every
//     list and @latest names only versions it has; a lookup, a tile or
//     the latest tree of the checksum-database proxy is the database's;
//   - the statuses are those the README gives for an upstream that fails:
//     200, 404 and 502;
//   - a node stopped with SIGTERM exits with status 0, leaving no
//     temporary file;
//   - once the upstream behaves, every version is served in full by every
//     node, with its list and @latest, and the go command downloads and
//     verifies them all against the checksum database through each node;
//   - storage:verify finds storage as the records say, tmp/ and storage
//     hold no temporary file once the nodes are idle, and the logs hold
//     no panic and no error (see soakLogErrors).
//
// The upstream's faults come from a seeded generator: the seed is logged,
// and AGORA_SOAK_SEED sets it to replay a run's faults (not their
// interleaving, which the invariants must not depend on). The clients
// send requests for 20 s in all, or AGORA_SOAK_DURATION (such as 5m) for
// a longer soak.
func TestSoak(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("stops the server with SIGTERM, which Windows lacks")
	}
	bin := agoraBinary(t)
	seed := soakSeed(t)
	d := 20 * time.Second
	if s := os.Getenv("AGORA_SOAK_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			t.Fatalf("AGORA_SOAK_DURATION=%q: want a positive duration such as 5m", s)
		}
	}
	mods := newSoakModules(t)
	env := func(up *soakUpstream) []string {
		return []string{
			"AGORA_UPSTREAM=" + up.URL, "AGORA_SUMDB=" + up.vkey,
			// Lists and not-found answers expire quickly, so that those
			// made while the upstream failed are gone when it is back.
			"AGORA_LIST_TTL=1s",
		}
	}
	t.Run("postgres", func(t *testing.T) {
		up := newSoakUpstream(t, seed, mods)
		a := startAgora(t, bin, "postgres", env(up)...)
		b := startAgora(t, bin, "postgres", append(env(up), "DATABASE_URL="+a.DatabaseURL, "AGORA_STORAGE_DIR="+a.StorageDir)...)
		runSoak(t, up, seed, d*3/5, a, b)
	})
	t.Run("sqlite3", func(t *testing.T) {
		up := newSoakUpstream(t, seed+1, mods)
		a := startAgora(t, bin, "sqlite3", env(up)...)
		runSoak(t, up, seed+1, d*2/5, a)
	})
}

// soakClients is how many clients send requests at once.
const soakClients = 16

// soakSeed returns the seed of the faults: $AGORA_SOAK_SEED, else one
// from the clock. It is logged either way.
func soakSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("AGORA_SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("AGORA_SOAK_SEED=%q: %v", s, err)
		}
	}
	t.Logf("soak seed %d (AGORA_SOAK_SEED=%[1]d replays these faults)", seed)
	return seed
}

// soakVersion is a version the upstream serves, with its .info.
type soakVersion struct {
	*publicModule
	Info []byte // as served, with an Origin for some
	Time time.Time
	// Tampered is a valid zip of the version with a file more, which
	// the checksum database refuses, as the go command would.
	Tampered []byte
}

// soakModule is a module the upstream serves.
type soakModule struct {
	Path     string
	Versions []*soakVersion // in semver order
	// Latest is what the upstream's @latest and its "master" branch
	// name: the highest release, or the newest pseudo-version of a
	// module without tags.
	Latest *soakVersion
	// NoLatest says that the upstream has no @latest of the module, as a
	// module cache has none: Agora takes the newest pseudo-version of
	// its list.
	NoLatest bool
}

// version returns m's version v, or nil.
func (m *soakModule) version(v string) *soakVersion {
	for _, sv := range m.Versions {
		if sv.Version == v {
			return sv
		}
	}
	return nil
}

// pseudo reports whether m has only pseudo-versions.
func (m *soakModule) pseudo() bool { return module.IsPseudoVersion(m.Versions[0].Version) }

// newSoakModules returns the modules of the soak: 26 versions of six
// modules, a major-version suffix, an upper-case path, a pre-release, a
// module of pseudo-versions alone, and zips of up to about 400 KB.
func newSoakModules(t *testing.T) []*soakModule {
	t.Helper()
	specs := []struct {
		path     string
		versions []string
		bigData  int // bytes of incompressible data in each zip
		noLatest bool
	}{
		{"example.org/soak/alpha", []string{"v0.1.0", "v0.2.0", "v1.0.0", "v1.1.0", "v1.2.0-pre", "v1.2.0", "v1.3.0"}, 0, false},
		{"example.org/soak/beta", []string{"v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0"}, 300 << 10, false},
		{"example.org/soak/Gamma", []string{"v1.0.0", "v1.0.1"}, 20 << 10, false},
		{"example.org/soak/Gamma/v2", []string{"v2.0.0", "v2.0.1", "v2.1.0"}, 0, false},
		{"example.org/soak/delta", []string{"v0.0.1", "v0.1.0", "v0.2.0", "v0.3.0", "v0.3.1"}, 100 << 10, false},
		{"example.org/soak/nightly", []string{
			"v0.0.0-20260301000000-0123456789ab",
			"v0.0.0-20260302000000-123456789abc",
			"v0.0.0-20260303000000-23456789abcd",
		}, 0, true},
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mods []*soakModule
	for i, spec := range specs {
		m := &soakModule{Path: spec.path, NoLatest: spec.noLatest}
		pkg := strings.ToLower(filepath.Base(strings.TrimSuffix(spec.path, "/v2")))
		for j, v := range spec.versions {
			files := map[string]string{
				"go.mod":       "module " + spec.path + "\n\ngo 1.21\n",
				pkg + ".go":    fmt.Sprintf("// Package %s is %s@%s.\npackage %[1]s\n\n// Version is this version.\nconst Version = %q\n", pkg, spec.path, v),
				"sub/sub.go":   "package sub\n",
				"LICENSE":      "Public domain.\n",
				"doc/notes.md": strings.Repeat(spec.path+" "+v+"\n", 50),
			}
			if spec.bigData > 0 {
				// Random bytes do not compress: the zip is about as big.
				data := make([]byte, spec.bigData+j*(spec.bigData/4))
				mathrand.NewChaCha8([32]byte{byte(i), byte(j)}).Read(data)
				files["data.bin"] = string(data)
			}
			sv := &soakVersion{publicModule: newPublicModule(t, spec.path, v, files)}
			files["tampered.go"] = "package " + pkg + "\n"
			sv.Tampered = newPublicModule(t, spec.path, v, files).Zip
			sv.Time = base.Add(time.Duration(i*100+j) * time.Hour)
			if module.IsPseudoVersion(v) {
				sv.Time, _ = module.PseudoVersionTime(v)
			}
			if j%2 == 0 {
				sv.Info = fmt.Appendf(nil, `{"Version":%q,"Time":%q}`, v, sv.Time.Format(time.RFC3339))
			} else {
				// As proxy.golang.org serves it now: with where it came
				// from, which Agora must keep.
				sv.Info = fmt.Appendf(nil, `{"Version":%q,"Time":%q,"Origin":{"VCS":"git","URL":"https://%s","Ref":"refs/tags/%s","Hash":"%040x"}}`,
					v, sv.Time.Format(time.RFC3339), spec.path, v, i*100+j)
			}
			m.Versions = append(m.Versions, sv)
		}
		slices.SortFunc(m.Versions, func(a, b *soakVersion) int { return semver.Compare(a.Version, b.Version) })
		m.Latest = m.Versions[len(m.Versions)-1]
		mods = append(mods, m)
	}
	return mods
}

// The faults the upstream injects.
type soakFault int

const (
	faultNone        soakFault = iota
	fault500                   // 500 Internal Server Error
	fault502                   // 502 Bad Gateway
	fault503                   // 503 Service Unavailable
	fault404                   // 404 Not Found, for something it has
	fault403                   // 403 Forbidden, as some mirrors answer
	faultSlowHeaders           // the true answer, after a while
	faultCutBody               // the true headers, half the body, and the connection closed
	faultReset                 // the connection reset, with no answer
	faultSlowBody              // the true answer, its body in pieces with pauses
	faultTampered              // a .mod or zip with other content (anything else is served true)
	numFaults
)

var faultNames = [numFaults]string{"none", "500", "502", "503", "404", "403", "slow headers", "cut body", "reset", "slow body", "tampered"}

// proxyFaults and sumdbFaults weigh the faults of module requests and of
// checksum-database requests (which get no 404 or 403: a 404 for
// /supported would send Agora to the database's own host, a name that
// resolves nowhere).
var (
	proxyFaults = [numFaults]int{
		faultNone: 45, fault500: 6, fault502: 6, fault503: 6, fault404: 5, fault403: 4,
		faultSlowHeaders: 8, faultCutBody: 8, faultReset: 5, faultSlowBody: 7, faultTampered: 4,
	}
	sumdbFaults = [numFaults]int{
		faultNone: 75, fault500: 4, fault502: 3, fault503: 3,
		faultSlowHeaders: 5, faultCutBody: 4, faultReset: 3, faultSlowBody: 3,
	}
)

// soakUpstream is a public GOPROXY with a checksum database under
// /sumdb/<name>/, which misbehaves at random while faulty is set.
type soakUpstream struct {
	*httptest.Server
	name, vkey string
	verifier   note.Verifier
	mods       []*soakModule
	db         http.Handler // the checksum database, at its root
	faulty     atomic.Bool

	mu       sync.Mutex
	rand     *mathrand.Rand
	injected [numFaults]int // by fault, while faulty
}

func newSoakUpstream(t *testing.T, seed uint64, mods []*soakModule) *soakUpstream {
	t.Helper()
	const name = "sum.agora-soak.test"
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	byKey := make(map[string]*soakVersion)
	for _, m := range mods {
		for _, v := range m.Versions {
			byKey[v.Path+"@"+v.Version] = v
		}
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	db := sumdb.NewServer(sumdb.NewTestServer(skey, func(path, version string) ([]byte, error) {
		if v := byKey[path+"@"+version]; v != nil {
			return []byte(v.Sum), nil
		}
		// Answered 404, as sum.golang.org answers it.
		return nil, &fs.PathError{Op: "lookup", Path: path + "@" + version, Err: fs.ErrNotExist}
	}))
	u := &soakUpstream{
		name: name, vkey: vkey, verifier: verifier, mods: mods, db: db,
		rand: mathrand.New(mathrand.NewPCG(seed, seed^0x50a4)),
	}
	u.faulty.Store(true)
	sumdbPrefix := "/sumdb/" + name
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			status int
			header http.Header
			body   []byte
			fault  soakFault
		)
		if rest, ok := strings.CutPrefix(r.URL.Path, sumdbPrefix); ok {
			status, header, body = http.StatusOK, http.Header{}, nil // /supported
			if rest != "/supported" {
				status, header, body = u.sumdb(rest)
			}
			fault = u.pick(&sumdbFaults)
		} else {
			status, header, body = u.answer(r.URL.Path)
			fault = u.pick(&proxyFaults)
		}
		u.serve(w, r, fault, status, header, body)
	}))
	t.Cleanup(u.Close)
	return u
}

// sumdb returns the checksum database's true answer for the URL path p
// under /sumdb/<name>: 404 for a tile beyond its tree, as
// sum.golang.org answers, where its test server fails.
func (u *soakUpstream) sumdb(p string) (int, http.Header, []byte) {
	if t, err := tlog.ParseTilePath(strings.TrimPrefix(p, "/")); err == nil {
		level := max(t.L, 0) * t.H
		if size := u.treeSize(); (t.N<<t.H+int64(t.W))<<level > size {
			return http.StatusNotFound, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, []byte("not found: beyond the tree\n")
		}
	}
	rec := httptest.NewRecorder()
	u.db.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
	return rec.Code, rec.Header(), rec.Body.Bytes()
}

// treeSize returns the number of records in the checksum database's
// tree.
func (u *soakUpstream) treeSize() int64 {
	rec := httptest.NewRecorder()
	u.db.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/latest", nil))
	msg, err := note.Open(rec.Body.Bytes(), note.VerifierList(u.verifier))
	if err != nil {
		panic(err)
	}
	tree, err := tlog.ParseTree([]byte(msg.Text))
	if err != nil {
		panic(err)
	}
	return tree.N
}

// pick returns a fault drawn with weights, or faultNone if the upstream
// is not faulty.
func (u *soakUpstream) pick(weights *[numFaults]int) soakFault {
	if !u.faulty.Load() {
		return faultNone
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.rand.IntN(total)
	for f, w := range weights {
		if n < w {
			u.injected[f]++
			return soakFault(f)
		}
		n -= w
	}
	panic("unreachable")
}

// duration returns a random duration in [lo, hi).
func (u *soakUpstream) duration(lo, hi time.Duration) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return lo + time.Duration(u.rand.Int64N(int64(hi-lo)))
}

// answer returns what a well-behaved upstream answers for the URL path p.
func (u *soakUpstream) answer(p string) (int, http.Header, []byte) {
	text := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	notFound := func(msg string) (int, http.Header, []byte) {
		return http.StatusNotFound, text, []byte("not found: " + msg + "\n")
	}
	esc, rest, latest := strings.TrimPrefix(p, "/"), "", false
	if p, ok := strings.CutSuffix(esc, "/@latest"); ok {
		esc, latest = p, true
	} else if p, r, ok := strings.Cut(esc, "/@v/"); ok {
		esc, rest = p, r
	} else {
		return notFound("unknown path")
	}
	path, err := module.UnescapePath(esc)
	if err != nil {
		return notFound(err.Error())
	}
	var m *soakModule
	for _, sm := range u.mods {
		if sm.Path == path {
			m = sm
		}
	}
	if m == nil {
		return notFound("module " + path + ": no such module")
	}
	info := func(v *soakVersion) (int, http.Header, []byte) {
		return http.StatusOK, http.Header{"Content-Type": {"application/json"}}, v.Info
	}
	switch {
	case latest && m.NoLatest:
		return notFound(path + "@latest: no @latest")
	case latest:
		return info(m.Latest)
	case rest == "list":
		var list bytes.Buffer
		for _, v := range m.Versions {
			fmt.Fprintln(&list, v.Version)
		}
		return http.StatusOK, text, list.Bytes()
	}
	ext := filepath.Ext(rest)
	query, err := module.UnescapeVersion(strings.TrimSuffix(rest, ext))
	if err != nil {
		return notFound(err.Error())
	}
	v := m.version(query)
	if ext == ".info" && v == nil {
		v = m.resolve(query)
	}
	if v == nil {
		return notFound(path + "@" + query + ": unknown revision " + query)
	}
	switch ext {
	case ".info":
		return info(v)
	case ".mod":
		return http.StatusOK, text, []byte(v.GoMod)
	case ".zip":
		return http.StatusOK, http.Header{"Content-Type": {"application/zip"}}, v.Zip
	}
	return notFound("unknown file " + rest)
}

// resolve returns the version that query names, as the upstream resolves
// it, or nil: the branch "master" names Latest, and a commit hash (12
// digits or more) the pseudo-version of that commit.
func (m *soakModule) resolve(query string) *soakVersion {
	if query == "master" {
		return m.Latest
	}
	if len(query) < 12 {
		return nil
	}
	for _, v := range m.Versions {
		if rev, err := module.PseudoVersionRev(v.Version); err == nil && strings.HasPrefix(query, rev) {
			return v
		}
	}
	return nil
}

// serve answers r with status, header and body, spoilt by fault.
func (u *soakUpstream) serve(w http.ResponseWriter, r *http.Request, fault soakFault, status int, header http.Header, body []byte) {
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-r.Context().Done():
			return false
		}
	}
	switch fault {
	case faultTampered:
		body = u.tampered(r.URL.Path, status, body)
	case fault500, fault502, fault503:
		status := map[soakFault]int{fault500: 500, fault502: 502, fault503: 503}[fault]
		http.Error(w, "injected fault: "+http.StatusText(status), status)
		return
	case fault404:
		http.Error(w, "not found: injected fault", http.StatusNotFound)
		return
	case fault403:
		http.Error(w, "forbidden: injected fault", http.StatusForbidden)
		return
	case faultSlowHeaders:
		if !sleep(u.duration(100*time.Millisecond, 2500*time.Millisecond)) {
			return
		}
	case faultReset, faultCutBody:
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		if fault == faultReset {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // a close sends RST
			}
			return
		}
		fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
			status, http.StatusText(status), header.Get("Content-Type"), len(body))
		buf.Write(body[:len(body)/2])
		buf.Flush()
		return
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if fault != faultSlowBody {
		w.Write(body)
		return
	}
	const pieces = 5
	for i := range pieces {
		w.Write(body[len(body)*i/pieces : len(body)*(i+1)/pieces])
		http.NewResponseController(w).Flush()
		if i < pieces-1 && !sleep(u.duration(20*time.Millisecond, 300*time.Millisecond)) {
			return
		}
	}
}

// tampered returns other content than body, the true answer for the URL
// path p, if it is a .mod or zip: a go.mod with a line more, or the
// version's Tampered zip, which the checksum database refuses. (A zip
// with a byte changed would not do: a change to its headers leaves its
// go.sum hash, of its files' names and contents, as it is, and the go
// command takes such a zip.) Else it returns body.
func (u *soakUpstream) tampered(p string, status int, body []byte) []byte {
	if status != http.StatusOK {
		return body
	}
	switch {
	case strings.HasSuffix(p, ".mod"):
		return append(slices.Clone(body), "// not the true go.mod\n"...)
	case strings.HasSuffix(p, ".zip"):
		for _, m := range u.mods {
			for _, v := range m.Versions {
				if bytes.Equal(v.Zip, body) {
					return v.Tampered
				}
			}
		}
	}
	return body
}

// faultCounts returns what faults were injected, for the log.
func (u *soakUpstream) faultCounts() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var parts []string
	for f, n := range u.injected {
		parts = append(parts, fmt.Sprintf("%s %d", faultNames[f], n))
	}
	return strings.Join(parts, ", ")
}

// soakRequest is a request a client sends: a file of a module (".info",
// ".mod", ".zip" of a version or query, "list", or "@latest"), or of the
// checksum database ("sumdb").
type soakRequest struct {
	mod   *soakModule // nil for a module the upstream does not have
	path  string
	query string // the version or query, for .info, .mod and .zip
	file  string
	// want is the version the answer must be, nil if it must not be 200.
	want *soakVersion
	// sumdb is the path of a "sumdb" request under /sumdb/<name>/:
	// latest, a lookup (of want), or a tile.
	sumdb string
}

// url returns the request's URL path.
func (q soakRequest) url(t *testing.T) string {
	if q.file == "sumdb" {
		return "/sumdb/" + q.sumdb
	}
	esc, err := module.EscapePath(q.path)
	if err != nil {
		t.Fatal(err)
	}
	switch q.file {
	case "list":
		return "/" + esc + "/@v/list"
	case "@latest":
		return "/" + esc + "/@latest"
	}
	escVersion, err := module.EscapeVersion(q.query)
	if err != nil {
		t.Fatal(err)
	}
	return "/" + esc + "/@v/" + escVersion + q.file
}

func (q soakRequest) String() string {
	if q.file == "sumdb" {
		return "/sumdb/" + q.sumdb
	}
	if q.query == "" {
		return q.path + " " + q.file
	}
	return q.path + "@" + q.query + q.file
}

// randomRequest returns a request a client might send: mostly for a
// version the upstream has, sometimes for a query it resolves, and now
// and then for something it does not have.
func randomRequest(rnd *mathrand.Rand, up *soakUpstream) soakRequest {
	m := up.mods[rnd.IntN(len(up.mods))]
	v := m.Versions[rnd.IntN(len(m.Versions))]
	q := soakRequest{mod: m, path: m.Path, query: v.Version, want: v}
	switch n := rnd.IntN(100); {
	case n < 6:
		// The checksum database, as the go command asks for it: a
		// lookup (of a version the database does not have, too), the
		// latest tree, a tile of hashes or of records, which may be
		// beyond the tree.
		q.file = "sumdb"
		escPath, _ := module.EscapePath(v.Path)
		switch n {
		case 0, 1:
			q.sumdb = up.name + "/lookup/" + escPath + "@" + v.Version
		case 2:
			unknown := "v1.99.0"
			if strings.HasSuffix(m.Path, "/v2") {
				unknown = "v2.99.0"
			}
			q.sumdb, q.want = up.name+"/lookup/"+escPath+"@"+unknown, nil
		case 3:
			q.sumdb, q.want = up.name+"/latest", nil
		case 4:
			q.sumdb, q.want = fmt.Sprintf("%s/tile/8/0/000.p/%d", up.name, 1+rnd.IntN(30)), nil
		case 5:
			q.sumdb, q.want = fmt.Sprintf("%s/tile/8/data/000.p/%d", up.name, 1+rnd.IntN(30)), nil
		}
	case n < 22:
		q.file = ".info"
	case n < 40:
		q.file = ".mod"
	case n < 62:
		q.file = ".zip"
	case n < 74:
		q.file, q.query, q.want = "list", "", nil
	case n < 84:
		q.file, q.query, q.want = "@latest", "", nil
	case n < 90:
		q.file, q.query, q.want = ".info", "master", m.Latest
	case n < 93 && m.pseudo():
		rev, _ := module.PseudoVersionRev(v.Version)
		q.file, q.query = ".info", rev
	case n < 93:
		q.file, q.query, q.want = ".info", "no-such-branch", nil
	case n < 97:
		// A version the upstream never had.
		q.file, q.query, q.want = []string{".info", ".mod", ".zip"}[rnd.IntN(3)], "v9.9.9", nil
		if strings.HasSuffix(m.Path, "/v2") {
			q.query = "v2.9.9"
		}
	default:
		// A module it never had.
		q.mod, q.path, q.want = nil, "example.org/soak/nosuch", nil
		q.file, q.query = []string{".info", ".mod", ".zip", "list", "@latest"}[rnd.IntN(5)], "v1.0.0"
		if q.file == "list" || q.file == "@latest" {
			q.query = ""
		}
	}
	return q
}

// soakStats counts the answers of a soak, for its log.
type soakStats struct {
	mu       sync.Mutex
	statuses map[string]map[int]int // by file, by status (0: no answer)
	slowest  time.Duration
}

func (s *soakStats) add(file string, status int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowest = max(s.slowest, d)
	if s.statuses == nil {
		s.statuses = make(map[string]map[int]int)
	}
	if s.statuses[file] == nil {
		s.statuses[file] = make(map[int]int)
	}
	s.statuses[file][status]++
}

func (s *soakStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, file := range slices.Sorted(maps.Keys(s.statuses)) {
		fmt.Fprintf(&b, "\n\t%-8s", file)
		for _, status := range slices.Sorted(maps.Keys(s.statuses[file])) {
			fmt.Fprintf(&b, " %d:%d", status, s.statuses[file][status])
		}
	}
	fmt.Fprintf(&b, "\n\tthe slowest took %v", s.slowest.Round(time.Millisecond))
	return b.String()
}

// soakAllowed are the statuses the README gives a download while the
// upstream fails: 404 for what is not stored and cannot be fetched (for
// a lookup, and for any file of a version without a record), 502 for the
// .mod or zip of a recorded version that the upstream fails to give, or
// for something the upstream gave that was refused (by the checksum
// database, which fails too). 503 is only for a database out of reach or
// more than 1024 fetches waiting, neither of which happens here.
var soakAllowed = map[int]bool{http.StatusOK: true, http.StatusNotFound: true, http.StatusBadGateway: true}

// runSoak sends requests from soakClients clients to random nodes for
// d while up misbehaves, checking every answer, then makes up behave and
// checks what the nodes hold.
func runSoak(t *testing.T, up *soakUpstream, seed uint64, d time.Duration, nodes ...*server) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: soakClients}}
	defer client.CloseIdleConnections()
	var stats soakStats
	targets := make([]*soakNode, len(nodes))
	for i, node := range nodes {
		targets[i] = &soakNode{s: node, url: node.URL}
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range soakClients {
		rnd := mathrand.New(mathrand.NewPCG(seed, uint64(i)))
		wg.Go(func() {
			for time.Now().Before(deadline) {
				q := randomRequest(rnd, up)
				node := targets[rnd.IntN(len(targets))]
				url, gen := node.target()
				if url == "" { // restarting
					time.Sleep(10 * time.Millisecond)
					continue
				}
				timeout := time.Minute // an answer that never comes is a failure
				short := rnd.IntN(100) < 15
				if short {
					// Gives up, often in the middle of a fetch or a
					// download.
					timeout = time.Duration(5+rnd.IntN(400)) * time.Millisecond
				}
				start := time.Now()
				status := soakCheck(t, client, up, url, q, timeout, func(err error) bool {
					// Given up by the client, or cut off by a restart.
					return short && errors.Is(err, context.DeadlineExceeded) || node.restarted(gen)
				})
				stats.add(q.file, status, time.Since(start))
			}
		})
	}
	// Halfway through, the last node is restarted, as an operator
	// does to upgrade it: SIGTERM with requests and fetches under way.
	time.Sleep(d / 2)
	targets[len(targets)-1].restart(t)
	wg.Wait()
	up.faulty.Store(false)
	t.Logf("faults injected: %s", up.faultCounts())
	t.Logf("answers by file and status (0: the client gave up):%s", &stats)
	if t.Failed() {
		return
	}

	// The upstream behaves from now on. A node may have found it down,
	// and asks it again only after a cool-off (5 s, doubling while
	// probes fail, up to a minute); until then what it does not store is
	// a 404.
	for _, node := range nodes {
		for _, m := range up.mods {
			for _, v := range m.Versions {
				for _, file := range []string{".info", ".mod", ".zip"} {
					q := soakRequest{mod: m, path: m.Path, query: v.Version, file: file, want: v}
					soakSettle(t, client, up, node, q)
				}
			}
			soakSettleList(t, client, node, m)
		}
	}
	if t.Failed() {
		return
	}

	// The go command downloads every version through each node and
	// verifies each against the checksum database, through that node too.
	for _, node := range nodes {
		soakGoDownload(t, node, up)
	}

	// Idle now: no temporary file is left behind.
	for _, node := range nodes {
		soakIdle(t, node)
	}

	// Storage is what the records say: every version checked, none bad,
	// no stray file, no @v/list file to fix.
	total := 0
	for _, m := range up.mods {
		total += len(m.Versions)
	}
	out, all, err := runCommand(nodes[0].workDir, nodes[0].env, nodes[0].bin, "task", "storage:verify")
	if want := fmt.Sprintf("checked %d versions, 0 bad\n", total); err != nil || out != want {
		t.Errorf("agora task storage:verify: %v\n%s\nwant only %q on standard output", err, all, want)
	}

	for _, node := range targets {
		soakCheckLog(t, node.s.URL, node.s.log.String())
	}
}

// soakNode is a node that clients send requests to, which the soak
// restarts once.
type soakNode struct {
	s *server

	mu  sync.Mutex
	url string // its URL; empty while it restarts
	gen int    // restarts begun
}

// target returns the node's URL, empty while it restarts, and the count
// of its restarts begun.
func (n *soakNode) target() (string, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.url, n.gen
}

// restarted reports whether a restart began after gen was the count.
func (n *soakNode) restarted(gen int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen != gen
}

// restart stops the node with SIGTERM and starts it again on the same
// data. It must exit with status 0: what was under way finished within
// AGORA_SHUTDOWN_TIMEOUT, and with it the fetches it started, whose
// temporary files are gone.
func (n *soakNode) restart(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	n.url, n.gen = "", n.gen+1
	n.mu.Unlock()
	n.s.terminate(t)
	if err := n.s.exited(t); err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", n.s.URL, err)
	}
	soakCheckLog(t, n.s.URL+" (before its restart)", n.s.log.String())
	if names := soakLeftovers(t, n.s); len(names) > 0 {
		t.Errorf("temporary files left behind by %s, stopped:\n%s", n.s.URL, strings.Join(names, "\n"))
	}
	dialect := "postgres"
	if n.s.DatabaseURL == "" {
		dialect = "sqlite3"
	}
	n.s.start(t, dialect)
	n.mu.Lock()
	n.url = n.s.URL
	n.mu.Unlock()
}

// soakCheck sends q to the node at url, giving up after timeout, and
// checks the answer; a failure to get one must be excused. It returns
// the status, 0 if no answer came.
func soakCheck(t *testing.T, client *http.Client, up *soakUpstream, url string, q soakRequest, timeout time.Duration, excused func(error) bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	status, header, body, err := soakGet(ctx, client, url+q.url(t))
	if err != nil {
		if !excused(err) {
			t.Errorf("GET %s from %s: %v", q, url, err)
		}
		return 0
	}
	if !soakAllowed[status] {
		t.Errorf("GET %s from %s: status %d, want one of 200, 404, 502: %s", q, url, status, firstLine(body))
		return status
	}
	if status == http.StatusOK {
		if err := q.checkBody(up, header, body); err != nil {
			t.Errorf("GET %s from %s: 200 with %v", q, url, err)
		}
	}
	return status
}

// soakGet gets url and reads the whole answer.
func soakGet(ctx context.Context, client *http.Client, url string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("status %d, reading the body: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// firstLine returns the first line of an error answer, for messages.
func firstLine(body []byte) string {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	return string(line)
}

// checkBody checks the body of a 200 answer to q.
func (q soakRequest) checkBody(up *soakUpstream, header http.Header, body []byte) error {
	switch q.file {
	case "sumdb":
		return q.checkSumDB(up, body)
	case "list":
		return q.checkList(body)
	case "@latest":
		return q.checkLatest(body)
	}
	v := q.want
	if v == nil {
		return fmt.Errorf("%d bytes, for something the upstream never had", len(body))
	}
	var want []byte
	var etag string // the ETag of an immutable file
	zipHash, modHash := v.hashes()
	switch q.file {
	case ".info":
		want = v.Info
		sum := sha256.Sum256(want)
		etag = `"info-` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
		// A version stored without its .info (fetched for its .mod or
		// zip alone) while the upstream fails to give it has one made
		// up, without a time, not to be kept; and so has a commit that
		// such a pseudo-version names, which the upstream fails to
		// resolve (a branch is never resolved from what is stored).
		timeless := fmt.Appendf(nil, `{"Version":%q}`, v.Version)
		if q.query != "master" && bytes.Equal(body, timeless) && header.Get("Cache-Control") == "no-cache" && header.Get("ETag") == "" {
			return nil
		}
	case ".mod":
		want, etag = []byte(v.GoMod), `"`+modHash+`"`
	case ".zip":
		want, etag = v.Zip, `W/"`+zipHash+`"` // weak: the hash is of its files
	}
	if !bytes.Equal(body, want) {
		return fmt.Errorf("%d bytes that are not the upstream's %s of %s (%d bytes):\n%.200q\nwant\n%.200q",
			len(body), q.file, v.Version, len(want), body, want)
	}
	// The answer to a query names another version once the query moves:
	// it is neither immutable nor tagged.
	if q.query != v.Version {
		etag = ""
	}
	if got := header.Get("ETag"); got != etag {
		return fmt.Errorf("the right bytes, and the ETag %s, want %q", got, etag)
	}
	return nil
}

// hashes returns the go.sum hashes of v's zip and go.mod.
func (v *soakVersion) hashes() (zip, mod string) {
	lines := strings.Split(v.Sum, "\n")
	return strings.Fields(lines[0])[2], strings.Fields(lines[1])[2]
}

// checkSumDB checks the body of a 200 answer from the checksum-database
// proxy: the latest tree or a lookup signed by the database, a lookup of
// the version's true go.sum lines, a tile as the database has it.
func (q soakRequest) checkSumDB(up *soakUpstream, body []byte) error {
	rel := strings.TrimPrefix(q.sumdb, up.name+"/")
	switch {
	case rel == "latest":
		if _, err := note.Open(body, note.VerifierList(up.verifier)); err != nil {
			return fmt.Errorf("%q, not a tree the database signed: %v", body, err)
		}
	case strings.HasPrefix(rel, "lookup/"):
		if q.want == nil {
			return fmt.Errorf("%q, for a version the database never had", body)
		}
		_, text, tree, err := tlog.ParseRecord(body)
		if err != nil {
			return fmt.Errorf("%q: %v", body, err)
		}
		if _, err := note.Open(tree, note.VerifierList(up.verifier)); err != nil {
			return fmt.Errorf("%q, with a tree the database did not sign: %v", body, err)
		}
		if string(text) != q.want.Sum {
			return fmt.Errorf("%q, whose record is not\n%s", body, q.want.Sum)
		}
	default: // a tile
		status, _, want := up.sumdb("/" + rel)
		if status != http.StatusOK || !bytes.Equal(body, want) {
			return fmt.Errorf("%q, where the database has %d %q", body, status, want)
		}
	}
	return nil
}

// checkList checks the body of a 200 answer to a list: versions the
// upstream has, each once, in semver order, pseudo-versions only for a
// module without tags.
func (q soakRequest) checkList(body []byte) error {
	if q.mod == nil {
		return fmt.Errorf("list %q, of a module the upstream never had", body)
	}
	list := strings.Fields(string(body))
	for i, v := range list {
		if q.mod.version(v) == nil {
			return fmt.Errorf("list %q, naming %s, which the upstream never had", body, v)
		}
		if i > 0 && semver.Compare(list[i-1], v) >= 0 {
			return fmt.Errorf("list %q, not in semver order", body)
		}
	}
	return nil
}

// checkLatest checks the body of a 200 answer to @latest: a version the
// upstream has, with its time (or none, if it is stored without one).
func (q soakRequest) checkLatest(body []byte) error {
	if q.mod == nil {
		return fmt.Errorf("@latest %q, of a module the upstream never had", body)
	}
	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("@latest %q: %v", body, err)
	}
	v := q.mod.version(info.Version)
	switch {
	case v == nil:
		return fmt.Errorf("@latest %q, naming a version the upstream never had", body)
	case !info.Time.IsZero() && !info.Time.Equal(v.Time):
		return fmt.Errorf("@latest %q, with a time other than the version's, %v", body, v.Time)
	}
	return nil
}

// soakSettleTimeout bounds how long a node may take to serve everything
// once the upstream behaves: the longest cool-off of a proxy found down
// (a minute), and some.
const soakSettleTimeout = 75 * time.Second

// soakSettle checks that node serves q, a file of a version, in full,
// once the upstream behaves: after 404s or 502s while the node still
// holds the upstream down, it must answer 200 with the upstream's bytes.
func soakSettle(t *testing.T, client *http.Client, up *soakUpstream, node *server, q soakRequest) {
	t.Helper()
	deadline := time.Now().Add(soakSettleTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		status, header, body, err := soakGet(ctx, client, node.URL+q.url(t))
		cancel()
		switch {
		case err != nil:
			t.Errorf("GET %s from %s once the upstream behaves: %v", q, node.URL, err)
			return
		case status == http.StatusOK && string(body) == fmt.Sprintf(`{"Version":%q}`, q.query):
			// An .info made up while the node holds the upstream down:
			// a later request fetches and stores the upstream's.
			if time.Now().After(deadline) {
				t.Errorf("GET %s from %s: still the .info made up without a time %v after the upstream behaves", q, node.URL, soakSettleTimeout)
				return
			}
		case status == http.StatusOK:
			if err := q.checkBody(up, header, body); err != nil {
				t.Errorf("GET %s from %s once the upstream behaves: 200 with %v", q, node.URL, err)
			}
			return
		case !soakAllowed[status]:
			t.Errorf("GET %s from %s once the upstream behaves: status %d: %s", q, node.URL, status, firstLine(body))
			return
		case time.Now().After(deadline):
			t.Errorf("GET %s from %s: still status %d %v after the upstream behaves: %s", q, node.URL, status, soakSettleTimeout, firstLine(body))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// soakSettleList checks that node lists all of m's versions, and gives
// its latest, once the upstream behaves (and the lists made before have
// expired: AGORA_LIST_TTL=1s).
func soakSettleList(t *testing.T, client *http.Client, node *server, m *soakModule) {
	t.Helper()
	var want []string
	for _, v := range m.Versions {
		want = append(want, v.Version)
	}
	wantList := strings.Join(want, "\n") + "\n"
	wantLatest := fmt.Sprintf(`{"Version":%q,"Time":%q}`+"\n", m.Latest.Version, m.Latest.Time.Format(time.RFC3339))
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(soakSettleTimeout)
	for _, c := range []struct{ url, want string }{{"/" + esc + "/@v/list", wantList}, {"/" + esc + "/@latest", wantLatest}} {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			status, _, body, err := soakGet(ctx, client, node.URL+c.url)
			cancel()
			if err == nil && status == http.StatusOK && string(body) == c.want {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("GET %s from %s once the upstream behaves: status %d, %q, %v; want 200 and %q", c.url, node.URL, status, body, err, c.want)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// soakGoDownload downloads every version with the go command through
// node, into an empty module cache, verifying each against the checksum
// database through node, and checks the hashes.
func soakGoDownload(t *testing.T, node *server, up *soakUpstream) {
	t.Helper()
	g := newGoTool(t, node.URL)
	g.env = append(g.env, "GONOSUMDB=", "GOSUMDB="+up.vkey)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module soak\n\ngo 1.21\n")
	args := []string{"mod", "download", "-json"}
	want := make(map[string]string) // go.sum lines by path@version
	for _, m := range up.mods {
		for _, v := range m.Versions {
			args = append(args, v.Path+"@"+v.Version)
			want[v.Path+"@"+v.Version] = v.Sum
		}
	}
	out, all, err := runCommand(dir, g.env, "go", args...)
	if err != nil {
		t.Errorf("go mod download through %s: %v\n%s", node.URL, err, all)
		return
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var d struct{ Path, Version, Error, Sum, GoModSum string }
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go mod download -json output: %v\n%s", err, out)
		}
		key := d.Path + "@" + d.Version
		got := fmt.Sprintf("%s %s %s\n%[1]s %[2]s/go.mod %[4]s\n", d.Path, d.Version, d.Sum, d.GoModSum)
		if d.Error != "" || got != want[key] {
			t.Errorf("go mod download %s through %s: error %q, hashes\n%swant\n%s", key, node.URL, d.Error, got, want[key])
		}
		delete(want, key)
	}
	for key := range want {
		t.Errorf("go mod download through %s did not report %s", node.URL, key)
	}
}

// soakLeftovers returns the temporary files in node's tmp/ directory and
// in storage.
func soakLeftovers(t *testing.T, node *server) []string {
	t.Helper()
	var names []string
	tmp := filepath.Join(node.DataDir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		names = append(names, filepath.Join(tmp, e.Name()))
	}
	filepath.WalkDir(node.StorageDir, func(name string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(name, ".agora-tmp") {
			names = append(names, name)
		}
		return nil
	})
	return names
}

// soakIdle checks that node's tmp/ directory, and storage, hold no
// temporary file once the fetches that outlived their clients have
// ended.
func soakIdle(t *testing.T, node *server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		names := soakLeftovers(t, node)
		if len(names) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("temporary files left behind by %s once idle:\n%s", node.URL, strings.Join(names, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// soakLogErrors matches the log lines that the soak must not produce: a
// panic, any error, and a warning of a failure whose cause is a context
// cancelled. The upstream's faults explain warnings: a proxy down, a
// fetched version refused by the checksum database (a tampered .mod or
// zip), a list or @latest served from what is stored, a checksum-database
// answer passed on unproven because the upstream failed to serve its
// proof. They explain no error, which is for what the operator must look
// at (a file that storage lost, a failure to write one, the database out
// of reach, a checksum-database answer that its signed tree contradicts).
// Nor is a client that gives up anyone's failure: the request's context
// is cancelled, and a warning that names that as the cause blames the
// upstream, or the database, for it.
var soakLogErrors = regexp.MustCompile(`(?m)^.*(panic|level=ERROR|level=WARN.*err="?context canceled).*$`)

// soakCheckLog checks the log of the node named for lines that the
// faults do not explain, and logs how many warnings of each kind it has.
func soakCheckLog(t *testing.T, name, log string) {
	t.Helper()
	if lines := soakLogErrors.FindAllString(log, 20); len(lines) > 0 {
		t.Errorf("%s logged:\n%s", name, strings.Join(lines, "\n"))
	}
	warnings := make(map[string]int)
	for _, m := range soakLogWarning.FindAllStringSubmatch(log, -1) {
		warnings[m[1]]++
	}
	var counts []string
	for _, msg := range slices.Sorted(maps.Keys(warnings)) {
		counts = append(counts, fmt.Sprintf("%d %s", warnings[msg], msg))
	}
	t.Logf("%s warned: %s", name, strings.Join(counts, "; "))
}

// soakLogWarning matches a warning in a log, and its message.
var soakLogWarning = regexp.MustCompile(`(?m)level=WARN msg=("[^"]*"|\S+)`)
