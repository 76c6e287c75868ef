package pod

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/image"
)

// The kubelet creates containers by image ID (what PullImage answered)
// and puts the name the user wrote in user_specified_image; pod status
// shows what ContainerStatus.image says. So, as containerd, berth reports
// a name there, not the ID: the name given when it is one, else the
// user's name when it is one of the image's, else the image's first tag.

// imageNames are the image name and the digested reference (repo@digest)
// that status reports for a container created from spec, which resolved
// to img.
func imageNames(spec *runtimeapi.ImageSpec, img *image.Image) (name, ref string) {
	name = spec.GetImage()
	if !namesImage(name, img) {
		switch user := normalized(spec.GetUserSpecifiedImage()); {
		case user != "" && namesImage(user, img):
			name = user
		case len(img.RepoTags) > 0:
			name = img.RepoTags[0]
		case len(img.RepoDigests) > 0:
			name = img.RepoDigests[0]
		}
	}
	return name, repoDigest(name, img)
}

// namesImage reports whether ref is one of img's tags or digests.
func namesImage(ref string, img *image.Image) bool {
	n := normalized(ref)
	return n != "" && (slices.Contains(img.RepoTags, n) || slices.Contains(img.RepoDigests, n))
}

// normalized is ref in the image store's form, "" if it is no name.
func normalized(ref string) string {
	if ref == "" {
		return ""
	}
	r, err := image.ParseRef(ref)
	if err != nil {
		return ""
	}
	return r.String()
}

// repoDigest is img's digest in the repository of name (an image pulled
// from two registries has one digest in each), else its first, else its
// ID.
func repoDigest(name string, img *image.Image) string {
	if r, err := image.ParseRef(name); err == nil {
		for _, d := range img.RepoDigests {
			if strings.HasPrefix(d, r.Repo+"@") {
				return d
			}
		}
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

// isImageID reports whether ref is the image ID id, or a prefix of it
// (as crictl users type), with or without "sha256:".
func isImageID(ref, id string) bool {
	hex := strings.TrimPrefix(ref, "sha256:")
	if hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
		return false
	}
	return strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hex)
}

// imageAnnotation is the io.kubernetes.cri.image-name of the OCI spec:
// the user's name, else the reported one, as containerd.
func imageAnnotation(spec *runtimeapi.ImageSpec, name string) string {
	if u := spec.GetUserSpecifiedImage(); u != "" {
		return u
	}
	return name
}

// statusImage is the container's image as status and list report it:
// the ImageSpec CreateContainer was given (user_specified_image, runtime
// handler and annotations kept) under the resolved name, with its digest
// reference and ID. Containers of earlier versions recorded the kubelet's
// image ID as the name; those are resolved here, once.
func (m *Manager) statusImage(c *container) (spec *runtimeapi.ImageSpec, ref, id string) {
	rec := c.snapshot()
	if isImageID(rec.ImageName, rec.ImageID) {
		if img, err := m.images.Get(rec.ImageID); err == nil {
			rec.ImageName, rec.ImageRef = imageNames(c.cfg.GetImage(), img)
			c.mu.Lock()
			c.rec.ImageName, c.rec.ImageRef = rec.ImageName, rec.ImageRef
			c.mu.Unlock()
		}
	}
	spec = &runtimeapi.ImageSpec{}
	if given := c.cfg.GetImage(); given != nil {
		spec = proto.Clone(given).(*runtimeapi.ImageSpec)
	}
	spec.Image = rec.ImageName
	return spec, rec.ImageRef, rec.ImageID
}
