package pod

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// volumeOwner names the layer lease of a container's image volume.
func volumeOwner(ctrID string, i int) string { return ctrID + "/volume/" + strconv.Itoa(i) }

// mountImageVolumes mounts, read-only, the image of every image-volume
// mount of cfg under bundle, and returns the host source of each by
// container path. release undoes what was done, also on error.
func (m *Manager) mountImageVolumes(ctrID, bundle string, cfg *runtimeapi.ContainerConfig) (sources map[string]string, refs map[string]string, release func(), err error) {
	sources, refs = map[string]string{}, map[string]string{}
	release = func() {
		_ = removeDir(filepath.Join(bundle, "volumes"))
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
		if err := mountReadOnly(lowers, dir); err != nil {
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

// mountReadOnly mounts the layers (top first) read-only at dir: one layer
// is bound, several are an overlay without an upper layer.
func mountReadOnly(lowers []string, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if len(lowers) == 1 {
		if err := unix.Mount(lowers[0], dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind image volume: %w", err)
		}
		if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unmount(dir)
			return fmt.Errorf("make image volume read-only: %w", err)
		}
		return nil
	}
	if err := unix.Mount("overlay", dir, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		return fmt.Errorf("mount image volume: %w", err)
	}
	return nil
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
