package modproxy

import (
	"archive/zip"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
)

// parallelHashMin is the uncompressed size from which hashZip spreads the
// files of a zip over several goroutines; below it, one does them all.
const parallelHashMin = 4 << 20

// hashZip returns the go.sum hash (h1:) of the files in zr, the hash that
// dirhash.HashZip computes of a zip file. That hash is a SHA-256 over the
// SHA-256 of each file, so the files of a large zip are decompressed and
// hashed by up to GOMAXPROCS goroutines at once, largest first: a big
// module's first fetch waits on its hashing, which one goroutine would do at
// the speed of one core (about 0.6 s for modernc.org/sqlite). Deflated
// files are inflated by inflate, which hashZip registers on zr.
func hashZip(zr *zip.Reader) (string, error) {
	// As dirhash.HashZip: the names in sorted order, each read from the
	// last entry of that name (CheckZip refuses duplicates, but the hash
	// of such a zip is still dirhash's).
	zr.RegisterDecompressor(zip.Deflate, inflate)
	byName := make(map[string]*zip.File, len(zr.File))
	names := make([]string, len(zr.File))
	var total uint64
	for i, f := range zr.File {
		if strings.Contains(f.Name, "\n") {
			return "", errors.New("dirhash: filenames with newlines are not supported")
		}
		names[i], byName[f.Name] = f.Name, f
		total += f.UncompressedSize64
	}
	slices.Sort(names) // a duplicated name is hashed as often as it occurs
	sums := make([][sha256.Size]byte, len(names))

	// The indexes of names, largest file first, so that no big file
	// starts last.
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Compare(byName[names[b]].UncompressedSize64, byName[names[a]].UncompressedSize64)
	})
	workers := 1
	if total >= parallelHashMin {
		workers = min(runtime.GOMAXPROCS(0), len(order))
	}
	var (
		next   atomic.Int64
		failed atomic.Bool
		mu     sync.Mutex
		first  error
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			h := sha256.New()
			buf := make([]byte, 64<<10)
			for !failed.Load() {
				n := int(next.Add(1) - 1)
				if n >= len(order) {
					return
				}
				i := order[n] // each index is hashed by one goroutine
				var err error
				if sums[i], err = hashFile(byName[names[i]], h, buf); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return "", first
	}

	summary := sha256.New()
	for i, name := range names {
		fmt.Fprintf(summary, "%x  %s\n", sums[i], name)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(summary.Sum(nil)), nil
}

// hashFile returns the SHA-256 of f's contents, using h and buf. Reading
// the whole file checks its CRC-32 and its declared size.
func hashFile(f *zip.File, h hash.Hash, buf []byte) (sum [sha256.Size]byte, err error) {
	r, err := f.Open()
	if err != nil {
		return sum, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer r.Close()
	h.Reset()
	if _, err := io.CopyBuffer(h, onlyReader{r}, buf); err != nil {
		return sum, fmt.Errorf("%s: %w", f.Name, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// onlyReader hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ io.Reader }

// inflaters holds decompressors that finished a file, for the next one, as
// archive/zip pools its own.
var inflaters sync.Pool

// inflate is hashZip's decompressor of deflated files, which it registers
// on the zip.Reader it is given: klauspost/compress's flate, which inflates
// module zips about 12% faster than compress/flate, and inflating is most
// of hashing a zip (see BenchmarkHashZip).
func inflate(r io.Reader) io.ReadCloser {
	if fr, ok := inflaters.Get().(io.ReadCloser); ok {
		fr.(flate.Resetter).Reset(r, nil)
		return &pooledInflater{fr}
	}
	return &pooledInflater{flate.NewReader(r)}
}

// pooledInflater returns its decompressor to inflaters when closed.
type pooledInflater struct{ io.ReadCloser }

func (p *pooledInflater) Close() error {
	if p.ReadCloser == nil {
		return nil // closed already
	}
	err := p.ReadCloser.Close()
	inflaters.Put(p.ReadCloser)
	p.ReadCloser = nil
	return err
}
