package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/selinux"
)

// TestInfoSaysLSMs: crictl info tells whether SELinux and AppArmor are
// applied.
func TestInfoSaysLSMs(t *testing.T) {
	e := newEnv(t)
	info := e.m.Info(context.Background())
	if info["selinux"] != false || info["apparmor"] != false {
		t.Errorf("info on a node without LSMs: selinux=%v apparmor=%v", info["selinux"], info["apparmor"])
	}
	e.m.host.SELinux, e.m.host.AppArmor = true, true
	info = e.m.Info(context.Background())
	if info["selinux"] != true || info["apparmor"] != true {
		t.Errorf("info with both: selinux=%v apparmor=%v", info["selinux"], info["apparmor"])
	}
}

// TestCreateContainerRelabels: with SELinux on, CreateContainer gives the
// mounts that ask for it, and the pod's files, the container's mount
// label; the host's own directories are refused.
func TestCreateContainerRelabels(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("security.* attributes need root")
	}
	vol := t.TempDir()
	if err := unix.Lsetxattr(vol, "security.selinux", []byte("probe"), 0); err != nil {
		t.Skipf("no security.* attributes here: %v", err)
	}
	e := newEnv(t)
	e.m.host.SELinux = true
	podID := e.runPod("p")
	cfg := ctrConfig("c")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol, SelinuxRelabel: true}}
	if _, err := e.m.CreateContainer(context.Background(), podID, cfg); err != nil {
		t.Fatal(err)
	}
	l := selinux.Label(vol)
	if !strings.HasPrefix(l, "system_u:object_r:container_file_t:s0:c") {
		t.Errorf("volume label %q, want the container's mount label", l)
	}
	if got := selinux.Label(filepath.Join(e.m.podDir(podID), "hosts")); got != l {
		t.Errorf("the pod's hosts file: label %q, want %q", got, l)
	}

	bad := ctrConfig("d")
	bad.Mounts = []*runtimeapi.Mount{{ContainerPath: "/host-etc", HostPath: "/etc", SelinuxRelabel: true}}
	if _, err := e.m.CreateContainer(context.Background(), podID, bad); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "/etc") {
		t.Errorf("relabel of /etc: %v, want InvalidArgument", err)
	}
	if selinux.Label("/etc") == l {
		t.Error("/etc was relabeled")
	}
}
