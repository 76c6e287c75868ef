package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// TestReloadOnSIGHUP: SIGHUP adds a handler written into the
// configuration (a pod runs on it at once), applies the log level, and
// names what needs a restart without applying it; running pods go on.
func TestReloadOnSIGHUP(t *testing.T) {
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
		Extra: "[runtimes.runc]\npath = \"/usr/local/sbin/runc\"\n"})
	dir := t.TempDir()
	before := b.CountLeaks(t)
	defer waitNoLeaks(t, b, before)
	pod, ctr := podWithContainer(t, b, dir, "before", "sleep 600")
	defer b.Crictl(t, "rmp", "-f", pod)

	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	next := "log_level = \"debug\"\ncgroup_driver = \"systemd\"\n" + string(cfg) + "[runtimes.runc-debian]\npath = \"/usr/sbin/runc\"\n"
	if err := os.WriteFile(b.ConfigPath, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(b.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.Log(), "reloaded configuration") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload in the log:\n%s", b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info := b.Crictl(t, "info"); !strings.Contains(info, `"runc-debian"`) {
		t.Errorf("crictl info after the reload lists no runc-debian handler")
	}
	if log := b.Log(); !strings.Contains(log, "cgroup_driver") || !strings.Contains(log, "need a restart") {
		t.Errorf("the log does not name cgroup_driver as needing a restart")
	}
	other := strings.TrimSpace(b.Crictl(t, "runp", "--runtime", "runc-debian", podConfig(t, dir, "after", 0)))
	defer b.Crictl(t, "rmp", "-f", other)
	if out := b.Crictl(t, "exec", "-s", ctr, "echo", "alive"); strings.TrimSpace(out) != "alive" {
		t.Errorf("the pod from before the reload: %q", out)
	}
	if !strings.Contains(b.Log(), "level=DEBUG") {
		t.Errorf("log_level = debug did not apply")
	}
}
