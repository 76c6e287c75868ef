package spec

import (
	"errors"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestUserNamespaceSpec: in a pod with a user namespace every container
// and the sandbox container join the pinned one with its mappings, the
// pinned IPC and UTS namespaces too; a volume's mappings make an
// idmapped mount, and are refused outside such a pod or, on an image
// volume, when they are not the pod's.
func TestUserNamespaceSpec(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 165536, Size: 65536}}
	cri := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 165536, Length: 65536}}
	vol := func(m *runtimeapi.Mount) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{m}}
	}

	if _, _, err := f.container(t, vol(&runtimeapi.Mount{ContainerPath: "/v", HostPath: dir, UidMappings: cri, GidMappings: cri})); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("idmapped volume in a pod without a user namespace: %v", err)
	}

	f.pod.UserNS, f.pod.UIDs, f.pod.GIDs = "/pods/p/userns", maps, maps
	f.pod.IPCNS, f.pod.UTSNS = "/pods/p/ipcns", "/pods/p/utsns"
	s, _, err := f.container(t, vol(&runtimeapi.Mount{ContainerPath: "/v", HostPath: dir, UidMappings: cri, GidMappings: cri}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Namespaces[0] != (specs.LinuxNamespace{Type: specs.UserNamespace, Path: f.pod.UserNS}) || !slices.Equal(s.Linux.UIDMappings, maps) || !slices.Equal(s.Linux.GIDMappings, maps) {
		t.Errorf("container: namespaces %v, mappings %v %v", s.Linux.Namespaces, s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if m := mountAt(s, "/v"); m == nil || !slices.Equal(m.UIDMappings, maps) || !slices.Equal(m.GIDMappings, maps) {
		t.Errorf("idmapped volume = %+v", m)
	}
	if _, _, err := f.container(t, vol(&runtimeapi.Mount{ContainerPath: "/v", HostPath: dir, UidMappings: cri})); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("uid mappings without gid mappings: %v", err)
	}
	other := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 0, Length: 65536}}
	img := &runtimeapi.Mount{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "data"}, Readonly: true, UidMappings: other, GidMappings: other}
	imgCfg := &v1.ConfigFile{Config: v1.Config{Cmd: []string{"sh"}}}
	_, _, err = ForContainer(f.rt, f.h, f.pod, Container{ID: "c", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Mounts: []*runtimeapi.Mount{img}},
		Image: imgCfg, Rootfs: f.root, ImageVolumes: map[string]string{"/img": dir}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("image volume mapped otherwise than the pod: %v", err)
	}

	f.pod.PausePid = 0
	sb, err := Sandbox(f.rt, f.h, f.pod, imgCfg, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: f.pod.UserNS}, {Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: f.pod.IPCNS}, {Type: specs.UTSNamespace, Path: f.pod.UTSNS}, {Type: specs.NetworkNamespace, Path: f.pod.NetNS}}
	if !slices.Equal(sb.Linux.Namespaces, want) || sb.Hostname != "" || !slices.Equal(sb.Linux.UIDMappings, maps) {
		t.Errorf("sandbox: namespaces %v, hostname %q, mappings %v", sb.Linux.Namespaces, sb.Hostname, sb.Linux.UIDMappings)
	}
}
