package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/archive"
	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/store"
)

// Auth carries the credentials of a PullImageRequest.
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 "user:password"
	IdentityToken string
	RegistryToken string
	// ServerAddress, when set, is the registry host the credentials are for.
	ServerAddress string
}

func (a *Auth) key() string {
	if a == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken, a.ServerAddress}, "\x00")))
	return hex.EncodeToString(sum[:8])
}

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

// endpoint is one place to pull a repository from.
type endpoint struct {
	host   string
	plain  bool // plain HTTP allowed
	mirror bool
}

func (s *Store) endpoints(ref Ref) []endpoint {
	var eps []endpoint
	for _, m := range s.opts.Mirrors[ref.Domain()] {
		if ep, err := config.ParseEndpoint(m); err == nil {
			eps = append(eps, endpoint{host: ep.Host, plain: ep.PlainHTTP || s.insecure(ep.Host), mirror: true})
		}
	}
	return append(eps, endpoint{host: ref.Domain(), plain: s.insecure(ref.Domain())})
}

func (s *Store) insecure(host string) bool { return slices.Contains(s.opts.InsecureRegistries, host) }

// nameRef builds the go-containerregistry reference of ref at ep.
func nameRef(ref Ref, ep endpoint) (name.Reference, error) {
	var opts []name.Option
	if ep.plain {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(ep.host+"/"+ref.Path(), opts...)
	if err != nil {
		return nil, errdefs.InvalidArgument("image reference %q: %v", ref, err)
	}
	if ref.Digest != "" {
		return repo.Digest(ref.Digest), nil
	}
	return repo.Tag(ref.Tag), nil
}

func (s *Store) authenticator(auth *Auth, ep endpoint) authn.Authenticator {
	if auth == nil {
		return authn.Anonymous
	}
	// Credentials belong to the image's registry, or to the host they name:
	// never hand them to a mirror they were not meant for.
	target := hostOf(auth.ServerAddress)
	if (target == "" && ep.mirror) || (target != "" && !sameHost(target, ep.host)) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: auth.Username, Password: auth.Password, Auth: auth.Auth,
		IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken,
	})
}

func sameHost(a, b string) bool { return a == b || isDockerHub(a) && isDockerHub(b) }

func isDockerHub(h string) bool {
	return h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io"
}

// hostOf extracts the host of a server address such as
// "https://index.docker.io/v1/" or "registry.example:5000".
func hostOf(addr string) string {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	host, _, _ := strings.Cut(addr, "/")
	return host
}

func (s *Store) transport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	// A registry that accepts the connection and then says nothing is as
	// stalled as one that stops sending a layer.
	t.ResponseHeaderTimeout = s.opts.ProgressTimeout
	return t
}

// resolved is a manifest found at some endpoint.
type resolved struct {
	img       v1.Image
	topDigest string // digest the reference resolved to (index or manifest)
	ep        endpoint
}

func (s *Store) resolve(ctx context.Context, ref Ref, auth *Auth) (*resolved, error) {
	var errs []error
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		platform.Variant = "v7"
	}
	for _, ep := range s.endpoints(ref) {
		nref, err := nameRef(ref, ep)
		if err != nil {
			return nil, err
		}
		desc, err := remote.Get(nref,
			remote.WithContext(ctx),
			remote.WithAuth(s.authenticator(auth, ep)),
			remote.WithTransport(s.transport()),
			remote.WithPlatform(platform),
			remote.WithUserAgent("berth"),
		)
		if err != nil {
			s.log.Debug("resolve failed", "ref", ref.String(), "endpoint", ep.host, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", ep.host, err))
			continue
		}
		if ref.Digest != "" && desc.Digest.String() != ref.Digest {
			errs = append(errs, fmt.Errorf("%s: served %s for %s", ep.host, desc.Digest, ref.Digest))
			continue
		}
		switch desc.MediaType {
		case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
			return nil, errdefs.FailedPrecondition("image %s: Docker schema 1 manifests are not supported", ref)
		}
		img, err := desc.Image()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep.host, err))
			continue
		}
		return &resolved{img: img, topDigest: desc.Digest.String(), ep: ep}, nil
	}
	return nil, classify(ref, errs)
}

// classify turns the failures of every endpoint into one error: not found
// when the registry said so, registry-unavailable when none could be
// reached, the registry's own answer otherwise.
func classify(ref Ref, errs []error) error {
	all := errors.Join(errs...)
	unavailable := len(errs) > 0
	for _, err := range errs {
		if !isUnavailable(err) {
			unavailable = false
		}
	}
	if unavailable {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrRegistryUnavailable, all)
	}
	// The last endpoint is the registry itself: its answer decides.
	last := errs[len(errs)-1]
	if isNotFound(last) {
		return errdefs.NotFound("image %s: %v", ref, all)
	}
	if strings.Contains(last.Error(), "no child with platform") {
		return errdefs.NotFound("image %s has no manifest for linux/%s: %v", ref, runtime.GOARCH, all)
	}
	return fmt.Errorf("pull %s: %w", ref, all)
}

func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// errStalled cancels a pull that made no progress for the progress timeout.
var errStalled = errors.New("no progress")

func isUnavailable(err error) bool {
	if errors.Is(err, errStalled) || errors.Is(err, errdefs.ErrRegistryUnavailable) {
		return true
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500 || terr.StatusCode == http.StatusTooManyRequests
	}
	var nerr net.Error
	var operr *net.OpError
	return errors.As(err, &nerr) || errors.As(err, &operr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ECONNRESET)
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

	// Hold the chain against collection from here to the commit.
	s.lease(chain)
	defer func() {
		s.unlease(chain)
		if err != nil {
			s.dropUncommitted(chain)
		}
	}()

	records, err := s.fetchLayers(ctx, ref, res, manifest.Layers, diffIDs, chain, prog)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return nil, s.fetchErr(ctx, ref, err)
	}
	if _, err := s.writeBlob(rawConfig); err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	if _, err := s.writeBlob(rawManifest); err != nil {
		return nil, s.fetchErr(ctx, ref, err)
	}
	hook("blobs-written")
	img = &Image{ID: id, Size: size, Chain: chain, Manifest: "sha256:" + hexSum(rawManifest), Pulled: time.Now().UTC()}
	if err := s.commit(ref, res.topDigest, img, records); err != nil {
		return nil, err
	}
	hook("after-commit")
	s.log.Info("pulled image", "ref", ref.String(), "id", id, "from", res.ep.host, "bytes", prog.done.Load(), "duration", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func hexSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fetchErr classifies a failure after the manifest was found.
func (s *Store) fetchErr(ctx context.Context, ref Ref, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrResourceExhausted, err)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return fmt.Errorf("pull %s: %w: no data for %s", ref, errdefs.ErrRegistryUnavailable, s.opts.ProgressTimeout)
	}
	if isUnavailable(err) {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrRegistryUnavailable, err)
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

func (s *Store) lease(chain []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chain {
		s.leased[c]++
	}
}

// dropUncommitted removes what a failed pull unpacked: directories of
// chain's layers that have no record and that no other pull holds. (A
// full disk wants the room back now, not at the next collection.)
func (s *Store) dropUncommitted(chain []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chain {
		if s.leased[c] > 0 {
			continue
		}
		var recorded bool
		if err := s.db.View(func(tx *store.Tx) error { recorded = tx.Has(bucketLayers, c); return nil }); err != nil || recorded {
			continue
		}
		if err := removeLayerDir(s.layerDir(dirName(c))); err != nil {
			s.log.Warn("removing a failed pull's layer", "chain", c, "err", err)
		}
	}
}

func (s *Store) unlease(chain []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chain {
		if s.leased[c]--; s.leased[c] <= 0 {
			delete(s.leased, c)
		}
	}
}

// commit records the image and its new layers in one transaction and
// points ref at it.
func (s *Store) commit(ref Ref, topDigest string, img *Image, records []*layer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *store.Tx) error {
		for _, l := range records {
			if l != nil && !tx.Has(bucketLayers, l.ChainID) {
				if err := tx.Put(bucketLayers, l.ChainID, l); err != nil {
					return err
				}
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

// fetchLayers downloads and unpacks the layers the store lacks, at most
// MaxConcurrentDownloads at once, and returns the records of all layers.
func (s *Store) fetchLayers(ctx context.Context, ref Ref, res *resolved, descs []v1.Descriptor, diffIDs, chain []string, prog *progress) ([]*layer, error) {
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

func (s *Store) existingLayer(chainID string) (*layer, bool) {
	var l layer
	err := s.db.View(func(tx *store.Tx) error { return tx.Get(bucketLayers, chainID, &l) })
	if err != nil {
		return nil, false
	}
	if _, err := os.Stat(s.layerDir(l.Dir)); err != nil {
		return nil, false
	}
	return &l, true
}

// unpack streams one layer: download, digest check, decompression, diffID
// check and extraction in one pass, into a temporary directory that is
// renamed into place only when all of it checked out.
func (s *Store) unpack(ctx context.Context, img v1.Image, desc v1.Descriptor, diffID, chainID string, parents func() ([]string, error), prog *progress) (*layer, error) {
	final := s.layerDir(dirName(chainID))
	if l, ok := s.existingLayer(chainID); ok {
		return l, nil
	}
	// A directory with no record: an earlier pull of this chain finished
	// unpacking but not committing. Rebuild it: nothing vouches for it.
	if err := removeLayerDir(final); err != nil {
		return nil, err
	}
	cl, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := cl.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	counted := &countingReader{r: rc, prog: prog}
	br := bufio.NewReaderSize(counted, 256<<10)
	dec, err := decompress(br)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	h := sha256.New()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	stats, err := archive.Apply(ctx, io.TeeReader(dec, h), tmp, archive.Options{Parents: parents})
	if err != nil {
		return nil, err
	}
	// Read the compressed stream to its end: the registry client checks
	// the blob digest there.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, err
	}
	if err := rc.Close(); err != nil {
		return nil, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return nil, fmt.Errorf("uncompressed digest %s does not match diff ID %s", got, diffID)
	}
	hook("layer-unpacked")
	// Make the files durable before the metadata that vouches for them.
	if err := syncfs(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	hook("layer-renamed")
	s.log.Debug("unpacked layer", "chain", chainID, "bytes", stats.Bytes)
	return &layer{ChainID: chainID, DiffID: diffID, Dir: dirName(chainID), Bytes: stats.Bytes, Inodes: stats.Inodes}, nil
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

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
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// progress tracks bytes received by one pull.
type progress struct {
	done, total atomic.Int64
	last        atomic.Int64 // unix nanos of the last byte
}

func (p *progress) touch() { p.last.Store(time.Now().UnixNano()) }

// watch cancels the pull when no byte arrived for timeout, and reports
// progress every few seconds.
func (p *progress) watch(ctx context.Context, cancel context.CancelCauseFunc, timeout time.Duration, report func(done, total int64)) {
	tick := time.NewTicker(min(time.Second, timeout/4+time.Millisecond))
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, p.last.Load())) > timeout {
				cancel(errStalled)
				return
			}
			if now.Sub(lastReport) >= 5*time.Second {
				lastReport = now
				report(p.done.Load(), p.total.Load())
			}
		}
	}
}

type countingReader struct {
	r    io.Reader
	prog *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		hook("mid-layer")
		c.prog.done.Add(int64(n))
		c.prog.touch()
	}
	return n, err
}

// testHook, set only by tests, is called at the named points of a pull so
// that a test can crash the process there.
var testHook func(point string)

func hook(point string) {
	if testHook != nil {
		testHook(point)
	}
}
