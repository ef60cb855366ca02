package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// authenticate proves a fetched lookup or tile against a tree head signed
// by the database, reading the tiles the proof needs (which are cached, as
// proven, on the way). It returns whether data is proven, and so may be
// cached forever, and an error when the proof fails. An answer that cannot
// be proven, because it is beyond every signed tree known or the upstream
// fails to serve the proof, is passed on unproven and not cached: its
// client proves it anyway.
//
// Proving before caching means that a misbehaving upstream cannot poison
// the cache: a bad answer is refused once, and asked for again next time.
func (db *DB) authenticate(ctx context.Context, req request, data []byte) (bool, error) {
	var (
		tree    tlog.Tree
		indexes []int64
		want    []tlog.Hash
		known   map[tlog.Tile][]byte
	)
	switch {
	case req.kind == kindLookup:
		id, text, treeMsg, err := tlog.ParseRecord(data)
		if err == nil {
			tree, err = db.openTree(treeMsg)
		}
		if err != nil { // checked by fetch already
			return false, db.unproven(req, err)
		}
		db.noteTree(tree)
		if id < 0 || id >= tree.N {
			return false, db.unproven(req, fmt.Errorf("record %d is not in its tree of size %d", id, tree.N))
		}
		indexes, want = []int64{tlog.StoredHashIndex(0, id)}, []tlog.Hash{tlog.RecordHash(text)}

	case req.tile.L >= 0: // hash tile
		t := req.tile
		level, first := t.L*t.H, t.N<<t.H
		covering, ok := db.coveringTree(ctx, req, (first+int64(t.W))<<level)
		if !ok {
			return false, nil
		}
		tree, known = covering, map[tlog.Tile][]byte{t: data}
		for i := range t.W {
			indexes = append(indexes, tlog.StoredHashIndex(level, first+int64(i)))
			var h tlog.Hash
			copy(h[:], data[i*tlog.HashSize:])
			want = append(want, h)
		}

	default: // data tile: records, each followed by a blank line
		t := req.tile
		first := t.N << t.H
		covering, ok := db.coveringTree(ctx, req, first+int64(t.W))
		if !ok {
			return false, nil
		}
		tree = covering
		rest := data
		for i := range t.W {
			end := bytes.Index(rest, []byte("\n\n"))
			indexes = append(indexes, tlog.StoredHashIndex(0, first+int64(i)))
			want = append(want, tlog.RecordHash(rest[:end+1]))
			rest = rest[end+2:]
		}
	}

	r := &tileReader{db: db, ctx: ctx, known: known}
	got, err := tlog.TileHashReader(tree, r).ReadHashes(indexes)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
			db.log.Warn("passing on a checksum database answer unproven and uncached: the upstream failed to serve its proof", "db", db.name, "rel", req.rel, "err", err)
			return false, nil
		}
		return false, db.unproven(req, err)
	}
	for i := range want {
		if got[i] != want[i] {
			return false, db.unproven(req, errors.New("its hash is not the one in the signed tree"))
		}
	}
	return true, nil
}

// unproven returns the error for an answer whose proof failed, and logs it:
// the upstream (or the database) misbehaves.
func (db *DB) unproven(req request, err error) error {
	db.log.Error("the upstream served a checksum database answer that does not match the signed tree; refused", "db", db.name, "rel", req.rel, "err", err)
	return fmt.Errorf("%w: the upstream served a %s that the checksum database's signed tree does not prove: %v", ErrUnavailable, req.rel, err)
}

// noteTree remembers tree if it is the largest signed tree seen so far.
func (db *DB) noteTree(tree tlog.Tree) {
	db.latestMu.Lock()
	if tree.N > db.newest.N {
		db.newest = tree
	}
	db.latestMu.Unlock()
}

// coveringTree returns a signed tree of at least n records, to prove req
// with: the largest seen, else the latest one (reused for LatestTTL). ok is
// false when there is none.
func (db *DB) coveringTree(ctx context.Context, req request, n int64) (tree tlog.Tree, ok bool) {
	db.latestMu.Lock()
	tree = db.newest
	db.latestMu.Unlock()
	if tree.N >= n {
		return tree, true
	}
	data, _, err := db.loadLatest(ctx)
	if err == nil {
		tree, err = db.openTree(data)
	}
	if err != nil {
		db.log.Warn("passing on a checksum database answer unproven and uncached: no signed tree to prove it with", "db", db.name, "rel", req.rel, "err", err)
		return tree, false
	}
	db.noteTree(tree)
	if tree.N < n {
		db.log.Warn("passing on a checksum database answer unproven and uncached: it is beyond the latest signed tree", "db", db.name, "rel", req.rel, "tree", tree.N)
		return tree, false
	}
	return tree, true
}

// tileReader reads the tiles of a proof (a tlog.TileReader): from the
// cache, else from the upstream. Tiles that the proof authenticates are
// cached.
type tileReader struct {
	db    *DB
	ctx   context.Context
	known map[tlog.Tile][]byte // tiles already fetched, not yet proven
}

// Height returns the height of the database's tiles.
func (r *tileReader) Height() int { return tileHeight }

// ReadTiles reads tiles in parallel.
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Go(func() { data[i], errs[i] = r.readTile(t) })
	}
	wg.Wait()
	return data, errors.Join(errs...)
}

// readTile reads one tile. A partial tile the upstream no longer has is cut
// from the full one, as the go command does.
func (r *tileReader) readTile(t tlog.Tile) ([]byte, error) {
	if data, ok := r.known[t]; ok {
		return data, nil
	}
	req := request{rel: t.Path(), kind: kindTile, tile: t}
	if data, ok := r.db.readCache(req); ok {
		return data, nil
	}
	if r.db.offline {
		return nil, fmt.Errorf("%w: %s/%s is not in the cache, and fetching is off", ErrUnavailable, r.db.name, req.rel)
	}
	data, err := r.db.fetchShared(r.ctx, req)
	if errors.Is(err, ErrNotFound) && t.W < 1<<t.H {
		full := t
		full.W = 1 << t.H
		if fdata, ferr := r.db.fetchShared(r.ctx, request{rel: full.Path(), kind: kindTile, tile: full}); ferr == nil {
			return fdata[:t.W*tlog.HashSize], nil
		}
	}
	return data, err
}

// SaveTiles caches the tiles the proof authenticated.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		r.db.writeCache(request{rel: t.Path(), kind: kindTile, tile: t}, data[i])
	}
}
