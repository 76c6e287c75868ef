package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// handlers are the OCI runtimes the lifecycle tests run on;
// $BERTH_HANDLERS (comma-separated) narrows them: the test VM
// (test/vm) leaves gVisor to the host.
var handlers = func() []string {
	if env := os.Getenv("BERTH_HANDLERS"); env != "" {
		return strings.Split(env, ",")
	}
	return []string{"runc", "crun", "runsc"}
}()

// podSpec is the pod config the tests start from: what the kubelet sends
// for a pod that does not share its PID namespace (the default); CRI's
// zero value would share it.
func podSpec(dir, name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(dir, "logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// podConfig writes a crictl pod config and returns its path.
func podConfig(t *testing.T, dir, name string, hostPort int) string {
	t.Helper()
	cfg := podSpec(dir, name)
	if hostPort > 0 {
		cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: int32(hostPort), HostIp: "127.0.0.1"}}
	}
	return writeJSON(t, filepath.Join(dir, name+"-pod.json"), cfg)
}

// ctrSpec is a container config running cmd in busybox.
func ctrSpec(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox:1.36"},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// ctrConfig writes a crictl container config running sh -c script.
func ctrConfig(t *testing.T, dir, name, script string) string {
	t.Helper()
	return writeJSON(t, filepath.Join(dir, name+"-ctr.json"), ctrSpec(name, "sh", "-c", script))
}

// podWithContainer pulls busybox, runs a pod named name and starts a
// container of that name running script in it.
func podWithContainer(t *testing.T, b *harness.Berthd, dir, name, script string) (pod, ctr string) {
	t.Helper()
	b.Crictl(t, "pull", "busybox:1.36")
	podCfg := podConfig(t, dir, name, 0)
	pod = strings.TrimSpace(b.Crictl(t, "runp", podCfg))
	ctr = strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, name, script), podCfg))
	b.Crictl(t, "start", ctr)
	return pod, ctr
}

// writeJSON writes a CRI config for crictl, which reads it with
// encoding/json semantics (the generated types' snake_case tags, enums as
// numbers), and returns its path.
func writeJSON(t *testing.T, path string, v proto.Message) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ctrInfo is the part of berthd's verbose container info the tests read.
type ctrInfo struct {
	SandboxID string `json:"sandboxID"`
	Pid       int    `json:"pid"`
	Bundle    string `json:"bundle"`
}

// podInfo is the part of berthd's verbose pod info the tests read.
type podInfo struct {
	Pid     int    `json:"pid"`
	NetNS   string `json:"netns"`
	Handler string `json:"handler"`
}

// inspect is a container's CRI status with berthd's verbose info.
type inspect struct {
	Status *runtimeapi.ContainerStatus
	Info   ctrInfo
}

func inspectCtr(t *testing.T, b *harness.Berthd, id string) inspect {
	t.Helper()
	var in inspect
	in.Status = b.ContainerStatus(t, id, &in.Info)
	return in
}

// waitState polls the container's status until it reaches state.
func waitState(t *testing.T, b *harness.Berthd, id string, state runtimeapi.ContainerState) inspect {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		in := inspectCtr(t, b, id)
		if in.Status.GetState() == state {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s, want %s", id, in.Status.GetState(), state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startBerthd(t *testing.T, handler string) *harness.Berthd {
	t.Helper()
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	return harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler})
}

func TestPodLifecycle(t *testing.T) {
	for i, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			before := b.CountLeaks(t)
			b.Crictl(t, "pull", "busybox:1.36")

			port := 18480 + i
			pod := strings.TrimSpace(b.Crictl(t, "runp", "--runtime", handler, podConfig(t, dir, "web", port)))
			t.Run("pod status", func(t *testing.T) {
				st := b.PodSandboxStatus(t, pod, nil)
				if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || !strings.HasPrefix(st.GetNetwork().GetIp(), "10.88.") || st.GetRuntimeHandler() != handler {
					t.Fatalf("pod status = %v", st)
				}
			})

			// A web server, reached through the pod's port mapping.
			web := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "web",
				"mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"), podConfig(t, dir, "web", port)))
			b.Crictl(t, "start", web)
			waitState(t, b, web, runtimeapi.ContainerState_CONTAINER_RUNNING)
			t.Run("port mapping", func(t *testing.T) {
				body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
				if body != "hello-from-web\n" {
					t.Errorf("through the port mapping: %q", body)
				}
			})

			// One that handles SIGTERM, one that ignores it, one that ends.
			trap := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "trap",
				"trap 'echo got-term; exit 3' TERM; echo started; while true; do sleep 0.1; done"), podConfig(t, dir, "web", port)))
			stubborn := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "stubborn",
				"trap '' TERM; while true; do sleep 0.1; done"), podConfig(t, dir, "web", port)))
			done := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "done", "echo out; echo err >&2; exit 0"), podConfig(t, dir, "web", port)))
			for _, c := range []string{trap, stubborn, done} {
				b.Crictl(t, "start", c)
			}
			t.Run("listed", func(t *testing.T) {
				out := b.Crictl(t, "ps", "-a", "-p", pod)
				for _, c := range []string{web, trap, stubborn, done} {
					if !strings.Contains(out, c[:13]) {
						t.Errorf("crictl ps lacks %s:\n%s", c[:13], out)
					}
				}
			})
			t.Run("finished container", func(t *testing.T) {
				in := waitState(t, b, done, runtimeapi.ContainerState_CONTAINER_EXITED)
				if in.Status.GetExitCode() != 0 || in.Status.GetReason() != "Completed" {
					t.Errorf("finished container: %v", in.Status)
				}
				if logs := b.Crictl(t, "logs", done); !strings.Contains(logs, "out") {
					t.Errorf("logs of done = %q", logs)
				}
				raw, err := os.ReadFile(filepath.Join(dir, "logs", "web", "done.log"))
				if err != nil || !strings.Contains(string(raw), " stdout F out\n") || !strings.Contains(string(raw), " stderr F err\n") {
					t.Errorf("CRI log file = %q, %v", raw, err)
				}
			})

			// ExecSync: output, exit code, the container's identity.
			t.Run("exec", func(t *testing.T) {
				client := b.Client(t)
				resp, err := client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: trap, Cmd: []string{"sh", "-c", "id -u; hostname; echo oops >&2; exit 7"}, Timeout: 10})
				if err != nil {
					t.Fatal(err)
				}
				if resp.ExitCode != 7 || string(resp.Stdout) != "0\nweb\n" || string(resp.Stderr) != "oops\n" {
					t.Errorf("exec = %d %q %q", resp.ExitCode, resp.Stdout, resp.Stderr)
				}
				// gVisor's /proc is its own and shows no host cgroups. On
				// cgroup v2 the container has a cgroup namespace rooted at
				// its cgroup: "0::/" is in it, a path in any other.
				if out := b.Crictl(t, "exec", "-s", trap, "cat", "/proc/self/cgroup"); handler != "runsc" && !strings.Contains(out, trap) && strings.TrimSpace(out) != "0::/" {
					t.Errorf("exec does not run in the container's cgroup:\n%s", out)
				}
				start := time.Now()
				_, err = client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: trap, Cmd: []string{"sleep", "30"}, Timeout: 1})
				if err == nil || !strings.Contains(err.Error(), "DeadlineExceeded") || time.Since(start) > 10*time.Second {
					t.Errorf("exec timeout: %v after %v", err, time.Since(start))
				}
			})

			// Stop: the trapping one exits 3 at once; the stubborn one is
			// killed when the timeout runs out.
			t.Run("stop on SIGTERM", func(t *testing.T) {
				start := time.Now()
				b.Crictl(t, "stop", "--timeout", "10", trap)
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("stopping a container that exits on SIGTERM took %v", d)
				}
				in := inspectCtr(t, b, trap)
				if in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || in.Status.GetExitCode() != 3 || in.Status.GetReason() != "Error" || in.Status.GetFinishedAt() == 0 {
					t.Errorf("trap container after stop: %v", in.Status)
				}
				if logs := b.Crictl(t, "logs", trap); !strings.Contains(logs, "got-term") {
					t.Errorf("trap logs = %q", logs)
				}
			})
			t.Run("stop after the timeout", func(t *testing.T) {
				start := time.Now()
				b.Crictl(t, "stop", "--timeout", "2", stubborn)
				if d := time.Since(start); d < 2*time.Second || d > 8*time.Second {
					t.Errorf("stopping a container that ignores SIGTERM took %v, want the 2s timeout", d)
				}
				if in := inspectCtr(t, b, stubborn); in.Status.GetExitCode() != 137 || in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
					t.Errorf("stubborn container after stop: %v", in.Status)
				}
			})

			t.Run("stop and remove the pod", func(t *testing.T) {
				b.Crictl(t, "stopp", pod)
				b.Crictl(t, "stopp", pod) // again: nothing to do, no error
				if st := b.PodSandboxStatus(t, pod, nil); st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
					t.Errorf("after stopp: %s", st.GetState())
				}
				b.Crictl(t, "rmp", pod)
				if out := b.Crictl(t, "pods", "-q"); strings.TrimSpace(out) != "" {
					t.Errorf("pods after rmp: %q", out)
				}
				if out := b.Crictl(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
					t.Errorf("containers after rmp: %q", out)
				}
				waitNoLeaks(t, b, before)
			})
		})
	}
}

// waitNoLeaks checks that the host holds what it held before (shims take
// a moment to exit after they were told to).
func waitNoLeaks(t *testing.T, b *harness.Berthd, before harness.Leaks) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := b.CountLeaks(t)
		if after == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: before %+v, after %+v", before, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	var lastErr error
	for range 50 {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(body)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}
