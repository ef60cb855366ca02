package modproxy_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"

	"agora/modproxy"
)

// publishConcurrently publishes uploads[i%len(uploads)] from each of n
// goroutines at once and returns every result.
func publishConcurrently(t *testing.T, r *testRegistry, n int, uploads ...[]byte) ([]*modproxy.PublishResult, []error) {
	t.Helper()
	results := make([]*modproxy.PublishResult, n)
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			results[i], errs[i] = r.Publish(context.Background(), alice, "example.com/m", "v1.0.0", bytes.NewReader(uploads[i%len(uploads)]))
		})
	}
	start.Done()
	done.Wait()
	return results, errs
}

func TestPublishConcurrentIdentical(t *testing.T) {
	r := newTestRegistry(t)
	upload := moduleZip(t, "example.com/m", "v1.0.0", "same")
	results, errs := publishConcurrently(t, r, 20, upload)

	created := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("upload %d: %v", i, err)
			continue
		}
		if results[i].Created {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d uploads were created; want exactly 1", created)
	}
	if got := r.actions(); len(got) != 1 {
		t.Errorf("audit log = %q; want one publish", got)
	}
	r.assertTempDirEmpty(t)
}

func TestPublishConcurrentConflicting(t *testing.T) {
	r := newTestRegistry(t)
	a := moduleZip(t, "example.com/m", "v1.0.0", "a")
	b := moduleZip(t, "example.com/m", "v1.0.0", "b")
	results, errs := publishConcurrently(t, r, 20, a, b)

	recorded, err := r.meta.Version(context.Background(), "example.com/m", "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	created, identical, conflicts := 0, 0, 0
	for i, err := range errs {
		var cerr *modproxy.ConflictError
		switch {
		case err == nil && results[i].Created:
			created++
		case err == nil:
			identical++
			if results[i].ZipHash != recorded.ZipHash {
				t.Errorf("upload %d: reported identical with hash %s; recorded %s", i, results[i].ZipHash, recorded.ZipHash)
			}
		case errors.As(err, &cerr):
			conflicts++
			if cerr.RecordedHash != recorded.ZipHash || cerr.UploadedHash == recorded.ZipHash {
				t.Errorf("upload %d: conflict %+v; recorded hash is %s", i, cerr, recorded.ZipHash)
			}
		default:
			t.Errorf("upload %d: %v; want success or a *ConflictError", i, err)
		}
	}
	if created != 1 || identical != 9 || conflicts != 10 {
		t.Errorf("created %d, identical %d, conflicting %d; want 1, 9, 10", created, identical, conflicts)
	}

	// The stored zip is the one whose hash was recorded.
	zipName := filepath.Join(r.disk.Root(), "example.com/m/@v/v1.0.0.zip")
	if h, err := dirhash.HashZip(zipName, dirhash.Hash1); err != nil || h != recorded.ZipHash {
		t.Errorf("stored zip hash = %s, %v; recorded %s", h, err, recorded.ZipHash)
	}
	if got := len(r.meta.Events()); got != 1+conflicts {
		t.Errorf("audit log has %d events; want 1 publish and %d rejections", got, conflicts)
	}
	r.assertTempDirEmpty(t)
}
