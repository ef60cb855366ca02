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
// by the database, and that tree consistent with the newest one known to
// be genuine (see adoptTree), reading the tiles the proofs need (which are
// cached, as proven, once both proofs hold). It returns whether data is
// proven, and so may be cached forever, and an error when a proof fails.
// An answer that cannot be proven, because it is beyond every signed tree
// known or the upstream fails to serve the proof, is passed on unproven
// and not cached: its client proves it anyway.
//
// Proving before caching means that a misbehaving upstream cannot poison
// the cache: a bad answer is refused once, and asked for again next time.
// That includes the answers of a fork of the log, signed with the
// database's key: each is proven by its fork's tree, which is not one
// history with the trees verified before.
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
	if ok, err := db.adoptTree(req, tree, r); !ok || err != nil {
		return false, err
	}
	r.save()
	return true, nil
}

// unproven returns the error for an answer whose proof failed, and logs it:
// the upstream (or the database) misbehaves.
func (db *DB) unproven(req request, err error) error {
	db.log.Error("the upstream served a checksum database answer that does not match the signed tree; refused", "db", db.name, "rel", req.rel, "err", err)
	return fmt.Errorf("%w: the upstream served a %s that the checksum database's signed tree does not prove: %v", ErrUnavailable, req.rel, err)
}

// adoptTree checks that tree, a signed tree that proves req's answer, is
// one history with the newest tree known to be genuine (see knownTree), as
// the go command checks every tree it meets against its newest, reading the
// tiles of the proof with r; it then remembers tree as the newest if it is
// larger. ok is false when the upstream fails to serve the proof's tiles;
// the error reports a tree that is not one history with the known one: a
// fork of the database's log, signed with its key.
func (db *DB) adoptTree(req request, tree tlog.Tree, r *tileReader) (ok bool, err error) {
	for {
		known, err := db.knownTree()
		if err != nil {
			db.log.Error("passing on a checksum database answer unproven and uncached: reading the verified tree", "db", db.name, "rel", req.rel, "err", err)
			return false, nil
		}
		switch {
		case known.N == 0 || tree == known:
		case tree.N == known.N:
			return false, db.forked(req, known, tree)
		default:
			older, newer := known, tree
			if tree.N < known.N {
				older, newer = tree, known
			}
			h, err := tlog.TreeHash(older.N, tlog.TileHashReader(newer, r))
			if err != nil {
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
					db.log.Warn("passing on a checksum database answer unproven and uncached: the upstream failed to serve the proof of its tree", "db", db.name, "rel", req.rel, "err", err)
					return false, nil
				}
				return false, db.unproven(req, err)
			}
			if h != older.Hash {
				return false, db.forked(req, known, tree)
			}
		}
		db.latestMu.Lock()
		unchanged := db.newest.N <= known.N // else check against the newer one
		if unchanged && tree.N > db.newest.N {
			db.newest = tree
		}
		db.latestMu.Unlock()
		if unchanged {
			return true, nil
		}
	}
}

// knownTree returns the newest tree known to be genuine: the largest one
// adoptTree adopted, or the one Lookup verified (verified-latest) if it is
// larger; the zero tree when there is neither.
func (db *DB) knownTree() (tlog.Tree, error) {
	db.latestMu.Lock()
	known := db.newest
	db.latestMu.Unlock()
	data, err := db.readVerified()
	if err != nil || data == nil {
		return known, err
	}
	verified, err := db.openTree(data) // checked by readVerified
	if err == nil && verified.N > known.N {
		known = verified
	}
	return known, nil
}

// forked returns the error for an answer proven by tree, a signed tree that
// is not one history with known, and logs it: the database, or whoever has
// its key, serves a fork of its log.
func (db *DB) forked(req request, known, tree tlog.Tree) error {
	db.log.Error("SECURITY ERROR: the upstream served a checksum database answer proven by a signed tree that is not one history with the tree known; refused",
		"db", db.name, "rel", req.rel, "tree", tree.N, "tree_hash", tree.Hash, "known", known.N, "known_hash", known.Hash)
	return fmt.Errorf("%w: SECURITY ERROR: the upstream served a %s proven by a tree of the checksum database %s (%d records) that is not one history with the tree known (%d records): a fork of its log, signed with its key",
		ErrUnavailable, req.rel, db.name, tree.N, known.N)
}

// coveringTree returns a signed tree of at least n records, to prove req
// with: the newest adopted, else the latest one (reused for LatestTTL),
// which adoptTree then checks. ok is false when there is none.
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
	if tree.N < n {
		db.log.Warn("passing on a checksum database answer unproven and uncached: it is beyond the latest signed tree", "db", db.name, "rel", req.rel, "tree", tree.N)
		return tree, false
	}
	return tree, true
}

// tileReader reads the tiles of a proof (a tlog.TileReader): from the
// cache, else from the upstream. Tiles that the proof authenticates are
// cached by save, once the tree that proves them is adopted.
type tileReader struct {
	db    *DB
	ctx   context.Context
	known map[tlog.Tile][]byte // tiles already fetched, not yet proven

	mu     sync.Mutex
	proven map[tlog.Tile][]byte // tiles authenticated, not yet cached
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
	r.mu.Lock()
	data, ok := r.proven[t]
	r.mu.Unlock()
	if ok {
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

// SaveTiles keeps the tiles a proof authenticated, for save: the tree
// that they were authenticated against may still turn out to be a fork's.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proven == nil {
		r.proven = make(map[tlog.Tile][]byte)
	}
	for i, t := range tiles {
		r.proven[t] = data[i]
	}
}

// save caches the tiles the proofs authenticated.
func (r *tileReader) save() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, data := range r.proven {
		r.db.writeCache(request{rel: t.Path(), kind: kindTile, tile: t}, data)
	}
}
