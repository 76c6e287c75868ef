package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
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

// endpoint is one place to pull a repository from.
type endpoint struct {
	host     string
	plain    bool // plain HTTP allowed
	insecure bool // HTTPS without certificate verification
	mirror   bool
}

func (s *Store) endpoints(ref Ref) []endpoint {
	r := s.registries.Load()
	var eps []endpoint
	for _, m := range r.Mirrors[ref.Domain()] {
		if ep, err := config.ParseEndpoint(m); err == nil {
			insecure := r.insecure(ep.Host)
			eps = append(eps, endpoint{host: ep.Host, plain: ep.PlainHTTP || insecure, insecure: insecure, mirror: true})
		}
	}
	insecure := r.insecure(ref.Domain())
	return append(eps, endpoint{host: ref.Domain(), plain: insecure, insecure: insecure})
}

// Registries are where pulls go: mirrors and registries reached without
// certificate checks. They may change while berthd runs (SIGHUP).
type Registries struct {
	Mirrors            map[string][]string
	InsecureRegistries []string
}

func (r *Registries) insecure(host string) bool { return slices.Contains(r.InsecureRegistries, host) }

// SetRegistries replaces the mirrors and insecure registries; pulls that
// start from now on use them.
func (s *Store) SetRegistries(r Registries) { s.registries.Store(&r) }

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
		img, err := imageFor(desc, platform)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep.host, err))
			continue
		}
		return &resolved{img: img, topDigest: desc.Digest.String(), ep: ep}, nil
	}
	return nil, classify(ref, errs)
}

// errNoPlatform: an index has no manifest for this node's platform.
var errNoPlatform = errors.New("no manifest for this platform")

// imageFor is desc's image, or its index's child for platform (berth
// picks it, rather than go-containerregistry, whose "no child" error has
// no type to recognise).
func imageFor(desc *remote.Descriptor, platform v1.Platform) (v1.Image, error) {
	if !desc.MediaType.IsIndex() {
		return desc.Image()
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	for depth := 0; depth < 4; depth++ { // an index of indexes, bounded
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		child, ok := childFor(m, platform)
		if !ok {
			return nil, fmt.Errorf("%w: %s in index %s", errNoPlatform, platform, desc.Digest)
		}
		if !child.MediaType.IsIndex() {
			return idx.Image(child.Digest)
		}
		if idx, err = idx.ImageIndex(child.Digest); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: indexes nested too deep in %s", errNoPlatform, desc.Digest)
}

// childFor finds platform's manifest in an index (one without a platform
// is linux/amd64's, as go-containerregistry assumes).
func childFor(m *v1.IndexManifest, platform v1.Platform) (v1.Descriptor, bool) {
	for _, d := range m.Manifests {
		p := v1.Platform{OS: "linux", Architecture: "amd64"}
		if d.Platform != nil {
			p = *d.Platform
		}
		if p.Satisfies(platform) {
			return d, true
		}
	}
	return v1.Descriptor{}, false
}
