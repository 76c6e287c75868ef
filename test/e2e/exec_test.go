package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/test/harness"
)

// identity prints what a process is: credentials, capabilities,
// no_new_privs, seccomp, signal dispositions, namespaces, cgroups,
// limits, oom_score_adj, working directory, environment, open files and
// hostname. Lines that differ between any two processes (pids, memory,
// counters) are left out.
const identity = `exec 2>&1
grep -vE '^(Name|Pid|PPid|Tgid|NSpid|NStgid|NSpgid|NSsid|Vm|Rss|voluntary|nonvoluntary|State|SigQ|SigPnd|ShdPnd|Threads|Kthread|HugetlbPages|untag)' /proc/self/status
cat /proc/self/cgroup
for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n; done
cat /proc/self/limits /proc/self/oom_score_adj
pwd; env | sort; ls /proc/self/fd; hostname; id; umask
cat /proc/self/attr/current /proc/self/loginuid; echo
touch /probe-rootfs-write && echo rootfs-writable || echo rootfs-read-only
`

// TestDirectExecMatchesRuntimeExec runs the same probe through ExecSync,
// which berth-shim starts itself in runc and crun containers, and through
// a streaming exec, which goes through the OCI runtime's exec, in
// containers of several security settings: what the process is must be
// the same both ways.
func TestDirectExecMatchesRuntimeExec(t *testing.T) {
	cases := map[string]*runtimeapi.LinuxContainerSecurityContext{
		"default": {Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}},
		"restricted": {
			Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
			RunAsGroup:         &runtimeapi.Int64Value{Value: 3000},
			SupplementalGroups: []int64{4000, 5000},
			Capabilities:       &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"CHOWN", "KILL"}},
			NoNewPrivs:         true,
			ReadonlyRootfs:     true,
		},
		"ambient": {
			RunAsUser:    &runtimeapi.Int64Value{Value: 1000},
			Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_BIND_SERVICE"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
		},
		"unconfined": {Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}},
		"privileged": {Privileged: true},
	}
	for _, handler := range []string{"runc", "crun"} {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			b.Crictl(t, "pull", "busybox:1.36")
			client := b.Client(t)
			rp, err := client.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: execPodConfig()})
			if err != nil {
				t.Fatal(err)
			}
			pod := rp.PodSandboxId
			for name, sc := range cases {
				t.Run(name, func(t *testing.T) {
					sc.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
					cfg := &runtimeapi.ContainerConfig{
						Metadata: &runtimeapi.ContainerMetadata{Name: name},
						Image:    &runtimeapi.ImageSpec{Image: "busybox:1.36"},
						Command:  []string{"sleep", "600"},
						Envs:     []*runtimeapi.KeyValue{{Key: "PROBE", Value: []byte(name)}},
						Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: sc},
					}
					ctx := context.Background()
					cr, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: execPodConfig()})
					if err != nil {
						t.Fatal(err)
					}
					if _, err := client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
						t.Fatal(err)
					}
					before := directStarts(t, b, pod)
					direct, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"sh", "-c", identity}, Timeout: 10})
					if err != nil {
						t.Fatal(err)
					}
					if got := directStarts(t, b, pod); got != before+1 {
						t.Fatalf("ExecSync did not start its process directly (%d direct starts, want %d); shim log:\n%s", got, before+1, shimLog(t, b, pod))
					}
					viaRuntime := b.Crictl(t, "exec", cr.ContainerId, "sh", "-c", identity)
					d, r := string(direct.Stdout), viaRuntime
					if d != r {
						t.Errorf("the process differs (- direct, + through %s exec):\n%s", handler, lineDiff(d, r))
					}
					if !strings.Contains(d, "PROBE="+name) {
						t.Errorf("probe output lacks the container's environment:\n%s", d)
					}
					if sc.GetSeccomp() != nil && sc.GetSeccomp().GetProfileType() == runtimeapi.SecurityProfile_RuntimeDefault {
						sameFilter(t, b, client, cr.ContainerId)
					}
				})
			}
			b.Crictl(t, "rmp", "-f", pod)
		})
	}
}

// execPodConfig is the pod's config as CreateContainer wants it.
func execPodConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "exec", Namespace: "e2e", Uid: "exec-uid"},
		Hostname: "exec-pod",
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			Privileged: true, NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// shimLog is the pod's shim log.
func shimLog(t *testing.T, b *harness.Berthd, pod string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.State, "pods", pod, "shim.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// directStarts counts the processes the pod's shim started directly.
func directStarts(t *testing.T, b *harness.Berthd, pod string) int {
	t.Helper()
	return strings.Count(shimLog(t, b, pod), `msg="process started directly"`)
}

// lineDiff lists the lines only a has (-) and only b has (+).
func lineDiff(a, b string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if cb[l] > 0 {
			cb[l]--
		} else {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if ca[l] > 0 {
			ca[l]--
		} else {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// sameFilter checks that a directly started process runs under the very
// seccomp program the runtime gave the container's init.
func sameFilter(t *testing.T, b *harness.Berthd, client runtimeapi.RuntimeServiceClient, ctr string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sleep", "3"}, Timeout: 10})
		done <- err
	}()
	init := inspectCtr(t, b, ctr).Info.Pid
	var sleeper int
	for deadline := time.Now().Add(2 * time.Second); sleeper == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		sleeper = processIn(t, init, "sleep\x003\x00")
	}
	if sleeper == 0 {
		t.Fatal("the exec'd sleep never showed up")
	}
	type filters struct {
		init, exec []byte
		err        error
	}
	got := make(chan filters, 1)
	go func() {
		runtime.LockOSThread() // ptrace answers the attaching thread only
		defer runtime.UnlockOSThread()
		var f filters
		// The test reads pids it just found; nothing to re-check.
		alive := func() error { return nil }
		if f.init, f.err = direct.ReadFilter(init, alive); f.err == nil {
			f.exec, f.err = direct.ReadFilter(sleeper, alive)
		}
		got <- f
	}()
	f := <-got
	if f.err != nil {
		t.Fatalf("read seccomp filters: %v", f.err)
	}
	if !bytes.Equal(f.init, f.exec) {
		t.Errorf("exec'd process has a %d-byte seccomp program, the container's init %d bytes, and they differ", len(f.exec), len(f.init))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// processIn finds a process in the same PID namespace as pid whose
// command line is cmdline.
func processIn(t *testing.T, pid int, cmdline string) int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if other, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); other == ns && string(cmd) == cmdline {
			return p
		}
	}
	return 0
}

// TestExecSyncEdges: a timeout kills the process and says so, a signal
// is the exit code 128+n, a missing command is an error; and with
// exec = "runtime" every process goes through the runtime.
func TestExecSyncEdges(t *testing.T) {
	for _, mode := range []string{"direct", "runtime"} {
		t.Run(mode, func(t *testing.T) {
			b := startRunc(t, fmt.Sprintf("exec = %q", mode))
			dir := t.TempDir()
			pod, ctr := podWithContainer(t, b, dir, "edges", "sleep 600")
			client, ctx := b.Client(t), context.Background()
			init := inspectCtr(t, b, ctr).Info.Pid

			start := time.Now()
			_, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sleep", "30"}, Timeout: 1})
			if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 10*time.Second {
				t.Errorf("exec past its timeout: %v after %v, want DeadlineExceeded after about a second", err, time.Since(start))
			}
			for deadline := time.Now().Add(5 * time.Second); processIn(t, init, "sleep\x0030\x00") != 0; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the timed-out process is still running")
				}
			}
			resp, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sh", "-c", "kill -9 $$"}, Timeout: 10})
			if err != nil || resp.ExitCode != 137 {
				t.Errorf("exec killed by SIGKILL: %v, %+v; want exit code 137", err, resp)
			}
			if _, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"no-such-command"}, Timeout: 10}); err == nil || !strings.Contains(err.Error(), "no-such-command") {
				t.Errorf("exec of a missing command: %v, want an error naming it", err)
			}
			n := directStarts(t, b, pod)
			if mode == "direct" && n != 2 || mode == "runtime" && n != 0 {
				t.Errorf("%d processes started directly in %s mode", n, mode)
			}
			b.Crictl(t, "rmp", "-f", pod)
		})
	}
}
