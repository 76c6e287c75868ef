package nodeconformance

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/runtime/network"
)

// containerdConfig is containerd 2.4's configuration (version 4) for the
// comparison: the same runc as berth's default handler, the registry
// mirrors in hosts.toml files (config_path; the older mirrors table is
// gone in 2.x), a CNI bridge of its own, and restrict_oom_score_adj,
// without which it asks runc for an oom_score_adj below its own, which
// this machine refuses (see shared/ENVIRONMENT.md).
const containerdConfig = `version = 4
root = %[1]q
state = %[2]q
[plugins.'io.containerd.server.v1.grpc']
  address = %[3]q
[plugins.'io.containerd.server.v1.ttrpc']
  address = %[4]q
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10.2'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[5]q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni', '/opt/cni/bin']
    conf_dir = %[7]q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`

// startContainerd runs containerd and its runc shim from bin (built by
// build.sh) on a fresh root, with the registry at mirror for the hosts
// the suite pulls from; it returns the CRI socket. The root is under
// /tmp, not the test's directory: unix socket paths are short.
func startContainerd(t *testing.T, bin, logDir, mirror, runc string) string {
	t.Helper()
	base, err := os.MkdirTemp("", "nc-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanContainerd(base) })
	hosts := filepath.Join(base, "certs.d")
	for _, h := range []string{"registry.k8s.io", "docker.io", "gcr.io"} {
		conf := fmt.Sprintf("server = \"https://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", h, mirror)
		if err := os.MkdirAll(filepath.Join(hosts, h), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, h, "hosts.toml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cni := filepath.Join(base, "cni")
	if err := writeBridgeConf(cni, "ncctrd0", "nc-containerd", "10.90.0.0/16"); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(base, "containerd.sock")
	cfg := filepath.Join(base, "config.toml")
	body := fmt.Sprintf(containerdConfig, filepath.Join(base, "root"), filepath.Join(base, "state"), socket, socket+".ttrpc", hosts, runc, cni)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// containerd finds its shim in $PATH: this build's first, not
	// Debian's 1.6 one in /usr/bin.
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	p := start(t, logDir, "containerd", filepath.Join(bin, "containerd"), "--config", cfg, "--log-level", "info")
	p.waitFor(t, "socket", time.Minute, func() bool {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return socket
}

// writeBridgeConf writes berth's default bridge network for subnet into
// dir under another bridge and network name, so that the runtimes never
// share a bridge (or host-local's reservations) with berth.
func writeBridgeConf(dir, bridge, name, subnet string) error {
	if err := network.WriteDefaultConf(dir, subnet); err != nil {
		return err
	}
	path := filepath.Join(dir, network.DefaultConfName)
	conf, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	conf = bytes.ReplaceAll(conf, []byte(strconv.Quote(network.DefaultBridge)), []byte(strconv.Quote(bridge)))
	conf = bytes.ReplaceAll(conf, []byte(`"name": "`+network.DefaultNetworkName+`"`), []byte(`"name": `+strconv.Quote(name)))
	return os.WriteFile(path, conf, 0o644)
}

// cleanContainerd removes what containerd left under base once it
// stopped: its shims (they outlive it by design) and their mounts.
func cleanContainerd(base string) {
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "containerd-shim") && strings.Contains(string(cmd), base) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(time.Second)
	unmountUnder(base)
	_ = os.RemoveAll(base)
}
