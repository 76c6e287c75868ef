package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// deviceTree makes a directory of device nodes as a device plugin hands
// one over, with what must not be taken from it: symlinks (to a node and
// to a directory outside), a FIFO, a regular file, the console and the
// directories containerd skips.
func deviceTree(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make device nodes")
	}
	dir := t.TempDir()
	mk := func(rel string, mode uint32, major, minor uint32) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, mode, int(unix.Mkdev(major, minor))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(p, mode&0o777); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	mk("card0", unix.S_IFCHR|0o660, 226, 0)
	mk("by-path/renderD128", unix.S_IFCHR|0o666, 226, 128)
	mk("block0", unix.S_IFBLK|0o640, 7, 0)
	mk("pts/0", unix.S_IFCHR|0o620, 136, 0)
	mk("shm/x", unix.S_IFCHR|0o600, 1, 3)
	mk("console", unix.S_IFCHR|0o600, 5, 1)
	mk("fifo", unix.S_IFIFO|0o600, 0, 0)
	if err := os.Chown(filepath.Join(dir, "card0"), 0, 44); err != nil { // video
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", filepath.Join(dir, "null-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev", filepath.Join(dir, "dev-link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func devicePaths(devs []specs.LinuxDevice) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.Path)
	}
	slices.Sort(out)
	return out
}

// TestDeviceDirectory: a directory adds every node below it, at the same
// place under the container path, and nothing reached through a symlink.
func TestDeviceDirectory(t *testing.T) {
	dir := deviceTree(t)
	devs, err := requestedDevices(dir, "/dev/dri")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/dev/dri/block0", "/dev/dri/by-path/renderD128", "/dev/dri/card0"}
	if got := devicePaths(devs); !slices.Equal(got, want) {
		t.Fatalf("devices %v, want %v", got, want)
	}
	for _, d := range devs {
		switch d.Path {
		case "/dev/dri/card0":
			if d.Type != "c" || d.Major != 226 || d.Minor != 0 || *d.UID != 0 || *d.GID != 44 || *d.FileMode != 0o660 {
				t.Errorf("card0: %+v uid %d gid %d mode %v", d, *d.UID, *d.GID, *d.FileMode)
			}
		case "/dev/dri/block0":
			if d.Type != "b" || d.Major != 7 {
				t.Errorf("block0: %+v", d)
			}
		}
	}
	// A symlink to the directory is followed (it is what was asked for).
	link := filepath.Join(t.TempDir(), "dri")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if devs, err := requestedDevices(link, "/dev/dri"); err != nil || len(devs) != 3 {
		t.Errorf("through a symlink: %v %v", devicePaths(devs), err)
	}
	// No container path: the host's.
	if devs, err := requestedDevices(dir, ""); err != nil || !slices.Contains(devicePaths(devs), filepath.Join(dir, "card0")) {
		t.Errorf("without a container path: %v %v", devicePaths(devs), err)
	}
}

func TestDeviceRequestRefused(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"missing": filepath.Join(dir, "nope"), "regular file": file, "relative": "dev/null"} {
		if _, err := requestedDevices(p, "/dev/x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// An empty directory adds nothing, as in containerd.
	if devs, err := requestedDevices(dir+"/", "/dev/x"); err != nil || len(devs) != 0 {
		t.Errorf("a directory without nodes: %v %v", devs, err)
	}
}

// TestDeviceOwnership: with device_ownership_from_security_context, the
// container's non-zero run_as_user/run_as_group own the requested nodes;
// without it (or with ids of 0) the host node's owner does.
func TestDeviceOwnership(t *testing.T) {
	dir := deviceTree(t)
	cfg := func(uid, gid *int64) *runtimeapi.ContainerConfig {
		sc := &runtimeapi.LinuxContainerSecurityContext{}
		if uid != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *uid}
		}
		if gid != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *gid}
		}
		return &runtimeapi.ContainerConfig{
			Devices: []*runtimeapi.Device{{HostPath: filepath.Join(dir, "card0"), ContainerPath: "/dev/card0", Permissions: "rw"}},
			Linux:   &runtimeapi.LinuxContainerConfig{SecurityContext: sc},
		}
	}
	for _, tc := range []struct {
		name     string
		on       bool
		uid, gid *int64
		wantU    uint32
		wantG    uint32
	}{
		{"off", false, i64(1000), i64(2000), 0, 44},
		{"on", true, i64(1000), i64(2000), 1000, 2000},
		{"on, user only", true, i64(1000), nil, 1000, 44},
		{"on, root", true, i64(0), i64(0), 0, 44},
		{"on, unset", true, nil, nil, 0, 44},
	} {
		s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
		if err := addDevices(Host{DeviceOwnershipFromSecurityContext: tc.on}, s, cfg(tc.uid, tc.gid), false); err != nil {
			t.Fatal(err)
		}
		if len(s.Linux.Devices) != 1 {
			t.Fatalf("%s: devices %+v", tc.name, s.Linux.Devices)
		}
		d := s.Linux.Devices[0]
		if *d.UID != tc.wantU || *d.GID != tc.wantG {
			t.Errorf("%s: owner %d:%d, want %d:%d", tc.name, *d.UID, *d.GID, tc.wantU, tc.wantG)
		}
		r := s.Linux.Resources.Devices
		if len(r) != 1 || !r[0].Allow || r[0].Access != "rw" || *r[0].Major != 226 || *r[0].Minor != 0 {
			t.Errorf("%s: cgroup rules %+v", tc.name, r)
		}
	}
	// Privileged: the host's devices keep their owners.
	s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if err := addDevices(Host{DeviceOwnershipFromSecurityContext: true}, s, cfg(i64(1000), nil), true); err != nil {
		t.Fatal(err)
	}
	for _, d := range s.Linux.Devices {
		if d.Path == "/dev/null" && *d.UID != 0 {
			t.Errorf("privileged /dev/null owned by %d", *d.UID)
		}
	}
}
