package nri

import (
	"slices"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
)

func TestSpecGen(t *testing.T) {
	s := &specs.Spec{}
	g := &specGen{s: s, oomFloor: -500}
	g.AddProcessEnv("A", "1")
	g.AddProcessEnv("B", "2")
	g.AddProcessEnv("A", "3")
	if !slices.Equal(s.Process.Env, []string{"A=3", "B=2"}) {
		t.Errorf("env = %v", s.Process.Env)
	}
	g.SetProcessOOMScoreAdj(-1000)
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("OOM score adjustment below berthd's floor: %d", *s.Process.OOMScoreAdj)
	}
	g.AddDevice(specs.LinuxDevice{Path: "/dev/x", Major: 1})
	g.AddDevice(specs.LinuxDevice{Path: "/dev/x", Major: 2})
	g.AddDevice(specs.LinuxDevice{Path: "/dev/y"})
	g.RemoveDevice("/dev/y")
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Major != 2 {
		t.Errorf("devices = %v", s.Linux.Devices)
	}
	if err := g.AddOrReplaceLinuxNamespace("network", "/run/netns/a"); err != nil {
		t.Fatal(err)
	}
	if err := g.AddOrReplaceLinuxNamespace("net", "/run/netns/b"); err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Namespaces) != 1 || s.Linux.Namespaces[0] != (specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/b"}) {
		t.Errorf("namespaces = %v", s.Linux.Namespaces)
	}
	if err := g.AddOrReplaceLinuxNamespace("bogus", ""); err == nil {
		t.Error("an unknown namespace type accepted")
	}
	if err := g.RemoveLinuxNamespace("network"); err != nil || len(s.Linux.Namespaces) != 0 {
		t.Errorf("remove namespace: %v %v", err, s.Linux.Namespaces)
	}
	g.AddLinuxResourcesHugepageLimit("2MB", 1)
	g.AddLinuxResourcesHugepageLimit("2MB", 2)
	if len(s.Linux.Resources.HugepageLimits) != 1 || s.Linux.Resources.HugepageLimits[0].Limit != 2 {
		t.Errorf("hugepages = %v", s.Linux.Resources.HugepageLimits)
	}
	if err := g.SetLinuxRootPropagation("rshared"); err != nil || s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("root propagation: %v", err)
	}
	if err := g.SetLinuxRootPropagation("sideways"); err == nil {
		t.Error("an invalid root propagation accepted")
	}
	g.AddMount(specs.Mount{Destination: "/a"})
	g.AddMount(specs.Mount{Destination: "/b"})
	g.RemoveMount("/a")
	if m := g.Mounts(); len(m) != 1 || m[0].Destination != "/b" {
		t.Errorf("mounts = %v", m)
	}
}

func TestAdjustRefusals(t *testing.T) {
	n := &NRI{cgroups: host.CgroupV1}
	adj := &api.ContainerAdjustment{}
	adj.AddLinuxUnified("memory.high", "1M")
	if err := n.adjust(&specs.Spec{Process: &specs.Process{}}, adj, nil); err == nil {
		t.Error("cgroup v2 settings accepted on a cgroup v1 node")
	}
	adj = &api.ContainerAdjustment{}
	adj.SetLinuxBlockIOClass("slow")
	if err := n.adjust(&specs.Spec{Process: &specs.Process{}}, adj, nil); err == nil {
		t.Error("a block I/O class accepted (and dropped)")
	}
	adj = &api.ContainerAdjustment{}
	adj.RemoveAnnotation("io.kubernetes.cri.container-type")
	if err := n.adjust(&specs.Spec{Process: &specs.Process{}}, adj, nil); err == nil {
		t.Error("a plugin removed berth's own annotation")
	}
	adj = &api.ContainerAdjustment{}
	adj.SetLinuxRDTClass("gold")
	s := &specs.Spec{Process: &specs.Process{}}
	if err := n.adjust(s, adj, nil); err != nil || s.Linux.IntelRdt == nil || s.Linux.IntelRdt.ClosID != "gold" {
		t.Errorf("RDT class: %v %+v", err, s.Linux)
	}
}

func TestResources(t *testing.T) {
	cri := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 1 << 20,
		CpusetCpus: "0", HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4}}, Unified: map[string]string{"memory.high": "1"}}
	r := fromCRIResources(cri)
	if r.Cpu.Shares.GetValue() != 512 || r.Cpu.Quota.GetValue() != 50000 || r.Memory.Limit.GetValue() != 1<<20 || r.Memory.Swap != nil || r.Cpu.Cpus != "0" {
		t.Errorf("fromCRIResources = %v", r)
	}
	if fromCRIResources(nil) != nil {
		t.Error("no resources became some")
	}
	u := &api.LinuxResources{Cpu: &api.LinuxCPU{Mems: "1", Shares: api.UInt64(1024)}, Memory: &api.LinuxMemory{Swap: api.Int64(2 << 20)},
		HugepageLimits: []*api.HugepageLimit{{PageSize: "2MB", Limit: 8}, {PageSize: "1GB", Limit: 1}}, Unified: map[string]string{"cpu.weight": "5"}}
	got, err := mergeResources(cri, u)
	if err != nil {
		t.Fatal(err)
	}
	if got.CpuShares != 1024 || got.CpuQuota != 50000 || got.CpusetCpus != "0" || got.CpusetMems != "1" || got.MemorySwapLimitInBytes != 2<<20 ||
		len(got.HugepageLimits) != 2 || got.HugepageLimits[0].Limit != 8 || len(got.Unified) != 2 {
		t.Errorf("mergeResources = %v", got)
	}
	if cri.CpuShares != 512 || cri.HugepageLimits[0].Limit != 4 || len(cri.Unified) != 1 {
		t.Errorf("mergeResources changed its input: %v", cri)
	}
	for _, bad := range []*api.LinuxResources{
		{Pids: &api.LinuxPids{Limit: 1}},
		{BlockioClass: api.String("x")},
		{RdtClass: api.String("x")},
		{Memory: &api.LinuxMemory{Reservation: api.Int64(1)}},
		{Cpu: &api.LinuxCPU{RealtimeRuntime: api.Int64(1)}},
	} {
		if _, err := mergeResources(cri, bad); err == nil {
			t.Errorf("live update of %v accepted", bad)
		}
	}
}

func TestConvert(t *testing.T) {
	oom := 10
	s := &specs.Spec{
		Annotations: map[string]string{"a": "spec", "b": "spec"},
		Process:     &specs.Process{Args: []string{"x"}, Env: []string{"E=1"}, OOMScoreAdj: &oom, User: specs.User{UID: 5, GID: 6}},
		Linux:       &specs.Linux{CgroupsPath: "/berth/p/c", Resources: &specs.LinuxResources{}},
	}
	c := Container{ID: "c", PodID: "p", Spec: s, State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 3,
		ImageName: "busybox:1.36", ImageRef: "docker.io/library/busybox@sha256:abc", ImageID: "sha256:def",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Annotations: map[string]string{"b": "cri"},
			CDIDevices: []*runtimeapi.CDIDevice{{Name: "v.com/d=1"}}}}
	got := toContainer(c)
	if got.Name != "app" || got.State != api.ContainerState_CONTAINER_STOPPED || got.ExitCode != 3 || got.Annotations["a"] != "spec" || got.Annotations["b"] != "cri" ||
		got.Linux.CgroupsPath != "/berth/p/c" || got.Linux.OomScoreAdj.GetValue() != 10 || got.User.Uid != 5 || len(got.CDIDevices) != 1 ||
		got.Image.Digest != "sha256:abc" || got.Image.ConfigDigest != "sha256:def" {
		t.Errorf("toContainer = %v", got)
	}
	p := Pod{ID: "p", Handler: "runc", Pid: 7, IPs: []string{"10.0.0.2"}, CgroupParent: "/berth/p",
		Namespaces: map[specs.LinuxNamespaceType]string{specs.UTSNamespace: "/u", specs.NetworkNamespace: "/n"},
		Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns", Uid: "u1"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2}}}}
	pod := toPod(p)
	if pod.Name != "web" || pod.Uid != "u1" || pod.Namespace != "ns" || pod.Pid != 7 || pod.Linux.CgroupParent != "/berth/p" ||
		pod.Linux.PodResources.Cpu.Shares.GetValue() != 2 || len(pod.Linux.Namespaces) != 2 || pod.Linux.Namespaces[0].Type != "network" {
		t.Errorf("toPod = %v", pod)
	}
}
