package spec

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// deviceAt describes the host device at hostPath for containerPath.
func deviceAt(hostPath, containerPath string) (specs.LinuxDevice, error) {
	return nodeAt(hostPath, containerPath, unix.Stat)
}

// nodeAt describes the device node at hostPath, as stat (Stat or Lstat)
// sees it, for containerPath; it is owned as on the host, as containerd
// and the OCI runtimes' own device lists have it.
func nodeAt(hostPath, containerPath string, stat func(string, *unix.Stat_t) error) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := stat(hostPath, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("not a device node")
	}
	mode := os.FileMode(st.Mode & 0o777)
	return specs.LinuxDevice{
		Path:     containerPath,
		Type:     typ,
		Major:    int64(unix.Major(st.Rdev)),
		Minor:    int64(unix.Minor(st.Rdev)),
		FileMode: &mode,
		UID:      ptr(st.Uid),
		GID:      ptr(st.Gid),
	}, nil
}

// defaultDeviceRules deny every device but the ones every container has.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	// Every default device is a character device.
	rule := func(major, minor int64) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rwm"}
		if minor >= 0 {
			r.Minor = &minor
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		rule(1, 3),    // null
		rule(1, 5),    // zero
		rule(1, 7),    // full
		rule(1, 8),    // random
		rule(1, 9),    // urandom
		rule(5, 0),    // tty
		rule(5, 1),    // console
		rule(5, 2),    // ptmx
		rule(136, -1), // pts/*
		rule(10, 200), // net/tun
	}
}

// addDevices adds the host's devices to a privileged container and the
// devices cfg asks for: a device node, or a directory of them.
func addDevices(h Host, s *specs.Spec, cfg *runtimeapi.ContainerConfig, privileged bool) error {
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := devicesIn("/dev", "/dev")
		if err != nil {
			return err
		}
		s.Linux.Devices = append(s.Linux.Devices, hostDevs...)
	}
	owner := deviceOwner(h, cfg.GetLinux().GetSecurityContext())
	for _, d := range cfg.GetDevices() {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		devs, err := requestedDevices(d.HostPath, d.ContainerPath)
		if err != nil {
			return err
		}
		for _, dev := range devs {
			owner(&dev)
			s.Linux.Devices = append(s.Linux.Devices, dev)
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: ptr(dev.Major), Minor: ptr(dev.Minor), Access: perms,
			})
		}
	}
	return nil
}

// requestedDevices are the nodes a CRI device names: the node at hostPath
// (a symlink to one, as device plugins give /dev/disk/by-id/..., is
// followed), or every node below it when it is a directory (as containerd
// does: /dev/dri, /dev/snd), each at the same place under containerPath.
func requestedDevices(hostPath, containerPath string) ([]specs.LinuxDevice, error) {
	if !filepath.IsAbs(hostPath) {
		return nil, errdefs.InvalidArgument("device %q: the host path must be absolute", hostPath)
	}
	if containerPath == "" {
		containerPath = hostPath
	}
	resolved, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		return nil, errdefs.InvalidArgument("device %s: %v", hostPath, err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return nil, errdefs.InvalidArgument("device %s: %v", hostPath, err)
	}
	if fi.IsDir() {
		return devicesIn(resolved, containerPath)
	}
	dev, err := deviceAt(resolved, containerPath)
	if err != nil {
		return nil, errdefs.InvalidArgument("device %s: %v", hostPath, err)
	}
	return []specs.LinuxDevice{dev}, nil
}

// deviceOwner returns what sets a requested device's owner in the
// container: with device_ownership_from_security_context, a non-zero
// run_as_user / run_as_group (as containerd: a username, the image's user
// or a zero id leave the host node's owner); without it, nothing.
func deviceOwner(h Host, sc *runtimeapi.LinuxContainerSecurityContext) func(*specs.LinuxDevice) {
	if !h.DeviceOwnershipFromSecurityContext {
		return func(*specs.LinuxDevice) {}
	}
	uid, gid := uint32(sc.GetRunAsUser().GetValue()), uint32(sc.GetRunAsGroup().GetValue()) //nolint:gosec // ids the kubelet validated
	return func(d *specs.LinuxDevice) {
		if uid != 0 {
			d.UID = ptr(uid)
		}
		if gid != 0 {
			d.GID = ptr(gid)
		}
	}
}

// skippedDeviceDirs are not device directories of their own (mounts
// every container gets, or container managers' state), as containerd
// skips them.
var skippedDeviceDirs = map[string]bool{
	"pts": true, "shm": true, "fd": true, "mqueue": true, ".lxc": true, ".lxd-mounts": true, ".udev": true,
}

// devicesIn lists the character and block devices below dir, each at its
// relative place under containerDir. No symlink is followed, to a node or
// to a directory, so nothing outside dir is reached. Entries that vanish
// or cannot be read while walking are skipped; only an unreadable dir
// itself fails.
func devicesIn(dir, containerDir string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil
		}
		if d.IsDir() {
			if p != dir && skippedDeviceDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		// A console is the container's own (its terminal), never the host's.
		if d.Type()&os.ModeDevice == 0 || d.Name() == "console" {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil
		}
		if dev, err := nodeAt(p, filepath.Join(containerDir, rel), unix.Lstat); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	if err != nil {
		return nil, errdefs.InvalidArgument("device directory %s: %v", dir, err)
	}
	return out, nil
}
