package nodeconformance

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/test/fixtures"
)

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
	if err := fixtures.WriteContainerdHosts(hosts, mirror, "registry.k8s.io", "docker.io", "gcr.io"); err != nil {
		t.Fatal(err)
	}
	cni := filepath.Join(base, "cni")
	if err := writeBridgeConf(cni, "ncctrd0", "nc-containerd", "10.90.0.0/16"); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(base, "containerd.sock")
	cfg := filepath.Join(base, "config.toml")
	// containerd 2.4 for the comparison, on the same runc as berth's
	// default handler, a CNI bridge of its own.
	body := fixtures.Containerd2{Root: filepath.Join(base, "root"), State: filepath.Join(base, "state"),
		Socket: socket, TTRPCSocket: socket + ".ttrpc", Runc: runc, HostsDir: hosts,
		PauseImage: "registry.k8s.io/pause:3.10.2", CNIConfDir: cni, CNIBinDirs: []string{"/usr/lib/cni", "/opt/cni/bin"},
		NetnsUnderState: true}.TOML()
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
