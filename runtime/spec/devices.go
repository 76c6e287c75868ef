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
	var st unix.Stat_t
	if err := unix.Stat(hostPath, &st); err != nil {
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
		UID:      ptr(uint32(0)),
		GID:      ptr(uint32(0)),
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

func addDevices(s *specs.Spec, devices []*runtimeapi.Device, privileged bool) error {
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := hostDevices("/dev")
		if err != nil {
			return err
		}
		s.Linux.Devices = append(s.Linux.Devices, hostDevs...)
	}
	for _, d := range devices {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		dev, err := deviceAt(d.HostPath, d.ContainerPath)
		if err != nil {
			return errdefs.InvalidArgument("device %s: %v", d.HostPath, err)
		}
		s.Linux.Devices = append(s.Linux.Devices, dev)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: dev.Type, Major: ptr(dev.Major), Minor: ptr(dev.Minor), Access: perms,
		})
	}
	return nil
}

func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch p {
			case "/dev/pts", "/dev/mqueue", "/dev/shm":
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || d.Type()&os.ModeDevice == 0 {
			return nil
		}
		if dev, err := deviceAt(p, p); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	return out, err
}
