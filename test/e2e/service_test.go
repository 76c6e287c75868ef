package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// TestSystemdService runs berthd as dist/berthd.service under systemd,
// with the systemd cgroup driver: it starts once the socket serves
// (Type=notify), a pod runs, a restart of the unit leaves the pod running
// (KillMode=process) and berthd finds it again, so does a stop and a
// start, a reload keeps it active, and once the pod and the unit are stopped nothing of berth is left in
// systemd. It installs a unit, so it runs only where
// BERTH_SYSTEMD_UNIT names the unit file (test/vm sets it).
func TestSystemdService(t *testing.T) {
	harness.RequireRoot(t)
	unitFile := os.Getenv("BERTH_SYSTEMD_UNIT")
	if unitFile == "" {
		t.Skip("BERTH_SYSTEMD_UNIT is not set: this test installs berthd.service (make test-vm runs it)")
	}
	if !harness.SystemdBooted() {
		t.Skip("systemd is not this host's init")
	}
	bin := harness.Binaries(t)
	reg := fixtures.Registry(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "state", "berth.sock")
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "root = %q\nstate = %q\nsocket = %q\nshim_path = %q\ncgroup_driver = \"systemd\"\n",
		filepath.Join(base, "root"), filepath.Join(base, "state"), sock, filepath.Join(bin, "berth-shim"))
	fmt.Fprintf(&cfg, "[cni]\nconf_dir = %q\n[image.mirrors]\n", filepath.Join(base, "cni"))
	for host, eps := range fixtures.Mirrors(reg) {
		q, _ := json.Marshal(eps)
		fmt.Fprintf(&cfg, "%q = %s\n", host, q)
	}
	cfgPath := filepath.Join(base, "config.toml")
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfgPath, cfg.String())
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// The unit as installed, in /run: gone at the next boot. A drop-in
	// points it at this build and this test's configuration.
	write("/run/systemd/system/berthd.service", string(unit))
	// berthd's log goes to a file, for failures (journalctl is not a
	// test dependency).
	logPath := filepath.Join(base, "berthd.log")
	write("/run/systemd/system/berthd.service.d/test.conf",
		fmt.Sprintf("[Service]\nExecStart=\nExecStart=%s --config %s\nRestart=no\nStandardOutput=append:%s\nStandardError=append:%s\n",
			filepath.Join(bin, "berthd"), cfgPath, logPath, logPath))
	logTail := func() string {
		data, _ := os.ReadFile(logPath)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		return string(data)
	}
	const unitName = "berthd.service"
	crictl := func(args ...string) string {
		t.Helper()
		full := append([]string{"--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock, "--timeout", "60s"}, args...)
		cmd := exec.Command(harness.Tool(t, "crictl"), full...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("crictl %s: %v\n%s%s\n--- berthd log ---\n%s", strings.Join(args, " "), err, out, stderr.String(), logTail())
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		if harness.UnitProperty(t, unitName, "ActiveState") == "active" {
			harness.Systemctl(t, "stop", unitName)
		}
		_ = os.RemoveAll("/run/systemd/system/berthd.service.d")
		_ = os.Remove("/run/systemd/system/berthd.service")
		harness.Systemctl(t, "daemon-reload", "")
		if t.Failed() {
			t.Logf("--- berthd log ---\n%s", logTail())
		}
	})
	harness.Systemctl(t, "daemon-reload", "")
	// Type=notify: the start job is done once berthd said READY.
	harness.Systemctl(t, "start", unitName)
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("started, but no socket: %v", err)
	}

	dir := t.TempDir()
	crictl("pull", "busybox:1.36")
	podCfg := podConfig(t, dir, "unit", 0)
	pod := crictl("runp", podCfg)
	ctr := crictl("create", pod, ctrConfig(t, dir, "unit", "while true; do sleep 0.1; done"), podCfg)
	crictl("start", ctr)
	if st := harness.UnitProperty(t, "berth-"+ctr+".scope", "ActiveState"); st != "active" {
		t.Errorf("the container's scope is %s", st)
	}
	pidOf := func() string {
		t.Helper()
		var v struct {
			Info struct {
				Pid int `json:"pid"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(crictl("inspect", "-o", "json", ctr)), &v); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(v.Info.Pid)
	}
	pid := pidOf()
	mainPID := harness.UnitProperty(t, unitName, "MainPID")

	harness.Systemctl(t, "restart", unitName)
	if now := harness.UnitProperty(t, unitName, "MainPID"); now == mainPID {
		t.Errorf("berthd's pid is still %s after a restart", now)
	}
	if st := crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", ctr); st != runtimeapi.ContainerState_CONTAINER_RUNNING.String() || pidOf() != pid {
		t.Errorf("after a restart of the unit the container is %s (pid %s, was %s)", st, pidOf(), pid)
	}
	if out := crictl("exec", "-s", ctr, "echo", "still-here"); out != "still-here" {
		t.Errorf("exec after the restart: %q", out)
	}
	harness.Systemctl(t, "reload", unitName)
	if st := harness.UnitProperty(t, unitName, "ActiveState"); st != "active" {
		t.Errorf("after a reload berthd.service is %s", st)
	}

	// A stop of berthd is not a stop of its pods (KillMode=process): the
	// container's process and scope stay, and berthd finds them again.
	harness.Systemctl(t, "stop", unitName)
	if err := syscall.Kill(atoi(t, pid), 0); err != nil {
		t.Errorf("the container's init %s after berthd.service stopped: %v", pid, err)
	}
	if st := harness.UnitProperty(t, "berth-"+ctr+".scope", "ActiveState"); st != "active" {
		t.Errorf("after berthd.service stopped the container's scope is %s", st)
	}
	harness.Systemctl(t, "start", unitName)
	if st := crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", ctr); st != runtimeapi.ContainerState_CONTAINER_RUNNING.String() || pidOf() != pid {
		t.Errorf("after a stop and start of the unit the container is %s (pid %s, was %s)", st, pidOf(), pid)
	}

	crictl("rmp", "-f", pod)
	harness.Systemctl(t, "stop", unitName)
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := harness.SystemdUnits(t, "berth-*.scope", "berth-*.slice")
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left in systemd after the pod and berthd stopped: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
