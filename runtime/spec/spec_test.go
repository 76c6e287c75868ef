package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// rootfs makes a root filesystem with passwd and group files.
func rootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n")
	write("group", "root:x:0:\nwww-data:x:33:\nalice:x:1000:\nstaff:x:50:alice,www-data\nextra:x:50000:alice\n")
	return dir
}

func i64(v int64) *int64 { return &v }

func TestResolveUser(t *testing.T) {
	root := rootfs(t)
	for _, tc := range []struct {
		name   string
		req    UserRequest
		uid    uint32
		gid    uint32
		groups []uint32
		err    error
	}{
		{"default root", UserRequest{}, 0, 0, []uint32{0}, nil},
		{"image uid", UserRequest{ImageUser: "1002"}, 1002, 0, []uint32{0}, nil},
		{"image name with groups", UserRequest{ImageUser: "www-data"}, 33, 33, []uint32{33, 50}, nil},
		{"uid:gid", UserRequest{ImageUser: "1003:1004"}, 1003, 1004, []uint32{1004}, nil},
		{"name:gid", UserRequest{ImageUser: "www-data:1004"}, 33, 1004, []uint32{50, 1004}, nil},
		{"uid known in passwd", UserRequest{ImageUser: "1000"}, 1000, 1000, []uint32{50, 1000, 50000}, nil},
		{"run_as_user overrides", UserRequest{ImageUser: "www-data", RunAsUser: i64(1000)}, 1000, 1000, []uint32{50, 1000, 50000}, nil},
		{"run_as_username", UserRequest{RunAsUsername: "alice"}, 1000, 1000, []uint32{50, 1000, 50000}, nil},
		{"run_as_group", UserRequest{RunAsUser: i64(1000), RunAsGroup: i64(7)}, 1000, 7, []uint32{7, 50, 50000}, nil},
		{"supplemental merged", UserRequest{ImageUser: "alice", SupplementalGroups: []int64{9, 50}}, 1000, 1000, []uint32{9, 50, 1000, 50000}, nil},
		{"strict keeps /etc/group out", UserRequest{ImageUser: "alice", SupplementalGroups: []int64{9}, Strict: true}, 1000, 1000, []uint32{9, 1000}, nil},
		{"unknown name", UserRequest{ImageUser: "nobody-here"}, 0, 0, nil, errdefs.ErrInvalidArgument},
		{"unknown group name", UserRequest{ImageUser: "alice:nogroup"}, 0, 0, nil, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ResolveUser(root, tc.req)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
				t.Errorf("got %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.groups)
			}
		})
	}
}

func TestResolveUserDoesNotFollowEscapingSymlinks(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An image whose passwd points at the host's.
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveUser(root, UserRequest{ImageUser: "root"}); err == nil {
		t.Error("a name resolved through a symlink out of the rootfs")
	}
}

func TestCommandLine(t *testing.T) {
	img := &v1.Config{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		cmd, args, want []string
	}{
		{nil, nil, []string{"/entry", "default"}},
		{nil, []string{"a"}, []string{"/entry", "a"}},
		{[]string{"sh"}, nil, []string{"sh"}},
		{[]string{"sh"}, []string{"-c", "x"}, []string{"sh", "-c", "x"}},
	} {
		got, err := commandLine(&runtimeapi.ContainerConfig{Command: tc.cmd, Args: tc.args}, img)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("command %v args %v = %v, %v; want %v", tc.cmd, tc.args, got, err, tc.want)
		}
	}
	if _, err := commandLine(&runtimeapi.ContainerConfig{}, &v1.Config{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no command at all: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	caps := func(add, drop []string) []string {
		return containerCaps(&runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: add, DropCapabilities: drop}})
	}
	if got := caps(nil, nil); !slices.Equal(got, defaultCaps) {
		t.Errorf("default = %v", got)
	}
	if got := caps([]string{"sys_admin"}, []string{"CAP_KILL"}); !slices.Contains(got, "CAP_SYS_ADMIN") || slices.Contains(got, "CAP_KILL") {
		t.Errorf("add/drop = %v", got)
	}
	if got := caps([]string{"NET_ADMIN"}, []string{"ALL"}); !slices.Equal(got, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("drop ALL then add = %v", got)
	}
	if got := caps([]string{"ALL"}, []string{"CHOWN"}); len(got) != len(allCaps)-1 || slices.Contains(got, "CAP_CHOWN") {
		t.Errorf("add ALL then drop = %d caps", len(got))
	}
}

type fixture struct {
	rt   Target
	h    Host
	pod  *Pod
	root string
}

func newFixture(t *testing.T) *fixture {
	return &fixture{
		rt: Target{Kind: "runc", OCIVersion: "1.0.2-dev", Annotations: map[string]string{"handler/x": "1"}},
		h:  Host{CgroupDriver: "cgroupfs", CgroupMode: host.CgroupV1, OOMFloor: 0, Bounding: 1<<41 - 1},
		pod: &Pod{
			ID: "pod1", NetNS: "/run/berth/netns/pod1", PausePid: 4242,
			Config: &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
				Hostname: "p-host",
				Linux:    &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/pod-u", Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}},
			},
			Hostname: "/pod/hostname", Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm",
		},
		root: rootfs(t),
	}
}

func (f *fixture) container(t *testing.T, cfg *runtimeapi.ContainerConfig) (*specs.Spec, *User, error) {
	t.Helper()
	if cfg.Metadata == nil {
		cfg.Metadata = &runtimeapi.ContainerMetadata{Name: "c"}
	}
	img := &v1.ConfigFile{Config: v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "A=image"}, User: "www-data", WorkingDir: "/work"}}
	return ForContainer(f.rt, f.h, f.pod, Container{ID: "ctr1", Config: cfg, Image: img, ImageName: "busybox", Rootfs: f.root})
}

func mountAt(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func nsOf(s *specs.Spec, typ specs.LinuxNamespaceType) (specs.LinuxNamespace, bool) {
	for _, n := range s.Linux.Namespaces {
		if n.Type == typ {
			return n, true
		}
	}
	return specs.LinuxNamespace{}, false
}

func TestContainerSpecDefaults(t *testing.T) {
	f := newFixture(t)
	s, u, err := f.container(t, &runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("cri")}, {Key: "B", Value: []byte("2")}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "1.0.2-dev" {
		t.Errorf("ociVersion %q, want the handler's", s.Version)
	}
	if !slices.Equal(s.Process.Args, []string{"sh"}) || s.Process.Cwd != "/work" || u.UID != 33 {
		t.Errorf("process = %+v", s.Process)
	}
	for _, e := range []string{"PATH=/bin", "A=cri", "B=2", "HOSTNAME=p-host"} {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env lacks %s: %v", e, s.Process.Env)
		}
	}
	if s.Linux.CgroupsPath != "/kubepods/pod-u/ctr1" {
		t.Errorf("cgroupsPath %q", s.Linux.CgroupsPath)
	}
	for typ, want := range map[specs.LinuxNamespaceType]string{
		specs.PIDNamespace: "/proc/4242/ns/pid", specs.IPCNamespace: "/proc/4242/ns/ipc",
		specs.UTSNamespace: "/proc/4242/ns/uts", specs.NetworkNamespace: "/run/berth/netns/pod1", specs.MountNamespace: "",
	} {
		if n, ok := nsOf(s, typ); !ok || n.Path != want {
			t.Errorf("namespace %s = %+v (present %v), want path %q", typ, n, ok, want)
		}
	}
	for dst, src := range map[string]string{"/etc/hostname": "/pod/hostname", "/etc/hosts": "/pod/hosts", "/etc/resolv.conf": "/pod/resolv.conf", "/dev/shm": "/pod/shm"} {
		if m := mountAt(s, dst); m == nil || m.Source != src {
			t.Errorf("mount %s = %+v", dst, m)
		}
	}
	if !slices.Equal(s.Linux.MaskedPaths, defaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, defaultReadonlyPaths) {
		t.Error("default masked/readonly paths missing (maskedpaths.go)")
	}
	if s.Linux.Seccomp != nil {
		t.Error("no seccomp requested, yet a profile is set")
	}
	if s.Annotations[AnnContainerType] != ContainerTypeApp || s.Annotations[AnnSandboxID] != "pod1" || s.Annotations["handler/x"] != "1" {
		t.Errorf("annotations = %v", s.Annotations)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, defaultCaps) || len(s.Process.Capabilities.Inheritable) != 0 {
		t.Errorf("capabilities = %+v", s.Process.Capabilities)
	}
}

func TestContainerSpecSecurity(t *testing.T) {
	f := newFixture(t)
	profile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := func(s *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: s}}
	}

	s, _, err := f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, NoNewPrivs: true, ReadonlyRootfs: true}))
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	if s.Linux.Seccomp != nil {
		for _, sc := range s.Linux.Seccomp.Syscalls {
			if sc.Action == specs.ActAllow {
				allowed += len(sc.Names)
			}
		}
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || allowed < 250 || slices.ContainsFunc(s.Linux.Seccomp.Syscalls, func(sc specs.LinuxSyscall) bool {
		return sc.Action == specs.ActAllow && slices.Contains(sc.Names, "kexec_load")
	}) {
		t.Errorf("RuntimeDefault is not a real profile: default %v, %d syscalls allowed", s.Linux.Seccomp.DefaultAction, allowed)
	}
	if !s.Process.NoNewPrivileges || !s.Root.Readonly || !slices.Contains(mountAt(s, "/etc/hosts").Options, "ro") {
		t.Error("no_new_privs / readonly rootfs not applied")
	}

	s, _, err = f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}}))
	if err != nil || s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) != 1 {
		t.Errorf("localhost profile: %+v %v", s.Linux.Seccomp, err)
	}
	if _, _, err := f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent.json"}})); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("missing localhost profile: %v", err)
	}

	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	s, _, err = f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Process.Capabilities.Bounding) != len(allCaps) {
		t.Error("privileged container is still confined")
	}
	// A node without CAP_SYS_RESOURCE (24) cannot grant it.
	f.h.Bounding &^= 1 << 24
	s, _, err = f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true}))
	if err != nil || slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_RESOURCE") || len(s.Process.Capabilities.Bounding) != len(allCaps)-1 {
		t.Errorf("privileged caps on a node without CAP_SYS_RESOURCE: %v %v", s.Process.Capabilities.Bounding, err)
	}
	if m := mountAt(s, "/sys"); m == nil || slices.Contains(m.Options, "ro") {
		t.Errorf("privileged /sys = %+v", m)
	}

	s, _, err = f.container(t, sc(&runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/x"}, ReadonlyPaths: []string{}}))
	if err != nil || !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || !slices.Equal(s.Linux.ReadonlyPaths, defaultReadonlyPaths) {
		t.Errorf("requested masked paths: %v %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, err)
	}
}

func TestContainerSpecNamespaceModes(t *testing.T) {
	f := newFixture(t)
	ns := func(o *runtimeapi.NamespaceOption) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: o}}}
	}
	// Host network, IPC and PID are the pod's to choose; a container that
	// says nothing follows its pod.
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}}
	f.pod.NetNS = ""
	s, _, err := f.container(t, ns(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.NetworkNamespace, specs.UTSNamespace} {
		if _, ok := nsOf(s, typ); ok {
			t.Errorf("host namespaces: %s still private", typ)
		}
	}
	if m := mountAt(s, "/dev/shm"); m == nil || m.Source != "/dev/shm" {
		t.Errorf("host IPC shm = %+v", m)
	}
	f.pod.Config.Linux.SecurityContext = nil
	f.pod.NetNS = "/run/berth/netns/pod1"
	s, _, _ = f.container(t, ns(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}))
	if n, ok := nsOf(s, specs.PIDNamespace); !ok || n.Path != "" {
		t.Errorf("container PID mode = %+v", n)
	}
	if n, ok := nsOf(s, specs.NetworkNamespace); !ok || n.Path != f.pod.NetNS {
		t.Errorf("a container cannot leave its pod's network: %+v", n)
	}
}

func TestContainerSpecMountsAndResources(t *testing.T) {
	f := newFixture(t)
	src := t.TempDir()
	missing := filepath.Join(t.TempDir(), "made", "for", "you")
	f.h.OOMFloor = -500
	s, _, err := f.container(t, &runtimeapi.ContainerConfig{
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: src, Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			{ContainerPath: "/data/sub/../new", HostPath: missing},
			{ContainerPath: "/etc/hosts", HostPath: src},
		},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, OomScoreAdj: -998, CpusetCpus: "0",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := mountAt(s, "/data")
	if m == nil || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rslave") || s.Linux.RootfsPropagation != "rslave" {
		t.Errorf("/data mount = %+v, rootfs propagation %q", m, s.Linux.RootfsPropagation)
	}
	if _, err := os.Stat(missing); err != nil || mountAt(s, "/data/new") == nil {
		t.Errorf("missing host path not created: %v", err)
	}
	if m := mountAt(s, "/etc/hosts"); m == nil || m.Source != src {
		t.Errorf("the CRI mount must replace the pod's /etc/hosts: %+v", m)
	}
	// Parents mount before children.
	if strings.Index(mountsString(s), "/data ") > strings.Index(mountsString(s), "/data/new") {
		t.Errorf("mount order: %s", mountsString(s))
	}
	r := s.Linux.Resources
	if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Memory.Limit != 64<<20 || r.CPU.Cpus != "0" {
		t.Errorf("resources = %+v %+v", r.CPU, r.Memory)
	}
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("oom_score_adj %d, want clamped to the node floor -500", *s.Process.OOMScoreAdj)
	}
}

func mountsString(s *specs.Spec) string {
	var b strings.Builder
	for _, m := range s.Mounts {
		b.WriteString(m.Destination + " ")
	}
	return b.String()
}

func TestSandboxSpec(t *testing.T) {
	f := newFixture(t)
	f.pod.PausePid = 0
	f.h.OOMFloor = 0
	f.pod.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	s, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{Config: v1.Config{Entrypoint: []string{"/pause"}}}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "p-host" || !s.Root.Readonly || s.Process.Args[0] != "/pause" || *s.Process.OOMScoreAdj != 0 {
		t.Errorf("sandbox spec = %+v %+v", s.Root, s.Process)
	}
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" || s.Annotations[AnnContainerType] != ContainerTypeSandbox {
		t.Errorf("sysctls %v annotations %v", s.Linux.Sysctl, s.Annotations)
	}
	if n, ok := nsOf(s, specs.NetworkNamespace); !ok || n.Path != f.pod.NetNS {
		t.Errorf("sandbox netns = %+v", n)
	}
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	s, err = Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nsOf(s, specs.NetworkNamespace); ok || s.Hostname != "" {
		t.Errorf("host-network sandbox: namespaces %v hostname %q", s.Linux.Namespaces, s.Hostname)
	}
}

func TestCgroupPaths(t *testing.T) {
	pod := &Pod{Config: &runtimeapi.PodSandboxConfig{}}
	h := Host{CgroupDriver: "cgroupfs", CgroupMode: host.CgroupV1}
	pod.ID = "pod9"
	if p := CgroupsPath(h, pod, "c1"); p != "/berth/pod9/c1" || MemoryCgroupDir(h, p) != "/sys/fs/cgroup/memory/berth/pod9/c1" {
		t.Errorf("cgroupfs v1: %s %s", p, MemoryCgroupDir(h, p))
	}
	h = Host{CgroupDriver: "systemd", CgroupMode: host.CgroupV2}
	pod.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "kubepods-besteffort-pod12.slice"}
	p := CgroupsPath(h, pod, "c1")
	if p != "kubepods-besteffort-pod12.slice:berth:c1" {
		t.Errorf("systemd path %q", p)
	}
	if d := MemoryCgroupDir(h, p); d != "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/berth-c1.scope" {
		t.Errorf("systemd dir %q", d)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"SIGTERM": 15, "TERM": 15, "15": 15, "sigquit": 3, "SIGRTMIN": 34} {
		if got, ok := ParseSignal(in); !ok || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v", in, got, ok)
		}
	}
	if _, ok := ParseSignal("SIGNOPE"); ok {
		t.Error("unknown signal parsed")
	}
}

// TestResolveUserSymlinksResolveInRoot: an image's symlinked passwd (as
// Nix-built images have) is read where the container would read it.
func TestResolveUserSymlinksResolveInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "store/nss"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "store/nss/passwd"), []byte("app:x:7:8::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/store/nss/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	u, err := ResolveUser(root, UserRequest{ImageUser: "app"})
	if err != nil || u.UID != 7 || u.GID != 8 {
		t.Errorf("user through an in-image symlink = %+v, %v", u, err)
	}
}

func TestResolveUserBoundsPasswd(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: no disk used.
	if err := f.Truncate(maxIDFile + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := ResolveUser(root, UserRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("oversized passwd: %v, want InvalidArgument", err)
	}
}

func TestAnnotationAllowList(t *testing.T) {
	f := newFixture(t)
	f.rt.PodAnnotations = []string{"run.oci.*"}
	f.rt.ContainerAnnotations = []string{"dev.gvisor.spec.mount.*.share", "io.kubernetes.cri.*"}
	f.rt.Annotations["run.oci.handler"] = "admin"
	f.pod.Config.Annotations = map[string]string{"run.oci.keep_original_groups": "1", "run.oci.handler": "tenant", "other": "x", "dev.gvisor.spec.mount.a.share": "pod"}
	s, _, err := f.container(t, &runtimeapi.ContainerConfig{Annotations: map[string]string{
		"dev.gvisor.spec.mount.a.share": "container", "dev.gvisor.spec.mount.a.type": "bind", AnnSandboxID: "other-pod", "io.kubernetes.cri-o.SandboxID": "x",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"run.oci.keep_original_groups": "1", "run.oci.handler": "admin", "dev.gvisor.spec.mount.a.share": "container", "handler/x": "1",
		AnnSandboxID: "pod1", AnnContainerType: ContainerTypeApp,
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	for _, k := range []string{"other", "dev.gvisor.spec.mount.a.type", "io.kubernetes.cri-o.SandboxID"} {
		if v, ok := s.Annotations[k]; ok {
			t.Errorf("annotation %s=%s passed unlisted", k, v)
		}
	}
	sb, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if sb.Annotations["run.oci.keep_original_groups"] != "1" || sb.Annotations["dev.gvisor.spec.mount.a.share"] != "" {
		t.Errorf("sandbox annotations = %v", sb.Annotations)
	}
}
