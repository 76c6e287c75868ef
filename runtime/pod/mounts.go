package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountShm mounts the pod's /dev/shm tmpfs at dir, owned by the pod's
// root.
func (m *Manager) mountShm(dir string, u *userNS) error {
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a container's /dev/shm mount point: any container user traverses it
		return err
	}
	opts := "mode=1777,size=65536k"
	if u != nil {
		opts += fmt.Sprintf(",uid=%d,gid=%d", u.rootUID(), u.rootGID())
	}
	if err := m.mounts.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount pod shm: %w", err)
	}
	return nil
}

// mountRootfs mounts an overlay of lower (top first) with a writable layer
// in rwDir at target. The upper directory's mode is the container's / (so
// 0755); rwDir and target's parent (the bundle) keep everyone else out.
//
// In a pod with a user namespace (im set) the layers are seen through
// idmapped mounts and the upper layer belongs to the pod's root, so root
// in the pod owns what root in the image owns.
func (m *Manager) mountRootfs(lower []string, rwDir, target string, im *idmap) error {
	upper, work := filepath.Join(rwDir, "upper"), filepath.Join(rwDir, "work")
	for _, d := range []string{rwDir, work, filepath.Dir(target)} {
		if err := PrivateDir(d); err != nil {
			return err
		}
	}
	for _, d := range []string{upper, target} {
		if err := os.MkdirAll(d, 0o755); err != nil { //nolint:gosec // the rootfs and its upper layer: any container user traverses them
			return err
		}
	}
	if im != nil {
		if err := os.Lchown(upper, im.uid, im.gid); err != nil {
			return err
		}
		mapped, done, err := m.idmapLayers(lower, im)
		if err != nil {
			return err
		}
		defer done()
		lower = mapped
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("image has too many layers for one overlay mount (%d)", len(lower))
	}
	if err := m.mounts.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

// mountReadOnly mounts the layers (top first) read-only at dir: one layer
// is bound, several are an overlay without an upper layer.
func (m *Manager) mountReadOnly(lowers []string, dir string, im *idmap) error {
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a rootfs mount point: any container user traverses it
		return err
	}
	if im != nil {
		if len(lowers) == 1 {
			return m.mounts.IDMapped(lowers[0], dir, im.userns)
		}
		mapped, done, err := m.idmapLayers(lowers, im)
		if err != nil {
			return err
		}
		defer done()
		lowers = mapped
	}
	if len(lowers) == 1 {
		if err := m.mounts.Mount(lowers[0], dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind image volume: %w", err)
		}
		if err := m.mounts.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = m.unmount(dir)
			return fmt.Errorf("make image volume read-only: %w", err)
		}
		return nil
	}
	if err := m.mounts.Mount("overlay", dir, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		return fmt.Errorf("mount image volume: %w", err)
	}
	return nil
}

// unmount detaches whatever is mounted at path; nothing mounted is fine.
func (m *Manager) unmount(path string) error {
	for {
		err := m.mounts.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
		// Stacked mounts: repeat until none is left.
	}
}

// removeDir unmounts anything left under dir and removes it.
func (m *Manager) removeDir(dir string) error {
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	mounts, err := m.mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := m.unmount(mounts[i]); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir, outermost first.
func (m *Manager) mountsUnder(dir string) ([]string, error) {
	all, err := m.mounts.MountPoints()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mp := range all {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}
