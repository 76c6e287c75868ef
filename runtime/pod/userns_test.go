package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/pinns"
)

func usernsPod(name string, mode runtimeapi.NamespaceMode, uids, gids []*runtimeapi.IDMapping) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: mode, Uids: uids, Gids: gids}
	return cfg
}

func idmaps(ctr, host, n uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: ctr, HostId: host, Length: n}}
}

// withUserns gives the fake runc what runc ≥ 1.2 reports.
func withUserns(e *env) {
	on := true
	e.hs.byName["runc"].Info.Features = &features.Features{Linux: &features.Linux{
		Namespaces:      []string{"user", "net"},
		MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &on}},
	}}
}

// TestUserNSRequestsRefused: every malformed or unsupported user
// namespace request is refused before anything is made, naming the
// field (the critest specs ask for the first four).
func TestUserNSRequestsRefused(t *testing.T) {
	e := newEnv(t)
	two := append(idmaps(0, 1000, 100000), idmaps(0, 2000, 100000)...)
	hostNet := usernsPod("hn", runtimeapi.NamespaceMode_POD, idmaps(0, 100000, 65536), idmaps(0, 100000, 65536))
	hostNet.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	for name, tc := range map[string]struct {
		cfg  *runtimeapi.PodSandboxConfig
		want error
	}{
		"CONTAINER mode":      {usernsPod("a", runtimeapi.NamespaceMode_CONTAINER, nil, nil), errdefs.ErrInvalidArgument},
		"TARGET mode":         {usernsPod("b", runtimeapi.NamespaceMode_TARGET, nil, nil), errdefs.ErrInvalidArgument},
		"two mappings":        {usernsPod("c", runtimeapi.NamespaceMode_POD, two, two), errdefs.ErrInvalidArgument},
		"root unmapped":       {usernsPod("d", runtimeapi.NamespaceMode_POD, idmaps(1, 1000, 100000), idmaps(1, 1000, 100000)), errdefs.ErrInvalidArgument},
		"host root mapped":    {usernsPod("e", runtimeapi.NamespaceMode_POD, idmaps(0, 0, 65536), idmaps(0, 0, 65536)), errdefs.ErrInvalidArgument},
		"overflow":            {usernsPod("f", runtimeapi.NamespaceMode_POD, idmaps(0, 1<<32-10, 65536), idmaps(0, 100000, 65536)), errdefs.ErrInvalidArgument},
		"NODE with mappings":  {usernsPod("g", runtimeapi.NamespaceMode_NODE, idmaps(0, 1000, 10), nil), errdefs.ErrInvalidArgument},
		"host network":        {hostNet, errdefs.ErrInvalidArgument},
		"runtime without any": {usernsPod("h", runtimeapi.NamespaceMode_POD, idmaps(0, 100000, 65536), idmaps(0, 100000, 65536)), errdefs.ErrFailedPrecondition},
	} {
		_, err := e.m.RunPodSandbox(context.Background(), tc.cfg, "")
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "userns_options") {
			t.Errorf("%s: %v, want %v naming userns_options", name, err, tc.want)
		}
	}
	if e.shims.spawned != 0 {
		t.Errorf("%d shims spawned for refused pods", e.shims.spawned)
	}
	e.wantClean("refused pods")
}

// TestUserNSPod: a pod with a user namespace has it pinned with its
// network, IPC and UTS namespaces inside it; its containers join it with
// the kubelet's mappings, see their layers through idmapped mounts, and
// one asking for another user namespace is refused.
func TestUserNSPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chowns the pod's files to its root")
	}
	e := newEnv(t)
	withUserns(e)
	e.cfg.Security.UnprivilegedPorts = true
	ctx := context.Background()
	cfg := usernsPod("u", runtimeapi.NamespaceMode_POD, idmaps(0, 100000, 65536), idmaps(0, 200000, 65536))
	cfg.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
	podID, err := e.m.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	user := e.m.pinnedNS(podID, pinns.User)
	if _, err := os.Stat(user); err != nil {
		t.Fatalf("user namespace not pinned: %v", err)
	}
	var st os.FileInfo
	if st, err = os.Stat(filepath.Join(e.m.podDir(podID), "hosts")); err != nil {
		t.Fatal(err)
	}
	if uid, gid := fileOwner(st); uid != 100000 || gid != 200000 {
		t.Errorf("/etc/hosts of the pod belongs to %d:%d, want the pod's root 100000:200000", uid, gid)
	}
	// Set up by entering what the user namespace owns, not by unsharing
	// new namespaces on a thread (which would not be the pod's).
	if got := strings.Join(e.ns.entered, " "); !strings.Contains(got, "ipc:ipcns") || !strings.Contains(got, "uts:utsns") || !strings.Contains(got, "net:"+podID) {
		t.Errorf("entered %q, want the pod's ipc, uts and net namespaces", got)
	}

	c := ctrConfig("app")
	c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions}
	id, err := e.m.CreateContainer(ctx, podID, c)
	if err != nil {
		t.Fatal(err)
	}
	s := e.bundleSpec(id)
	if len(s.Linux.Namespaces) == 0 || s.Linux.Namespaces[0] != (specs.LinuxNamespace{Type: specs.UserNamespace, Path: user}) {
		t.Errorf("namespaces %v, want the pinned user namespace first", s.Linux.Namespaces)
	}
	if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0] != (specs.LinuxIDMapping{ContainerID: 0, HostID: 100000, Size: 65536}) ||
		len(s.Linux.GIDMappings) != 1 || s.Linux.GIDMappings[0].HostID != 200000 {
		t.Errorf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if st, err = os.Stat(filepath.Join(e.m.ctrRootDir(), id, "upper")); err != nil {
		t.Fatal(err)
	}
	if uid, gid := fileOwner(st); uid != 100000 || gid != 200000 {
		t.Errorf("the container's / belongs to %d:%d, want the pod's root", uid, gid)
	}
	// The idmapped layers are gone once the overlay holds them.
	if ents, _ := os.ReadDir(e.m.idmapStaging()); len(ents) > 0 {
		t.Errorf("idmapped layer mounts left: %v", ents)
	}

	other := ctrConfig("other")
	other.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idmaps(0, 300000, 65536), Gids: idmaps(0, 300000, 65536)},
	}}
	if _, err := e.m.CreateContainer(ctx, podID, other); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "userns_options") {
		t.Errorf("container leaving its pod's user namespace: %v", err)
	}
	host := ctrConfig("host")
	host.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE},
	}}
	if _, err := e.m.CreateContainer(ctx, podID, host); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("container asking for the node's user namespace in a pod with one: %v", err)
	}
	if err := e.m.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	e.wantClean("a removed pod with a user namespace")
}

func fileOwner(fi os.FileInfo) (uid, gid uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}
