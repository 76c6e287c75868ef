package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHost is where the pods' ids start on the host (as the kubelet
// allocates them: 65536 per pod above 65535).
const usernsHost = 165536

func usernsOptions() *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHost, Length: 65536}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

// TestUserNamespaces: root in a pod with a user namespace (hostUsers:
// false) is an unprivileged uid on the host. Its containers share the
// pod's user namespace with the kubelet's mappings; the image's files,
// /dev/shm and /etc/hosts belong to root in the pod; what it writes on a
// hostPath volume belongs to the mapped uid on the host, or, through an
// idmapped volume, to the host's matching uid; exec runs in the same user
// namespace; procMount Unmasked (empty path lists) is honoured there. A
// handler whose runtime has no idmapped mounts refuses.
func TestUserNamespaces(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	before := b.CountLeaks(t)

	plain, mapped := filepath.Join(dir, "plain"), filepath.Join(dir, "mapped")
	for _, d := range []string{plain, mapped} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cfg := podSpec(dir, "userns")
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions()
	podCfg := writeJSON(t, filepath.Join(dir, "userns-pod.json"), cfg)
	pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
	defer waitNoLeaks(t, b, before)
	defer b.Crictl(t, "rmp", "-f", pod)

	var ids []string
	for _, name := range []string{"a", "b"} {
		c := ctrSpec(name, "sleep", "600")
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions()
		if name == "a" {
			// procMount Default, as the kubelet sends it; b is Unmasked.
			c.Linux.SecurityContext.MaskedPaths = []string{"/proc/kcore", "/proc/keys"}
			c.Linux.SecurityContext.ReadonlyPaths = []string{"/proc/sys"}
		}
		c.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/plain", HostPath: plain},
			{ContainerPath: "/mapped", HostPath: mapped, UidMappings: usernsOptions().Uids, GidMappings: usernsOptions().Gids},
		}
		ctr := strings.TrimSpace(b.Crictl(t, "create", pod, writeJSON(t, filepath.Join(dir, name+"-ctr.json"), c), podCfg))
		b.Crictl(t, "start", ctr)
		ids = append(ids, ctr)
	}

	// On the host: the container's root is usernsHost.
	pid := inspectCtr(t, b, ids[0]).Info.Pid
	uidMap, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "uid_map"))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] != strconv.Itoa(usernsHost) || f[2] != "65536" {
		t.Errorf("uid_map of the container's init on the host = %q, want 0 %d 65536", uidMap, usernsHost)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != usernsHost {
		t.Errorf("the container's root runs as host uid %d, want %d", st.Uid, usernsHost)
	}

	// Inside: root, owning its image, /dev/shm and /etc/hosts.
	script := "id -u; stat -c %u:%g / /bin/busybox /dev/shm /etc/hosts; touch /rootfs-file && echo wrote; " +
		"touch /plain/a /mapped/a; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; readlink /proc/self/ns/user"
	want := "0 0:0 0:0 0:0 0:0 wrote 0 0 65535"
	var userns []string
	for _, ctr := range ids {
		out := strings.Fields(b.Crictl(t, "exec", "-s", ctr, "sh", "-c", script))
		if len(out) < 2 || strings.Join(out[:len(out)-1], " ") != want {
			t.Fatalf("in the pod: %q, want %q and the user namespace", out, want)
		}
		userns = append(userns, out[len(out)-1])
	}
	for i, want := range []string{"character special file", "regular"} {
		if out := b.Crictl(t, "exec", "-s", ids[i], "stat", "-c", "%F", "/proc/keys"); !strings.HasPrefix(strings.TrimSpace(out), want) {
			t.Errorf("container %d: /proc/keys is %q, want %s (procMount %s)", i, out, want, []string{"Default", "Unmasked"}[i])
		}
	}
	if userns[0] != userns[1] {
		t.Errorf("the pod's containers are in different user namespaces: %v", userns)
	}
	if err := syscall.Stat(filepath.Join(plain, "a"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != usernsHost || st.Gid != usernsHost {
		t.Errorf("a file the pod's root made on a hostPath belongs to %d:%d on the host, want %d", st.Uid, st.Gid, usernsHost)
	}
	if err := syscall.Stat(filepath.Join(mapped, "a"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("a file the pod's root made on an idmapped volume belongs to %d:%d on the host, want 0:0", st.Uid, st.Gid)
	}

	// The pod's root passes through berth's state directory to its own
	// rootfs (the runtime prepares it as that user); no other local user
	// reaches it, and the pod's root reaches nothing else of berth's.
	if err := os.Chmod(filepath.Dir(b.Root), 0o755); err != nil {
		t.Fatal(err)
	}
	other := strings.TrimSpace(b.Crictl(t, "runp", podConfig(t, dir, "plain", 0)))
	defer b.Crictl(t, "rmp", "-f", other)
	otherCtr := strings.TrimSpace(b.Crictl(t, "create", other, ctrConfig(t, dir, "plain", "sleep 600"), filepath.Join(dir, "plain-pod.json")))
	b.Crictl(t, "exec", "-s", ids[0], "sh", "-c", "cp /bin/busybox /suid-sh && chmod 4755 /suid-sh")
	for _, p := range []string{
		filepath.Join(b.State, "containers", ids[0], "rootfs", "suid-sh"),
		filepath.Join(b.Root, "containers", ids[0], "upper", "suid-sh"),
		filepath.Join(b.State, "pods", pod, "shm"),
	} {
		requireHostUnreachable(t, p)
	}
	rootfsBin := filepath.Join(b.State, "containers", ids[0], "rootfs", "bin")
	if out, err := runAsHostUser(usernsHost, "/bin/ls", "ls", "-d", rootfsBin); err != nil {
		t.Errorf("the pod's root cannot reach its rootfs: %v %s", err, out)
	}
	// A local user of the group the pod's gids start at: not the pod.
	if out, err := runAsHostIDs(hostNobody, usernsHost, "/bin/ls", "ls", "-d", rootfsBin); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("a member of group %d reaches the pod's rootfs: %v %s", usernsHost, err, out)
	}
	if out, err := runAsHostUser(usernsHost, "/bin/cat", "cat", filepath.Join(b.State, "containers", ids[0], "config.json")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("the pod's root reads its container's OCI spec: %v %.80s", err, out)
	}
	for _, p := range []string{
		filepath.Join(b.State, "containers", otherCtr, "rootfs", "bin"),
		filepath.Join(b.State, "pods", pod, "hosts"),
		filepath.Join(b.State, "runtime", "runc", ids[0]),
		filepath.Join(b.Root, "meta.db"),
	} {
		requireUnreachableBy(t, usernsHost, p)
	}
	if out, err := runAsHostUser(usernsHost, "/bin/ls", "ls", b.State); err == nil {
		t.Errorf("the pod's root lists berth's state directory: %s", out)
	}

	// Other runtimes say what they cannot do.
	for _, h := range []string{"crun", "runsc"} {
		cfg := podSpec(dir, "userns-"+h)
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions()
		out, err := b.TryCrictl(t, "runp", "--runtime", h, writeJSON(t, filepath.Join(dir, h+"-pod.json"), cfg))
		if err == nil || !strings.Contains(out, "FailedPrecondition") || !strings.Contains(out, "userns_options") {
			t.Errorf("%s pod with a user namespace: %v %s, want FailedPrecondition naming the field", h, err, out)
		}
	}
}

// TestPodSysctls: a pod's network sysctls are set after CNI ADD, so
// per-interface ones find their interface; by default (as containerd 2.x)
// any user may bind low ports and ping; a pod's own value wins. On every
// handler that runs pods without a sandbox process, and on runc with one.
func TestPodSysctls(t *testing.T) {
	for _, tc := range []struct {
		handler string
		pid     runtimeapi.NamespaceMode
	}{{"runc", runtimeapi.NamespaceMode_CONTAINER}, {"crun", runtimeapi.NamespaceMode_CONTAINER}, {"runc", runtimeapi.NamespaceMode_POD}} {
		t.Run(tc.handler+"/pid-"+tc.pid.String(), func(t *testing.T) {
			b := startBerthd(t, tc.handler)
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			before := b.CountLeaks(t)
			cfg := podSpec(dir, "sysctls")
			cfg.Linux.SecurityContext.NamespaceOptions.Pid = tc.pid
			cfg.Linux.Sysctls = map[string]string{"net.ipv4.conf.eth0.rp_filter": "2", "net.ipv4.ping_group_range": "1 1"}
			podCfg := writeJSON(t, filepath.Join(dir, "pod.json"), cfg)
			pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
			defer waitNoLeaks(t, b, before)
			defer b.Crictl(t, "rmp", "-f", pod)
			c := ctrSpec("app", "sleep", "600")
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			ctr := strings.TrimSpace(b.Crictl(t, "create", pod, writeJSON(t, filepath.Join(dir, "ctr.json"), c), podCfg))
			b.Crictl(t, "start", ctr)
			out := strings.Fields(b.Crictl(t, "exec", "-s", ctr, "sh", "-c",
				"cat /proc/sys/net/ipv4/conf/eth0/rp_filter /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; "+
					"nc -l -p 80 & sleep 0.3; netstat -tln | grep -c ':80 '; kill %1"))
			if want := "2 0 1 1 1"; strings.Join(out, " ") != want {
				t.Errorf("rp_filter, port start, ping range, uid 1000 listening on :80 = %q, want %q", out, want)
			}
		})
	}
}

// TestUserNamespaceSharedPID: a pod with a user namespace that shares a
// PID namespace runs a sandbox container; it joins the pod's user
// namespace too, and the app container sees it as PID 1.
func TestUserNamespaceSharedPID(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	before := b.CountLeaks(t)
	cfg := podSpec(dir, "shared")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions()
	podCfg := writeJSON(t, filepath.Join(dir, "pod.json"), cfg)
	pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
	defer waitNoLeaks(t, b, before)
	defer b.Crictl(t, "rmp", "-f", pod)
	c := ctrSpec("app", "sleep", "600")
	c.Linux.SecurityContext.NamespaceOptions = cfg.Linux.SecurityContext.NamespaceOptions
	ctr := strings.TrimSpace(b.Crictl(t, "create", pod, writeJSON(t, filepath.Join(dir, "ctr.json"), c), podCfg))
	b.Crictl(t, "start", ctr)
	out := strings.Fields(b.Crictl(t, "exec", "-s", ctr, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; cat /proc/self/uid_map; hostname"))
	if len(out) < 5 || out[0] != "/pause" || strings.Join(out[len(out)-4:], " ") != "0 165536 65536 shared" {
		t.Errorf("PID 1, uid_map and hostname in the pod: %q, want /pause, 0 165536 65536, shared", out)
	}
}
