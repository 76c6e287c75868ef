package nodeconformance

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// kubeletConfig is the node's configuration: this host's cgroups v1
// (failCgroupV1: false, cgroupfs), the runtime's socket, and its own
// ports so that it never meets another kubelet's. The API server reaches
// it anonymously (no client certificates here); nothing but the test
// can reach this machine.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[1]s
imageServiceEndpoint: unix://%[1]s
port: %[2]d
healthzPort: %[3]d
readOnlyPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# A shared build machine's disk: evict only when it is really full, and
# never collect the images the suite pulled in the middle of a run.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%%, imagefs.available: 2%%, nodefs.inodesFree: 2%%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`

// kubelet is the node under test.
type kubelet struct {
	rootDir string
}

// startKubelet runs the kubelet on socket, registered as nodeName, and
// waits until its node is Ready and schedulable.
func startKubelet(t *testing.T, bin, dir, logDir, socket, nodeName string, cp *controlPlane) *kubelet {
	t.Helper()
	k := &kubelet{rootDir: filepath.Join(dir, "kubelet")}
	if err := os.MkdirAll(k.rootDir, 0o750); err != nil {
		t.Fatal(err)
	}
	// Volumes the kubelet leaves mounted (it stops with pods on it) go
	// once it is gone; cleanups run last-registered first.
	t.Cleanup(func() { unmountUnder(k.rootDir) })
	cfg := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, kubeletConfig, socket, freePort(t), freePort(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := cp.pki.kubeconfig("kubelet", cp.server, cp.pki.kubeletToken)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, logDir, "kubelet", filepath.Join(bin, "kubelet"),
		"--config", cfg, "--kubeconfig", kc, "--root-dir", k.rootDir, "--hostname-override", nodeName,
		"--node-ip", nodeIP(t), "--v", "2")
	p.waitFor(t, "Ready node "+nodeName, 3*time.Minute, func() bool { return cp.nodeReady(nodeName) })
	return k
}

// nodeIP is the host's address on its default route, the node's
// InternalIP. Left to itself the kubelet resolves the hostname, which is
// 127.0.0.1 on many machines (this one): the API server refuses to proxy
// to a loopback node, and a pod reaching for its hostIP would reach
// itself.
func nodeIP(t *testing.T) string {
	t.Helper()
	// A UDP "connection" sends nothing; it only picks the route (the
	// address is TEST-NET-3, routed like any other).
	c, err := net.Dial("udp4", "203.0.113.1:9")
	if err != nil {
		t.Fatalf("no default route for the node's address: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}
