// Package bench measures a CRI runtime (berth, beside containerd 2.4.2,
// the baseline, and Debian's containerd 1.6.20, all on the same OCI
// runtime) and prints the ratios against the targets. make bench runs
// TestBench (one pod at a time and 20 at once), make bench-scale TestScale
// (110 and 250 pods under a kubelet's probe and stats load).
// TestProfileBurst and TestCNIConcurrency are the profiling aids behind
// the README's account of where the time goes.
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

// containerd is a containerd started for the comparison (Debian's 1.6.20,
// or 2.4.2 built by test/nodeconformance/build.sh), on its own temporary
// root, with the same registry (as mirror), CNI plugins and OCI runtime as
// berth.
type containerd struct {
	name, version, dir, socket string
	bin                        string
	args, env                  []string
	cmd                        *exec.Cmd
	log                        bytes.Buffer
	done                       chan struct{}
}

// ctrdOptions shape a containerd for the comparison.
type ctrdOptions struct {
	// Version is "1.6.20" (Debian's, from $PATH) or "2.4.2" (from Bin).
	Version string
	// Bin is the directory of containerd 2.x and its runc shim.
	Bin string
	// Mirror is the loopback registry (host:port) every image comes from.
	Mirror string
	// Runtime is the OCI runtime binary (the same as berth's handler).
	Runtime string
	// CNI writes the network configuration into the conf dir it gets;
	// nil writes berth's default network on a bridge and subnet of its
	// own.
	CNI func(dir string) error
}

// containerd16Config is containerd 1.6's configuration (version 2).
const containerd16Config = `version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[4]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[6]q
`

// containerd2Config is containerd 2.x's (version 4): the CRI plugin is
// split in images and runtime, mirrors are hosts.toml files only, and
// restrict_oom_score_adj is needed here (this machine refuses an
// oom_score_adj below the caller's, see shared/ENVIRONMENT.md). NRI is
// off: berth's is off by default too.
const containerd2Config = `version = 4
root = %[1]q
state = %[2]q
[plugins.'io.containerd.server.v1.grpc']
  address = %[3]q
[plugins.'io.containerd.server.v1.ttrpc']
  address = %[7]q
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[6]q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[4]q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %[5]q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`

// ctrdSubnets keep each containerd's default network off berth's and the
// other's.
var ctrdSubnets = map[string]string{"1.6.20": "10.89.0.0/16", "2.4.2": "10.87.0.0/16"}

func startContainerd(t *testing.T, o ctrdOptions) *containerd {
	t.Helper()
	c := &containerd{name: "containerd " + o.Version, version: o.Version, env: os.Environ()}
	tmpl := containerd2Config
	switch o.Version {
	case "1.6.20":
		bin, err := exec.LookPath("containerd")
		if err != nil {
			t.Fatalf("containerd not installed (apt-get install containerd; make test-deps does): %v", err)
		}
		c.bin, tmpl = bin, containerd16Config
	default:
		c.bin = filepath.Join(o.Bin, "containerd")
		if _, err := os.Stat(c.bin); err != nil {
			t.Fatalf("containerd %s: %v (test/nodeconformance/build.sh containerd builds it; make bench does)", o.Version, err)
		}
		// It finds its shim in $PATH: this build's, not Debian's 1.6 one.
		c.env = append(c.env, "PATH="+o.Bin+":"+os.Getenv("PATH"))
	}
	dir, err := os.MkdirTemp("", "bench-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir, c.socket = dir, filepath.Join(dir, "c.sock")
	cni := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cni, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCNI := o.CNI
	if writeCNI == nil {
		// Berth's default network, on a bridge and subnet of its own.
		bridge := "benchctrd" + strings.ReplaceAll(o.Version, ".", "")
		writeCNI = func(dir string) error { return writeDefaultConfAs(dir, bridge, bridge, ctrdSubnets[o.Version]) }
		// After containerd stops (cleanups run last-registered first).
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	}
	if err := writeCNI(cni); err != nil {
		t.Fatal(err)
	}
	// Mirrors as hosts.toml files (both versions read them).
	hosts := filepath.Join(dir, "certs.d")
	for _, h := range []string{"docker.io", "registry.k8s.io"} {
		conf := fmt.Sprintf("server = \"https://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", h, o.Mirror)
		if err := os.MkdirAll(filepath.Join(hosts, h), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, h, "hosts.toml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(tmpl, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, o.Runtime, cni, hosts, c.socket+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.args = []string{"--config", cfgPath, "--log-level", "warn"}
	t.Cleanup(c.stop)
	c.start(t)
	return c
}

// start runs the daemon (again, after kill) and waits for its socket.
func (c *containerd) start(t *testing.T) {
	t.Helper()
	c.cmd = exec.Command(c.bin, c.args...)
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(c.cmd)
	c.done = done
	waitSocket(t, c.socket, &c.log)
}

// kill kills the daemon with SIGKILL, as a crash would; its shims stay.
func (c *containerd) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *containerd) pid() int { return c.cmd.Process.Pid }

// procs are the daemon and its shims.
func (c *containerd) procs() []int {
	return append([]int{c.pid()}, procsMatching("containerd-shim-runc-v2 -namespace k8s.io -id", c.dir)...)
}

func (c *containerd) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	// Shims it left, and their mounts, go with the temporary root.
	killProcs(c.dir)
	time.Sleep(500 * time.Millisecond)
	_ = exec.Command("sh", "-c", "grep -o ' "+c.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	_ = os.RemoveAll(c.dir)
}

// writeDefaultConfAs writes berth's default network for subnet into dir
// under another bridge and network name.
func writeDefaultConfAs(dir, bridge, name, subnet string) error {
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

// sharedConf is the standard CNI configuration both runtimes get in the
// shared-network runs, as a kubeadm-style node has it: the bridge plugin
// masquerading the pods' traffic itself (ipMasq: a chain per pod in the
// nat table), host-local addresses and portmap. Only the names, the
// subnet and host-local's directory differ per runtime (they run side by
// side).
func sharedConf(bridge, name, subnet, dataDir string) []byte {
	return []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, name, bridge, subnet, dataDir))
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
