package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// TestStartModes: with start = "direct" berth-shim starts a created runc
// container itself, and runc then sees what it sees after `runc start`:
// the container running, its exec FIFO gone, the process at work. With
// start = "runtime" `runc start` does it. Either way a container whose
// init died before StartContainer does not start, and says so.
func TestStartModes(t *testing.T) {
	for _, mode := range []string{"direct", "runtime"} {
		t.Run(mode, func(t *testing.T) {
			b := startRunc(t, fmt.Sprintf("start = %q", mode))
			runcRoot := filepath.Join(b.State, "runtime", "runc")
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			podCfg := podConfig(t, dir, "start", 0)
			pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
			ctr := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "start", "echo started as $$; sleep 600"), podCfg))
			if got := runcStatus(t, runcRoot, ctr); got != "created" {
				t.Fatalf("runc says the new container is %q, want created", got)
			}
			b.Crictl(t, "start", ctr)
			if got := runcStatus(t, runcRoot, ctr); got != "running" {
				t.Errorf("runc says the started container is %q, want running", got)
			}
			if _, err := os.Lstat(filepath.Join(runcRoot, ctr, "exec.fifo")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("exec fifo after start: %v, want it gone", err)
			}
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.Crictl(t, "logs", ctr), "started as 1"); time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the container's process did not run as its pid 1; logs: %q", b.Crictl(t, "logs", ctr))
				}
			}
			n := strings.Count(shimLog(t, b, pod), `msg="container started directly"`)
			if mode == "direct" && n != 1 || mode == "runtime" && n != 0 {
				t.Errorf("%d containers started directly in %s mode", n, mode)
			}

			dead := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "dead", "echo should not run"), podCfg))
			if err := unix.Kill(inspectCtr(t, b, dead).Info.Pid, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			begun := time.Now()
			if out, err := b.TryCrictl(t, "start", dead); err == nil {
				t.Errorf("a container whose init was killed started: %s", out)
			}
			if d := time.Since(begun); d > 10*time.Second {
				t.Errorf("starting a dead container took %v", d)
			}
			if in := waitState(t, b, dead, runtimeapi.ContainerState_CONTAINER_EXITED); in.Status.ExitCode != 137 {
				t.Errorf("killed init: exit code %d, want 137", in.Status.ExitCode)
			}
			if logs := b.Crictl(t, "logs", dead); strings.Contains(logs, "should not run") {
				t.Errorf("the killed container ran: %q", logs)
			}
			b.Crictl(t, "rmp", "-f", pod)
		})
	}
}

// startRunc starts berthd with /usr/sbin/runc as the default handler
// and settings ("key = value" lines) in its table.
func startRunc(t *testing.T, settings string) *harness.Berthd {
	t.Helper()
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	return harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
		Extra: fmt.Sprintf("[runtimes.runc]\npath = %q\n%s\n", "/usr/sbin/runc", settings)})
}

// runcStatus is the container's status as `runc state` reports it.
func runcStatus(t *testing.T, root, id string) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/runc", "--root", root, "state", id).Output()
	if err != nil {
		t.Fatalf("runc state %s: %v", id, err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	return st.Status
}
