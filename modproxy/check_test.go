package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"

	"agora/modproxy"
	"agora/storage"
)

// errorKinds maps the names fixtures use in "want:" to the sentinel errors;
// each name is the sentinel's own message.
var errorKinds = map[string]error{
	modproxy.ErrNotFound.Error():  modproxy.ErrNotFound,
	modproxy.ErrGone.Error():      modproxy.ErrGone,
	modproxy.ErrInvalid.Error():   modproxy.ErrInvalid,
	modproxy.ErrConflict.Error():  modproxy.ErrConflict,
	modproxy.ErrTooLarge.Error():  modproxy.ErrTooLarge,
	modproxy.ErrForbidden.Error(): modproxy.ErrForbidden,
}

// zipFixture is one testdata/zips/*.txtar file: an upload and what
// publishing it must do.
type zipFixture struct {
	path, version string
	want          error  // nil for "want: ok"
	message       string // a substring of the error, if any
	files         []zipFile
}

// headerField matches a "key: value" line of a fixture's header; other
// lines describe the case.
var headerField = regexp.MustCompile(`^([a-z]+): (.*)$`)

// readZipFixture parses a fixture file.
func readZipFixture(t *testing.T, name string) zipFixture {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	comment, files := parseTxtar(data)
	fx := zipFixture{files: files}
	var want string
	for line := range strings.Lines(comment) {
		m := headerField.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		switch key, value := m[1], m[2]; key {
		case "path":
			fx.path = value
		case "version":
			fx.version = value
		case "want":
			want = value
		case "error":
			fx.message = value
		default:
			t.Fatalf("%s: unknown header field %q", name, key)
		}
	}
	if fx.path == "" || fx.version == "" || want == "" {
		t.Fatalf("%s: header needs path, version and want", name)
	}
	if want != "ok" {
		fx.want = errorKinds[want]
		if fx.want == nil {
			t.Fatalf("%s: want %q is neither ok nor an error kind", name, want)
		}
	}
	return fx
}

// baselineVersion returns a version of path that no fixture uses, published
// before the fixture's upload so that there is a listing to keep intact.
func baselineVersion(path string) string {
	_, major, _ := module.SplitPathVersion(path)
	if major == "" {
		return "v0.0.1-baseline"
	}
	return "v" + strings.TrimPrefix(major, "/v") + ".0.0-baseline"
}

// TestPublishZipRules publishes each testdata/zips fixture and checks that
// valid zips are stored and served, and that invalid ones fail with the
// right kind of error and leave no trace: no file, no record, no change to
// the version list, no audit event and no temporary file.
func TestPublishZipRules(t *testing.T) {
	names, err := filepath.Glob("testdata/zips/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no fixtures in testdata/zips")
	}
	for _, name := range names {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".txtar"), func(t *testing.T) {
			fx := readZipFixture(t, name)
			ctx := context.Background()
			r := newTestRegistry(t)
			base := baselineVersion(fx.path)
			r.publish(t, alice, fx.path, base, moduleZip(t, fx.path, base, "baseline"))
			listBefore, err := r.List(ctx, fx.path)
			if err != nil {
				t.Fatal(err)
			}
			filesBefore := r.storedFiles(t)
			eventsBefore := len(r.meta.Events())

			upload := buildZip(t, fx.files)
			res, err := r.Publish(ctx, alice, fx.path, fx.version, bytes.NewReader(upload))
			r.assertTempDirEmpty(t)

			if fx.want == nil {
				if err != nil {
					t.Fatalf("Publish: %v; want success", err)
				}
				checkPublished(t, r, fx, upload, res)
				return
			}

			t.Logf("Publish: %v", err)
			if !errors.Is(err, fx.want) {
				t.Fatalf("Publish: error %v; want one wrapping %q", err, fx.want)
			}
			if !strings.Contains(err.Error(), fx.message) {
				t.Errorf("Publish: error %q; want it to contain %q", err, fx.message)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Publish: error %q spans lines; want one line", err)
			}
			if res != nil {
				t.Errorf("Publish returned %+v along with an error", res)
			}
			if got := r.storedFiles(t); !slices.Equal(sortedKeys(got), sortedKeys(filesBefore)) {
				t.Errorf("storage holds %q after a rejected upload; want only %q", sortedKeys(got), sortedKeys(filesBefore))
			}
			r.assertNoRecord(t, fx.path, fx.version)
			if got, err := r.List(ctx, fx.path); err != nil || !slices.Equal(got, listBefore) {
				t.Errorf("List = %q, %v; want %q as before the upload", got, err, listBefore)
			}
			if got := r.meta.Events(); len(got) != eventsBefore {
				t.Errorf("audit log grew from %d to %d events: %+v", eventsBefore, len(got), got[eventsBefore:])
			}
		})
	}
}

// checkPublished checks a valid fixture's upload was recorded with the
// hashes the go command computes, and is served and listed.
func checkPublished(t *testing.T, r *testRegistry, fx zipFixture, upload []byte, res *modproxy.PublishResult) {
	t.Helper()
	if !res.Created {
		t.Errorf("Created = false; want true")
	}
	if want := hashZipBytes(t, upload); res.ZipHash != want {
		t.Errorf("ZipHash = %s; want %s", res.ZipHash, want)
	}
	var gomod string
	for _, f := range fx.files {
		if f.name == fx.path+"@"+fx.version+"/go.mod" {
			gomod = f.data
		}
	}
	if want := hashGoMod(t, []byte(gomod)); res.ModHash != want {
		t.Errorf("ModHash = %s; want %s", res.ModHash, want)
	}
	if got := r.read(t, fx.path, fx.version, storage.Zip); !bytes.Equal(got, upload) {
		t.Errorf("served zip differs from the upload")
	}
	if got := r.read(t, fx.path, fx.version, storage.Mod); string(got) != gomod {
		t.Errorf("served go.mod = %q; want %q", got, gomod)
	}
	// The baseline is a tagged version, so a pseudo-version is not listed.
	list, err := r.List(context.Background(), fx.path)
	if want := !module.IsPseudoVersion(fx.version); err != nil || slices.Contains(list, fx.version) != want {
		t.Errorf("List = %q, %v; want it to include %s: %v", list, err, fx.version, want)
	}
}

// hashZipBytes returns the go.sum hash of a zip, computed by x/mod.
func hashZipBytes(t *testing.T, data []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(name, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// hashGoMod returns the go.sum hash of a go.mod file, computed by x/mod as
// the go command does.
func hashGoMod(t *testing.T, data []byte) string {
	t.Helper()
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLongPathsAndVersions checks that a module path or version longer
// than the metadata database keeps, or than a file name on disk holds, is
// refused as invalid, not left to fail in the database (PostgreSQL refuses
// to store it) or on the disk (ENAMETOOLONG). A download of such a
// version is a 404, as that of any version not stored.
func TestLongPathsAndVersions(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	// 11 + 50×10 + 1 bytes: the longest path kept, of elements a disk can hold.
	longest := "example.com" + strings.Repeat("/abcdefghi", 50) + "j"
	tooLong := longest + "k"
	tooLongVersion := "v1.0.0-" + strings.Repeat("a", 250)

	r.publish(t, alice, longest, "v1.0.0", moduleZip(t, longest, "v1.0.0", "longest"))
	tests := []struct {
		name string
		call func() error
	}{
		{"publish a long path", func() error {
			_, err := r.Publish(ctx, alice, tooLong, "v1.0.0", bytes.NewReader(moduleZip(t, tooLong, "v1.0.0", "long")))
			return err
		}},
		{"publish a long version", func() error {
			_, err := r.Publish(ctx, alice, "example.com/m", tooLongVersion, bytes.NewReader(moduleZip(t, "example.com/m", tooLongVersion, "long")))
			return err
		}},
		{"publish a version too long for a file name", func() error {
			v := "v1.0.0-" + strings.Repeat("a", 230)
			_, err := r.Publish(ctx, alice, "example.com/m", v, bytes.NewReader(moduleZip(t, "example.com/m", v, "long")))
			return err
		}},
		{"publish a path element too long for a file name", func() error {
			p := "example.com/" + strings.Repeat("A", 130) // escaped, 260 bytes
			_, err := r.Publish(ctx, alice, p, "v1.0.0", bytes.NewReader(moduleZip(t, p, "v1.0.0", "long")))
			return err
		}},
		{"list a long path", func() error {
			_, err := r.List(ctx, tooLong)
			return err
		}},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, modproxy.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "bytes long") {
			t.Errorf("%s: %v; want ErrInvalid saying how long it is", tt.name, err)
		}
	}
}
