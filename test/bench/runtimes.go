// Package bench measures a CRI runtime (berth, and Debian's containerd as
// the baseline, on the same OCI runtime) and prints the ratios against the
// targets. make bench runs it.
package bench

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/runtime/network"
)

// containerd is a containerd 1.6 started for the comparison, on its own
// temporary root, with the same mirrors, CNI plugins and OCI runtime.
type containerd struct {
	dir, socket string
	cmd         *exec.Cmd
	log         bytes.Buffer
}

func startContainerd(t *testing.T, mirror, runtimePath string) *containerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatalf("containerd not installed (apt-get install containerd; make test-deps does): %v", err)
	}
	dir, err := os.MkdirTemp("", "bench-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{dir: dir, socket: filepath.Join(dir, "c.sock")}
	cni := filepath.Join(dir, "cni")
	// Its own bridge and subnet, so that it and berth never share one.
	if err := os.MkdirAll(cni, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := network.WriteDefaultConf(cni, "10.89.0.0/16"); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(filepath.Join(cni, network.DefaultConfName))
	conf = bytes.ReplaceAll(conf, []byte(`"berth0"`), []byte(`"benchctrd0"`))
	conf = bytes.ReplaceAll(conf, []byte(`"name": "berth"`), []byte(`"name": "benchctrd"`))
	if err := os.WriteFile(filepath.Join(cni, network.DefaultConfName), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	var mirrors strings.Builder
	for _, host := range []string{"docker.io", "registry.k8s.io"} {
		fmt.Fprintf(&mirrors, "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.%q]\n        endpoint = [%q]\n", host, "http://"+mirror)
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, runtimePath, cni, mirrors.String())
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config", cfgPath, "--log-level", "warn")
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	waitSocket(t, c.socket, &c.log)
	return c
}

func (c *containerd) stop() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
		}
	}
	// Shims it left, and their mounts, go with the temporary root.
	killProcs(c.dir)
	_ = exec.Command("sh", "-c", "grep -o ' "+c.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	_ = os.RemoveAll(c.dir)
}

func waitSocket(t *testing.T, path string, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no socket at %s:\n%s", path, log.String())
}

// killProcs kills processes whose command line mentions dir.
func killProcs(dir string) {
	for _, pid := range procsMatching(dir) {
		_ = exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
	}
}

// procsMatching lists processes whose command line contains every one of
// subs.
func procsMatching(subs ...string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		// Arguments are NUL-separated.
		if err != nil {
			continue
		}
		line := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			pids = append(pids, pid)
		}
	}
	return pids
}

// memory sums RSS and PSS (KiB) of pids from smaps_rollup.
func memory(pids []int) (rss, pss int) {
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "Rss:":
				rss += n
			case "Pss:":
				pss += n
			}
		}
	}
	return rss, pss
}

func randomString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}
