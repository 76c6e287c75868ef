package pod

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// volumeOwner names the layer lease of a container's image volume.
func volumeOwner(ctrID string, i int) string { return ctrID + "/volume/" + strconv.Itoa(i) }

// mountImageVolumes mounts, read-only, the image of every image-volume
// mount of cfg under bundle, and returns the host source of each by
// container path. release undoes what was done, also on error.
func (m *Manager) mountImageVolumes(ctrID, bundle string, cfg *runtimeapi.ContainerConfig, im *idmap) (sources map[string]string, refs map[string]string, release func(), err error) {
	sources, refs = map[string]string{}, map[string]string{}
	release = func() {
		_ = m.removeDir(filepath.Join(bundle, "volumes"))
		_ = m.images.Release(ctrID + "/volume")
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	for i, mnt := range cfg.GetMounts() {
		ref := mnt.GetImage().GetImage()
		if ref == "" {
			continue
		}
		if !mnt.Readonly {
			return nil, nil, release, errdefs.InvalidArgument("image volume %s must be read-only", mnt.ContainerPath)
		}
		img, err := m.images.Get(ref)
		if err != nil {
			return nil, nil, release, fmt.Errorf("image volume %s: %w", mnt.ContainerPath, err)
		}
		owner := volumeOwner(ctrID, i)
		lowers, err := m.images.Lease(owner, img.ID)
		if err != nil {
			return nil, nil, release, err
		}
		dir := filepath.Join(bundle, "volumes", strconv.Itoa(i))
		if err := m.mountReadOnly(lowers, dir, im); err != nil {
			return nil, nil, release, err
		}
		src := dir
		if sub := mnt.GetImageSubPath(); sub != "" {
			if src, err = within(dir, sub); err != nil {
				return nil, nil, release, errdefs.InvalidArgument("image volume %s: subPath %q: %v", mnt.ContainerPath, sub, err)
			}
		}
		sources[filepath.Clean(mnt.ContainerPath)] = src
		refs[filepath.Clean(mnt.ContainerPath)] = img.ID
	}
	return sources, refs, release, nil
}

// within resolves sub under root, refusing anything that leaves it.
func within(root, sub string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(root, filepath.Clean("/"+sub)))
	if err != nil {
		return "", err
	}
	if p != root && !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("leaves the image")
	}
	return p, nil
}
