package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
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
	host     string
	plain    bool // plain HTTP allowed
	insecure bool // HTTPS without certificate verification
	mirror   bool
}

func (s *Store) endpoints(ref Ref) []endpoint {
	var eps []endpoint
	for _, m := range s.opts.Mirrors[ref.Domain()] {
		if ep, err := config.ParseEndpoint(m); err == nil {
			insecure := s.insecure(ep.Host)
			eps = append(eps, endpoint{host: ep.Host, plain: ep.PlainHTTP || insecure, insecure: insecure, mirror: true})
		}
	}
	insecure := s.insecure(ref.Domain())
	return append(eps, endpoint{host: ref.Domain(), plain: insecure, insecure: insecure})
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

// Manifests, indexes and configs are read whole into memory. containerd
// refuses manifests and indexes over 4 MiB (its MaxManifestSize); berth
// holds configs to the same bound.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 4 << 20
)

// transport is the HTTP transport for endpoint ep, whose host requests
// name as host.
func (s *Store) transport(ep endpoint, host string) http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	// A registry that accepts the connection and then says nothing is as
	// stalled as one that stops sending a layer.
	t.ResponseHeaderTimeout = s.opts.ProgressTimeout
	// What is counted and bounded must be what the registry sent: the
	// client must not inflate a gzip-encoded body on its own.
	t.DisableCompression = true
	rt := &registryTransport{host: host, plain: ep.plain || isLoopback(host), verified: t}
	if ep.insecure {
		u := t.Clone()
		u.TLSClientConfig = &tls.Config{}
		if t.TLSClientConfig != nil {
			u.TLSClientConfig = t.TLSClientConfig.Clone()
		}
		u.TLSClientConfig.InsecureSkipVerify = true
		rt.unverified = u
	}
	return rt
}

// registryTransport applies an endpoint's rules to the requests for its
// host: HTTPS without certificate checks only for an insecure registry,
// plain HTTP only where allowed (the registry client falls back to it on
// its own for private addresses), and manifests bounded in size. Other
// hosts (token servers, blob redirects) get the verifying transport.
type registryTransport struct {
	host       string
	plain      bool
	verified   http.RoundTripper
	unverified http.RoundTripper // nil unless the registry is insecure
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.verified
	if req.URL.Host == t.host {
		if req.URL.Scheme == "http" && !t.plain {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, fmt.Errorf("%s: plain HTTP is used only for insecure registries, http:// mirrors and loopback", t.host)
		}
		if t.unverified != nil {
			rt = t.unverified
		}
	}
	resp, err := rt.RoundTrip(req)
	if err != nil || !isManifest(req) {
		return resp, err
	}
	return capBody(resp, maxManifestSize)
}

// isManifest reports whether req, or the request it was redirected from,
// is for a manifest: /v2/<name>/manifests/<reference>.
func isManifest(req *http.Request) bool {
	for ; req != nil; req = redirectedFrom(req) {
		if path.Base(path.Dir(req.URL.Path)) == "manifests" {
			return true
		}
	}
	return false
}

func redirectedFrom(req *http.Request) *http.Request {
	if req.Response == nil {
		return nil
	}
	return req.Response.Request
}

// capBody refuses a response announced larger than limit and fails the
// reading of one that turns out larger.
func capBody(resp *http.Response, limit int64) (*http.Response, error) {
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, tooLarge(resp.Request, limit)
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, req: resp.Request, limit: limit}
	return resp, nil
}

type cappedBody struct {
	io.ReadCloser
	req         *http.Request
	limit, read int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if left := b.limit - b.read + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.ReadCloser.Read(p)
	if b.read += int64(n); b.read > b.limit {
		return n, tooLarge(b.req, b.limit)
	}
	return n, err
}

func tooLarge(req *http.Request, limit int64) error {
	return errdefs.InvalidArgument("%s %s: larger than the %d-byte limit", req.Method, req.URL.Redacted(), limit)
}

// isLoopback reports whether host is this machine, where plain HTTP is
// allowed as the registry client and containerd allow it.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
			remote.WithTransport(s.transport(ep, nref.Context().RegistryStr())),
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
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		return false
	}
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
	s.lease(chain)
	defer s.release(chain)

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

// release ends a pull's hold on chain. A layer unpacked for a chain that
// no pull holds any more is recorded by now, or it is removed at once: a
// failed pull's layers (a full disk wants the room back now, not at the
// next collection), or a duplicate of a layer another pull recorded first.
func (s *Store) release(chain []string) {
	var drop []string
	s.mu.Lock()
	for _, c := range chain {
		if s.leased[c]--; s.leased[c] > 0 {
			continue
		}
		delete(s.leased, c)
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
	defer ls.Close()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
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
		rc.Close()
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
	ls.ReadCloser.Close()
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
	defer f.Close()
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
	n    int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		hook("mid-layer")
		c.n += int64(n)
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
