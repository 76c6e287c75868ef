package spec

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
)

// FuzzContainerSpec builds specs from arbitrary CRI container and pod
// configs (protobuf bytes): bad input must be an error, never a panic.
func FuzzContainerSpec(f *testing.F) {
	seedCtr, _ := proto.Marshal(&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Command: []string{"sh"},
		Mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/nonexistent", Readonly: true, RecursiveReadOnly: true}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: -1, OomScoreAdj: -1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 5}, Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL", ""}}, Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "relative"}},
		},
	})
	seedPod, _ := proto.Marshal(&runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: 2, Pid: 3}}},
	})
	f.Add(seedCtr, seedPod, "1000:www-data")
	f.Add([]byte{}, []byte{}, "")
	root := f.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\nwww-data:x:33:33::/:/bin/sh\n"), 0o644)
	f.Fuzz(func(t *testing.T, ctrRaw, podRaw []byte, user string) {
		var ctr runtimeapi.ContainerConfig
		var pod runtimeapi.PodSandboxConfig
		if proto.Unmarshal(ctrRaw, &ctr) != nil || proto.Unmarshal(podRaw, &pod) != nil {
			return
		}
		// Host paths in mounts would be created on this machine: keep the
		// fuzzer inside its temporary directory.
		for _, m := range ctr.Mounts {
			m.HostPath = filepath.Join(root, "mnt", filepath.Clean("/"+m.HostPath))
		}
		ctr.Devices = nil
		img := &v1.ConfigFile{Config: v1.Config{User: user, Cmd: []string{"sh"}}}
		p := &Pod{ID: "pod", Config: &pod, NetNS: "/netns", PausePid: 1}
		h := Host{CgroupDriver: "cgroupfs", CgroupMode: host.CgroupV1, Bounding: ^uint64(0)}
		_, _, _ = ForContainer(Target{Kind: "runc", OCIVersion: "1.0.2"}, h, p, Container{ID: "c", Config: &ctr, Image: img, Rootfs: root})
		_, _ = Sandbox(Target{Kind: "runc", OCIVersion: "1.0.2"}, h, p, img, root)
	})
}
