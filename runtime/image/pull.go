package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/store"
)

// Pull fetches ref (normalised the way the kubelet does) and returns the
// stored image. Concurrent pulls of one reference share one download.
func (s *Store) Pull(ctx context.Context, refStr string, auth *Auth) (*Image, error) {
	ref, err := ParseRef(refStr)
	if err != nil {
		return nil, err
	}
	// The shared pull outlives a caller that gives up; the progress timeout
	// still ends a stalled one.
	ch := s.pulls.DoChan(ref.String()+"\x00"+auth.key(), func() (any, error) {
		return s.pull(context.WithoutCancel(ctx), ref, auth)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		img := *res.Val.(*Image)
		return &img, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) pull(ctx context.Context, ref Ref, auth *Auth) (img *Image, err error) {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{last: atomic.Int64{}}
	prog.touch()
	if s.opts.OnPull != nil {
		defer func() { s.opts.OnPull(prog.done.Load(), time.Since(start), err) }()
	}
	go prog.watch(ctx, cancel, s.opts.ProgressTimeout, func(done, total int64) {
		s.log.Info("pull progress", "ref", ref.String(), "bytes", done, "total", total)
	})

	res, err := s.resolve(ctx, ref, auth)
	if err != nil {
		return nil, err
	}
	manifest, err := res.img.Manifest()
	if err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	rawManifest, err := res.img.RawManifest()
	if err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	if err := checkSizes(ref, manifest); err != nil {
		return nil, err
	}
	rawConfig, err := res.img.RawConfigFile()
	if err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	if sum := sha256.Sum256(rawConfig); "sha256:"+hex.EncodeToString(sum[:]) != manifest.Config.Digest.String() {
		return nil, fmt.Errorf("image %s: config does not match digest %s", ref, manifest.Config.Digest)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(rawConfig, &cf); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", ref, err)
	}
	hook("resolved")
	if len(cf.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff IDs", ref, len(manifest.Layers), len(cf.RootFS.DiffIDs))
	}
	diffIDs := make([]string, len(cf.RootFS.DiffIDs))
	for i, d := range cf.RootFS.DiffIDs {
		diffIDs[i] = d.String()
	}
	chain := chainIDs(diffIDs)
	id := manifest.Config.Digest.String()
	size := manifest.Config.Size
	for _, l := range manifest.Layers {
		size += l.Size
		prog.total.Add(l.Size)
	}

	// Hold the chain, and the layers unpacked for it, against collection
	// and against other pulls from here to the commit.
	s.hold(chain)
	defer s.unhold(chain)

	records, err := s.fetchLayers(ctx, res, manifest.Layers, diffIDs, chain, prog)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return nil, s.fetchErr(ctx, ref, err)
	}
	if err := s.writeBlob(rawConfig); err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	if err := s.writeBlob(rawManifest); err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	hook("blobs-written")
	img = &Image{ID: id, Size: size, Chain: chain, Manifest: "sha256:" + hexSum(rawManifest), Pulled: time.Now().UTC(),
		Annotations: keptAnnotations(manifest.Annotations)}
	if err := s.commit(ref, res.topDigest, img, records); err != nil {
		return nil, err
	}
	hook("after-commit")
	s.log.Info("pulled image", "ref", ref.String(), "id", id, "from", res.ep.host, "bytes", prog.done.Load(), "duration", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// keptAnnotations are the manifest annotations recorded with an image:
// org.criu.checkpoint.* and CRI-O's io.kubernetes.cri-o.annotations.checkpoint.*,
// which mark an image holding a container checkpoint (as checkpointctl,
// Podman and buildah for CRI-O build them) that CreateContainer
// restores. Others stay in the manifest blob only, to keep records small.
func keptAnnotations(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "org.criu.checkpoint.") || strings.HasPrefix(k, "io.kubernetes.cri-o.annotations.checkpoint.") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// checkSizes refuses a manifest whose config is over the limit of what is
// read into memory, or whose sizes are negative (unknown to the registry
// client, which then reads without bound).
func checkSizes(ref Ref, m *v1.Manifest) error {
	if size := m.Config.Size; size < 0 || size > maxConfigSize {
		return errdefs.InvalidArgument("image %s: config of %d bytes (the limit is %d)", ref, size, maxConfigSize)
	}
	for _, l := range m.Layers {
		if l.Size < 0 {
			return errdefs.InvalidArgument("image %s: layer %s of %d bytes", ref, l.Digest, l.Size)
		}
	}
	return nil
}

func hexSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// commit records the image and its new layers in one transaction and
// points ref at it.
func (s *Store) commit(ref Ref, topDigest string, img *Image, records []*layer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *store.Tx) error {
		for _, l := range records {
			if l == nil || s.keepsRecord(tx, l) {
				continue
			}
			if err := tx.Put(bucketLayers, l.ChainID, l); err != nil {
				return err
			}
		}
		var old Image
		if tx.Get(bucketImages, img.ID, &old) == nil {
			img.RepoTags, img.RepoDigests = old.RepoTags, old.RepoDigests
		}
		names := []string{ref.DigestRef(topDigest)}
		img.RepoDigests = sortedUnique(append(img.RepoDigests, names[0]))
		if ref.Tag != "" {
			names = append(names, ref.String())
			img.RepoTags = sortedUnique(append(img.RepoTags, ref.String()))
		}
		for _, n := range names {
			// Moving a tag takes it from the image that had it.
			var prev string
			if tx.Get(bucketRefs, n, &prev) == nil && prev != img.ID {
				var other Image
				if tx.Get(bucketImages, prev, &other) == nil {
					other.RepoTags = slices.DeleteFunc(other.RepoTags, func(t string) bool { return t == n })
					other.RepoDigests = slices.DeleteFunc(other.RepoDigests, func(t string) bool { return t == n })
					if err := tx.Put(bucketImages, other.ID, &other); err != nil {
						return err
					}
				}
			}
			if err := tx.Put(bucketRefs, n, img.ID); err != nil {
				return err
			}
		}
		return tx.Put(bucketImages, img.ID, img)
	})
}

// testHook, set only by tests, is called at the named points of a pull so
// that a test can crash the process there.
var testHook func(point string)

func hook(point string) {
	if testHook != nil {
		testHook(point)
	}
}
