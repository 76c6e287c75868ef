package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// TestContainerNamespacesWithinPod: a container asking for a network,
// IPC or PID namespace its pod contradicts is refused, naming the field,
// rather than given the pod's; asking for nothing (POD) follows the pod.
func TestContainerNamespacesWithinPod(t *testing.T) {
	const (
		pod       = runtimeapi.NamespaceMode_POD
		container = runtimeapi.NamespaceMode_CONTAINER
		node      = runtimeapi.NamespaceMode_NODE
		target    = runtimeapi.NamespaceMode_TARGET
	)
	for _, tc := range []struct {
		name     string
		pod, ctr *runtimeapi.NamespaceOption
		field    string // "" when accepted
	}{
		{"host network from a pod with its own", nil, &runtimeapi.NamespaceOption{Network: node}, "namespace_options.network"},
		{"own network in a host-network pod", &runtimeapi.NamespaceOption{Network: node}, &runtimeapi.NamespaceOption{Network: container}, "namespace_options.network"},
		{"host IPC from a pod with its own", &runtimeapi.NamespaceOption{Ipc: container}, &runtimeapi.NamespaceOption{Ipc: node}, "namespace_options.ipc"},
		{"own IPC in a host-IPC pod", &runtimeapi.NamespaceOption{Ipc: node}, &runtimeapi.NamespaceOption{Ipc: container}, "namespace_options.ipc"},
		{"own PID in a host-PID pod", &runtimeapi.NamespaceOption{Pid: node}, &runtimeapi.NamespaceOption{Pid: container}, "namespace_options.pid"},
		{"target PID in a host-PID pod", &runtimeapi.NamespaceOption{Pid: node}, &runtimeapi.NamespaceOption{Pid: target, TargetId: "x"}, "namespace_options.pid"},
		{"nothing said in a host pod", &runtimeapi.NamespaceOption{Network: node, Ipc: node, Pid: node}, nil, ""},
		{"the pod's modes repeated", &runtimeapi.NamespaceOption{Network: node, Ipc: node, Pid: node}, &runtimeapi.NamespaceOption{Network: node, Ipc: node, Pid: node}, ""},
		{"CONTAINER network shares the pod's, as containerd", nil, &runtimeapi.NamespaceOption{Network: container, Ipc: container}, ""},
		{"own PID in a pod with its own", &runtimeapi.NamespaceOption{Pid: container}, &runtimeapi.NamespaceOption{Pid: container}, ""},
		{"host PID from a pod with its own", nil, &runtimeapi.NamespaceOption{Pid: node}, "namespace_options.pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.pod}
			cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: tc.ctr}}}
			err := checkContainerRequest(f.h, f.pod, cfg)
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.field != "" && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), "LinuxContainerSecurityContext."+tc.field)):
				t.Errorf("err = %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
	// ForContainer refuses it too.
	f := newFixture(t)
	cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: node},
	}}}
	if _, _, err := f.container(t, cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ForContainer with a container on the node's network in a pod with its own: %v", err)
	}
}

// TestUnifiedNeedsCgroupV2: unified (cgroup v2 files) on a node whose
// containers are in cgroup v1 hierarchies is refused, not dropped.
func TestUnifiedNeedsCgroupV2(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		Unified: map[string]string{"memory.high": "1000000"},
	}}}
	for mode, refuse := range map[host.CgroupMode]bool{host.CgroupV1: true, host.CgroupHybrid: true, host.CgroupV2: false} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t)
			f.h.CgroupMode = mode
			s, _, err := f.container(t, cfg)
			if refuse {
				if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(fmt.Sprint(err), "LinuxContainerResources.unified") {
					t.Errorf("err = %v, want FailedPrecondition naming LinuxContainerResources.unified", err)
				}
				return
			}
			if err != nil || s.Linux.Resources.Unified["memory.high"] != "1000000" {
				t.Errorf("cgroup v2: unified %v, err %v", s.Linux.Resources.Unified, err)
			}
		})
	}
	if err := CheckResources(Host{CgroupMode: host.CgroupV1}, nil); err != nil {
		t.Errorf("no resources: %v", err)
	}
}
