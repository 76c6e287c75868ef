package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/archive"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/store"
)

// hold marks chain as held by an in-flight pull (not a lease: leases are
// the records of what containers use).
func (s *Store) hold(chain []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chain {
		s.held[c]++
	}
}

// unhold ends a pull's hold on chain. A layer unpacked for a chain that
// no pull holds any more is recorded by now, or it is removed at once: a
// failed pull's layers (a full disk wants the room back now, not at the
// next collection), or a duplicate of a layer another pull recorded first.
func (s *Store) unhold(chain []string) {
	var drop []string
	s.mu.Lock()
	for _, c := range chain {
		if s.held[c]--; s.held[c] > 0 {
			continue
		}
		delete(s.held, c)
		l := s.unpacked[c]
		if l == nil {
			continue
		}
		delete(s.unpacked, c)
		delete(s.claimed, l.Dir)
		if !s.recorded(l) {
			drop = append(drop, l.Dir)
		}
	}
	s.mu.Unlock()
	// Unclaimed and unrecorded, these directories are no one's.
	for _, d := range drop {
		if err := removeLayerDir(s.layerDir(d)); err != nil {
			s.log.Warn("removing an unrecorded layer", "dir", d, "err", err)
		}
	}
}

// recorded reports whether l's directory is the one recorded for its chain.
func (s *Store) recorded(l *layer) bool {
	var rec layer
	err := s.db.View(func(tx *store.Tx) error { return tx.Get(bucketLayers, l.ChainID, &rec) })
	if err != nil {
		// When in doubt (the database failed), keep the directory: the
		// collector removes it at the next start if nothing records it.
		return !errdefs.IsNotFound(err)
	}
	return rec.Dir == l.Dir
}

// fetchLayers downloads and unpacks the layers the store lacks, at most
// MaxConcurrentDownloads at once, and returns the records of all layers.
func (s *Store) fetchLayers(ctx context.Context, res *resolved, descs []v1.Descriptor, diffIDs, chain []string, prog *progress) ([]*layer, error) {
	records := make([]*layer, len(chain))
	done := make([]chan struct{}, len(chain))
	errs := make([]error, len(chain))
	sem := make(chan struct{}, s.opts.MaxConcurrentDownloads)
	var wg sync.WaitGroup
	// Slots are taken bottom-up, so a layer that waits for a lower one (a
	// hardlink into it) never holds the slot that lower one needs.
	for i := range chain {
		done[i] = make(chan struct{})
		if l, ok := s.existingLayer(chain[i]); ok {
			records[i] = l
			prog.total.Add(-descs[i].Size)
			close(done[i])
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			close(done[i])
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			defer close(done[i])
			parents := func() ([]string, error) {
				var dirs []string
				for j := i - 1; j >= 0; j-- {
					<-done[j]
					if records[j] == nil {
						return nil, fmt.Errorf("lower layer %d failed", j)
					}
					dirs = append(dirs, s.layerDir(records[j].Dir))
				}
				return dirs, nil
			}
			v, err, _ := s.layers.Do(chain[i], func() (any, error) {
				return s.unpack(ctx, res.img, descs[i], diffIDs[i], chain[i], parents, prog)
			})
			if err != nil {
				errs[i] = fmt.Errorf("layer %s: %w", descs[i].Digest, err)
				return
			}
			records[i] = v.(*layer)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return records, nil
}

// keepsRecord reports whether the chain of l is recorded already with a
// directory that is there (l's own, or another pull's that came first).
func (s *Store) keepsRecord(tx *store.Tx, l *layer) bool {
	var old layer
	if tx.Get(bucketLayers, l.ChainID, &old) != nil {
		return false
	}
	if old.Dir == l.Dir {
		return true
	}
	// Only a directory known to be gone is replaced: containers may have
	// the recorded one mounted.
	_, err := os.Stat(s.layerDir(old.Dir))
	return !errors.Is(err, fs.ErrNotExist)
}

// existingLayer finds the layer of chainID: recorded, or unpacked by an
// in-flight pull.
func (s *Store) existingLayer(chainID string) (*layer, bool) {
	var l layer
	err := s.db.View(func(tx *store.Tx) error { return tx.Get(bucketLayers, chainID, &l) })
	if err == nil {
		if _, err := os.Stat(s.layerDir(l.Dir)); err == nil {
			return &l, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.unpacked[chainID]
	return u, ok
}

// unpack makes the layer of chainID: one that exists, or a new one in a
// directory of its own, held for the pulls of chainID until they end.
func (s *Store) unpack(ctx context.Context, img v1.Image, desc v1.Descriptor, diffID, chainID string, parents func() ([]string, error), prog *progress) (*layer, error) {
	if l, ok := s.existingLayer(chainID); ok {
		return l, nil
	}
	dir, err := s.newLayerDir()
	if err != nil {
		return nil, err
	}
	l, err := s.fetchLayer(ctx, img, desc, diffID, parents, prog, dir)
	if err != nil {
		s.unclaim(dir)
		return nil, err
	}
	l.ChainID = chainID
	s.mu.Lock()
	s.unpacked[chainID] = l
	s.mu.Unlock()
	s.log.Debug("unpacked layer", "chain", chainID, "dir", dir, "bytes", l.Bytes)
	return l, nil
}

// fetchLayer streams one layer: download, decompression, digests and
// extraction in one pass, into a temporary directory that becomes
// layers/<dir> only when all of it checked out.
func (s *Store) fetchLayer(ctx context.Context, img v1.Image, desc v1.Descriptor, diffID string, parents func() ([]string, error), prog *progress, dir string) (*layer, error) {
	ls, err := openLayer(img, desc, prog)
	if err != nil {
		return nil, err
	}
	defer func() { _ = ls.Close() }()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := os.Chmod(tmp, 0o755); err != nil { //nolint:gosec // a layer is the root of containers of any user: 0755 as in images
		return nil, err
	}
	uncompressed := sha256.New()
	stats, err := archive.Apply(ctx, io.TeeReader(ls, uncompressed), tmp, archive.Options{Parents: parents})
	if err != nil {
		return nil, err
	}
	if err := ls.check(desc); err != nil {
		return nil, err
	}
	if got := "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)); got != diffID {
		return nil, fmt.Errorf("uncompressed digest %s does not match diff ID %s", got, diffID)
	}
	hook("layer-unpacked")
	// Make the files durable before the metadata that vouches for them.
	if err := syncfs(tmp); err != nil {
		return nil, err
	}
	if err := renameNoReplace(tmp, s.layerDir(dir)); err != nil {
		return nil, err
	}
	hook("layer-renamed")
	return &layer{DiffID: diffID, Dir: dir, Bytes: stats.Bytes, Inodes: stats.Inodes}, nil
}

// layerStream reads one layer decompressed, counting and hashing its
// compressed bytes on the way: the registry client checks the digest too,
// but what is put in place must not depend on that.
type layerStream struct {
	io.ReadCloser // decompressed
	rc            io.ReadCloser
	counted       *countingReader
	compressed    hash.Hash
	br            *bufio.Reader
}

func openLayer(img v1.Image, desc v1.Descriptor, prog *progress) (*layerStream, error) {
	cl, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := cl.Compressed()
	if err != nil {
		return nil, err
	}
	ls := &layerStream{rc: rc, compressed: sha256.New()}
	ls.counted = &countingReader{r: io.TeeReader(rc, ls.compressed), prog: prog}
	ls.br = bufio.NewReaderSize(ls.counted, 256<<10)
	if ls.ReadCloser, err = decompress(ls.br); err != nil {
		_ = rc.Close()
		return nil, err
	}
	return ls, nil
}

// check reads the compressed stream to its end and compares its size and
// digest with the manifest's.
func (ls *layerStream) check(desc v1.Descriptor) error {
	if _, err := io.Copy(io.Discard, ls.br); err != nil {
		return err
	}
	if err := ls.rc.Close(); err != nil {
		return err
	}
	if ls.counted.n != desc.Size {
		return fmt.Errorf("layer of %d bytes, the manifest says %d", ls.counted.n, desc.Size)
	}
	if got := "sha256:" + hex.EncodeToString(ls.compressed.Sum(nil)); got != desc.Digest.String() {
		return fmt.Errorf("compressed digest %s does not match %s", got, desc.Digest)
	}
	return nil
}

func (ls *layerStream) Close() error {
	_ = ls.ReadCloser.Close()
	return ls.rc.Close()
}

// renameNoReplace moves a finished layer into place, never over anything.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A filesystem without the flag; the name is fresh from the
		// sequence, so only a leftover could be there.
		if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rename %s: %s exists", from, to)
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return unix.Syncfs(int(f.Fd()))
}

// maxZstdWindow is the reference zstd decoder's default limit (window log
// 27): it decodes whatever plain "zstd -d" does.
const maxZstdWindow = 128 << 20

// decompress picks the decompressor by the stream's magic bytes (media
// types lie often enough).
func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// A frame names its window (up to the decoder's 512 MiB) or, in
		// one segment, its whole size as the window: hold both to what
		// the reference zstd decoder accepts by default.
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(maxZstdWindow))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// removeLayerDir removes an unpacked layer. Layers may hold read-only
// directories, which RemoveAll handles as root.
func removeLayerDir(dir string) error { return os.RemoveAll(dir) }

// newLayerDir claims a new layer directory name: the next number of the
// database's sequence, short so that overlayfs mount options with many
// lower directories stay within a page. The sequence is committed before
// the directory exists, so a name is never handed out twice.
func (s *Store) newLayerDir() (string, error) {
	var seq uint64
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		seq, err = tx.NextSequence(bucketLayers)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("layer directory: %w", err)
	}
	dir := strconv.FormatUint(seq, 10)
	s.mu.Lock()
	s.claimed[dir] = true
	s.mu.Unlock()
	return dir, nil
}

// unclaim gives up a claimed directory that was never filled.
func (s *Store) unclaim(dir string) {
	s.mu.Lock()
	delete(s.claimed, dir)
	s.mu.Unlock()
}
