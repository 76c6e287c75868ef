package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/test/harness"
)

// crictlCmd builds a crictl command against b (for commands that stream).
func crictlCmd(ctx context.Context, t *testing.T, b *harness.Berthd, args ...string) *exec.Cmd {
	full := append([]string{"--runtime-endpoint", "unix://" + b.Socket, "--image-endpoint", "unix://" + b.Socket, "--timeout", "60s"}, args...)
	return exec.CommandContext(ctx, harness.Tool(t, "crictl"), full...)
}

func TestStreamingAndRuntimeExtras(t *testing.T) {
	for i, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			podCfg := podConfig(t, dir, "extras", 0)

			// Events from the start, to see the whole lifecycle.
			ectx, ecancel := context.WithCancel(context.Background())
			defer ecancel()
			events := crictlCmd(ectx, t, b, "events", "-o", "json")
			var evOut bytes.Buffer
			events.Stdout = &evOut
			if err := events.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)

			pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
			loop := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "loop", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done"), podCfg))
			b.Crictl(t, "start", loop)
			waitState(t, b, loop, runtimeapi.ContainerState_CONTAINER_RUNNING)

			t.Run("exec -i", func(t *testing.T) {
				// exec with stdin, and the exit code reaching the client.
				cmd := crictlCmd(context.Background(), t, b, "exec", "-i", loop, "sh", "-c", "read x; echo got-$x; exit 3")
				cmd.Stdin = strings.NewReader("hello\n")
				out, err := cmd.CombinedOutput()
				if !strings.Contains(string(out), "got-hello") || err == nil || !strings.Contains(string(out), "exit code 3") {
					t.Errorf("exec -i: %v\n%s", err, out)
				}
			})
			t.Run("exec -it", func(t *testing.T) {
				// exec with a terminal: script gives crictl one, sized 30x100
				// here, which crictl passes on as a resize.
				tty := exec.Command("script", "-qec", "stty rows 30 cols 100; "+shellJoin(crictlCmd(context.Background(), t, b, "exec", "-it", loop, "sh", "-c", "echo via-terminal; tty; stty size").Args), "/dev/null")
				tty.Stdin = strings.NewReader("")
				out, err := tty.CombinedOutput()
				if !strings.Contains(string(out), "via-terminal") {
					t.Errorf("exec -it: %v\n%s", err, out)
				}
				// gVisor hands the exec'd process the terminal as a host file that
				// it does not treat as a tty; runc and crun give a real one.
				if handler != "runsc" && (err != nil || !strings.Contains(string(out), "/dev/pts/")) {
					t.Errorf("exec -it has no terminal: %v\n%s", err, out)
				}
				// crictl sends its terminal's size; a resize that arrived shows.
				if handler != "runsc" && !regexp.MustCompile(`(?m)\b30 100\r?$`).Match(out) {
					t.Errorf("terminal size did not reach the process:\n%s", out)
				}
			})

			// attach to a container whose stdin is open.
			attSpec := &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "att"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"},
				Command: []string{"sh"}, Stdin: true, StdinOnce: true, LogPath: "att.log", Linux: &runtimeapi.LinuxContainerConfig{},
			}
			att := strings.TrimSpace(b.Crictl(t, "create", pod, writeJSON(t, filepath.Join(dir, "att.json"), attSpec), podCfg))
			b.Crictl(t, "start", att)
			waitState(t, b, att, runtimeapi.ContainerState_CONTAINER_RUNNING)
			t.Run("attach", func(t *testing.T) {
				cmd := crictlCmd(context.Background(), t, b, "attach", "-i", att)
				cmd.Stdin = strings.NewReader("echo attached-$((40+2)); exit 4\n")
				out, err := cmd.CombinedOutput()
				if !strings.Contains(string(out), "attached-42") {
					t.Errorf("attach: %v\n%s", err, out)
				}
				if in := waitState(t, b, att, runtimeapi.ContainerState_CONTAINER_EXITED); in.Status.GetExitCode() != 4 {
					t.Errorf("attached shell exit: %v", in.Status)
				}
			})

			t.Run("port-forward", func(t *testing.T) {
				// port-forward to a server in the pod.
				web := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "web", "mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 8080 -h /www"), podCfg))
				b.Crictl(t, "start", web)
				waitState(t, b, web, runtimeapi.ContainerState_CONTAINER_RUNNING)
				local := 19180 + i
				pctx, pcancel := context.WithCancel(context.Background())
				pf := crictlCmd(pctx, t, b, "port-forward", pod, fmt.Sprintf("%d:8080", local))
				if err := pf.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() {
					pcancel()
					_ = pf.Wait()
				}()
				if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", local)); body != "forwarded\n" {
					t.Errorf("port-forward: %q", body)
				}
			})

			t.Run("stats", func(t *testing.T) {
				var stats runtimeapi.ListContainerStatsResponse
				b.CrictlProto(t, &stats, "stats", "--id", loop)
				if s := stats.GetStats(); len(s) != 1 || s[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || s[0].GetMemory().GetWorkingSetBytes().GetValue() == 0 {
					t.Errorf("crictl stats: %v", &stats)
				}
			})
			t.Run("statsp", func(t *testing.T) {
				var podStats runtimeapi.ListPodSandboxStatsResponse
				b.CrictlProto(t, &podStats, "statsp", "--id", pod)
				if len(podStats.GetStats()) != 1 {
					t.Fatalf("crictl statsp: %v", &podStats)
				}
				ps := podStats.GetStats()[0].GetLinux()
				if ps.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || ps.GetNetwork().GetDefaultInterface().GetName() != "eth0" || ps.GetNetwork().GetDefaultInterface().GetRxBytes().GetValue() == 0 || len(ps.GetContainers()) < 2 {
					t.Errorf("pod stats = %v", ps)
				}
				// loop's sh and web's httpd (loop's sleep comes and goes:
				// under emulation it is often between two).
				if handler != "runsc" && ps.GetProcess().GetProcessCount().GetValue() < 2 {
					t.Errorf("pod process count = %d", ps.GetProcess().GetProcessCount().GetValue())
				}
			})

			t.Run("update", func(t *testing.T) {
				// update: new limits reach the cgroup.
				b.Crictl(t, "update", "--memory", "67108864", "--cpu-share", "512", loop)
				switch {
				case handler == "runsc":
				case host.Cgroups() == host.CgroupV2:
					// Wherever the driver put it (cgroups_test.go).
					if limit, at := cgroupValue(t, inspectCtr(t, b, loop).Info.Pid, "memory.max"); limit != "67108864" {
						t.Errorf("memory limit after update = %q (at %s)", limit, at)
					}
				default:
					limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory/berth", pod, loop, "memory.limit_in_bytes"))
					if err != nil || strings.TrimSpace(string(limit)) != "67108864" {
						t.Errorf("memory limit after update = %q, %v", limit, err)
					}
				}
				if st := b.ContainerStatus(t, loop, nil); st.GetResources().GetLinux().GetMemoryLimitInBytes() != 67108864 {
					t.Errorf("status after update: %v", st.GetResources())
				}
			})

			t.Run("log reopen", func(t *testing.T) {
				// Log rotation: rename the file, reopen, new lines land anew.
				logPath := filepath.Join(dir, "logs", "extras", "loop.log")
				if err := os.Rename(logPath, logPath+".1"); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Client(t).ReopenContainerLog(context.Background(), &runtimeapi.ReopenContainerLogRequest{ContainerId: loop}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond)
				fresh, err := os.ReadFile(logPath)
				if err != nil || !strings.Contains(string(fresh), " stdout F line-") {
					t.Errorf("reopened log: %q, %v", fresh, err)
				}
			})

			t.Run("metrics", func(t *testing.T) {
				if out := b.Crictl(t, "metricdescs"); !strings.Contains(out, "container_cpu_usage_seconds_total") {
					t.Errorf("metricdescs lacks cpu usage:\n%.400s", out)
				}
				if out := b.Crictl(t, "metricsp"); !strings.Contains(out, pod) || !strings.Contains(out, "container_memory_working_set_bytes") {
					t.Errorf("metricsp lacks the pod's metrics:\n%.400s", out)
				}
			})

			b.Crictl(t, "stop", "--timeout", "0", loop)
			b.Crictl(t, "rmp", "-f", pod)
			time.Sleep(300 * time.Millisecond)
			ecancel()
			_ = events.Wait()
			t.Run("events", func(t *testing.T) {
				got := map[string]bool{}
				dec := json.NewDecoder(&evOut)
				for {
					var raw json.RawMessage
					if dec.Decode(&raw) != nil {
						break
					}
					var ev runtimeapi.ContainerEventResponse
					if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &ev); err != nil {
						t.Fatalf("crictl event is not a ContainerEventResponse: %v\n%s", err, raw)
					}
					got[ev.GetContainerId()[:12]+" "+ev.GetContainerEventType().String()] = true
				}
				for _, want := range []string{
					pod[:12] + " CONTAINER_CREATED_EVENT", pod[:12] + " CONTAINER_STARTED_EVENT",
					loop[:12] + " CONTAINER_CREATED_EVENT", loop[:12] + " CONTAINER_STARTED_EVENT",
					loop[:12] + " CONTAINER_STOPPED_EVENT", loop[:12] + " CONTAINER_DELETED_EVENT",
					att[:12] + " CONTAINER_STOPPED_EVENT",
					pod[:12] + " CONTAINER_STOPPED_EVENT", pod[:12] + " CONTAINER_DELETED_EVENT",
				} {
					if !got[want] {
						t.Errorf("crictl events lacks %s (got %v)\n%s", want, got, grepLog(b.Log(), want[:12]))
					}
				}
			})
		})
	}
}

func grepLog(log, s string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// shellJoin quotes args for sh (script -c runs its command through it).
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
