package image

import (
	"strings"

	"github.com/distribution/reference"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Ref is a normalised image reference, as the kubelet writes them:
// "busybox" is docker.io/library/busybox:latest.
type Ref struct {
	// Repo is the normalised repository, e.g. "docker.io/library/busybox".
	Repo string
	// Tag is empty for digest references.
	Tag string
	// Digest is "sha256:..." for digest references, else empty.
	Digest string
}

// ParseRef normalises s. A reference with both a tag and a digest keeps the
// digest only: the digest is what gets pulled.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, errdefs.InvalidArgument("empty image reference")
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, errdefs.InvalidArgument("image reference %q: %v", s, err)
	}
	r := Ref{Repo: named.Name()}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest().String()
		return r, nil
	}
	r.Tag = "latest"
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	return r, nil
}

// String is the canonical form: repo:tag or repo@digest.
func (r Ref) String() string {
	if r.Digest != "" {
		return r.Repo + "@" + r.Digest
	}
	return r.Repo + ":" + r.Tag
}

// Domain is the registry host of the reference.
func (r Ref) Domain() string {
	domain, _, _ := strings.Cut(r.Repo, "/")
	return domain
}

// Path is the repository path inside the registry.
func (r Ref) Path() string {
	_, p, _ := strings.Cut(r.Repo, "/")
	return p
}

// DigestRef is repo@digest.
func (r Ref) DigestRef(digest string) string { return r.Repo + "@" + digest }
