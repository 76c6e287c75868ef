package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// node is a network namespace of the test's own in which a berthd runs
// (through nsenter): the subnet tests give it interfaces that hold
// berth's default subnet and move its berth0 to other subnets, which in
// the host's namespace would take the berth0 that other tests share.
// The fixture registry, on the host's loopback, is reached through a
// proxy listening on the namespace's.
type node struct {
	name, path string
	// bin holds a berthd that enters the namespace, and berth-shim.
	bin     string
	mirrors map[string][]string
}

func newNode(t *testing.T, suffix string) *node {
	t.Helper()
	harness.RequireRoot(t)
	n := &node{name: fmt.Sprintf("berthe2e%d%s", os.Getpid(), suffix)}
	n.path = filepath.Join("/run/netns", n.name)
	_ = exec.Command("ip", "netns", "del", n.name).Run() // a crashed run's
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	n.ip(t, "link", "set", "lo", "up")

	reg := fixtures.Registry(t)
	n.mirrors = fixtures.Mirrors(&registry.Server{Host: n.proxy(t, reg.Host)})

	real := harness.Binaries(t)
	n.bin = t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nexec nsenter --net=%s %s \"$@\"\n", n.path, filepath.Join(real, "berthd"))
	if err := os.WriteFile(filepath.Join(n.bin, "berthd"), []byte(script), 0o755); err != nil { //nolint:gosec // an executable wrapper
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "berth-shim"), filepath.Join(n.bin, "berth-shim")); err != nil {
		t.Fatal(err)
	}
	return n
}

// ip runs ip(8) in the namespace.
func (n *node) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// holder adds an interface holding addr that belongs to no CNI network:
// a dummy, or where the kernel has no dummy driver a bridge (what
// containerd's cni0 is).
func (n *node) holder(t *testing.T, name, addr string) {
	t.Helper()
	if err := exec.Command("ip", "-n", n.name, "link", "add", name, "type", "dummy").Run(); err != nil {
		n.ip(t, "link", "add", name, "type", "bridge")
	}
	n.ip(t, "addr", "add", addr, "dev", name)
	n.ip(t, "link", "set", name, "up")
}

// proxy listens on the namespace's loopback and forwards each connection
// to target on the host's; it returns the listening address.
func (n *node) proxy(t *testing.T, target string) string {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	rc := make(chan result, 1)
	go func() {
		// This thread enters the namespace and is never unlocked: it
		// ends with the goroutine instead of running other code there.
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(n.path)
		if err != nil {
			rc <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			rc <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		rc <- result{ln, err}
	}()
	r := <-rc
	if r.err != nil {
		t.Fatalf("proxy in %s: %v", n.name, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return r.ln.Addr().String()
}

// confSubnets reads the subnets of berth's default conflist.
func confSubnets(t *testing.T, b *harness.Berthd) []string {
	t.Helper()
	list, err := network.LoadConfList(filepath.Join(filepath.Dir(b.Root), "cni", network.DefaultConfName))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range network.ConfSubnets(list) {
		out = append(out, s.String())
	}
	return out
}

// reachable checks that from's container fetches the page web serves.
func reachable(t *testing.T, client runtimeapi.RuntimeServiceClient, from, web netPod) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := execSync(client, from.ctr, 10, "wget", "-q", "-O", "-", "http://"+web.ip+"/")
		if err == nil && string(resp.GetStdout()) == "hello\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s cannot fetch from %s: %v %s", from.ip, web.ip, err, resp.GetStderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const helloServer = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"

// TestSubnetConflict: an interface already holds 10.88.0.1/16, as
// containerd's cni0 or podman's bridge would. berthd gives berth0 a free
// /16 instead, says so, and its pods reach each other; berthd check
// reports an overlap with the network in use; a default_subnet set
// explicitly to the taken subnet stops berthd with the reason.
func TestSubnetConflict(t *testing.T) {
	n := newNode(t, "c")
	n.holder(t, "berthdummy0", "10.88.0.1/16")

	b := harness.Start(t, harness.Options{Bin: n.bin, Mirrors: n.mirrors, DefaultRuntime: "runc"})
	if got := confSubnets(t, b); !slices.Equal(got, []string{"10.90.0.0/16"}) {
		t.Fatalf("default network subnets = %v, want the first free candidate 10.90.0.0/16", got)
	}
	if log := b.Log(); !strings.Contains(log, "takenBy=") || !strings.Contains(log, "berthdummy0") || !strings.Contains(log, "subnet=10.90.0.0/16") {
		t.Errorf("berthd did not log the subnet it picked:\n%s", log)
	}

	dir := t.TempDir()
	client := b.Client(t)
	b.Crictl(t, "pull", "busybox:1.36")
	web := runNetPod(t, b, dir, "subnet-web", nil, helloServer)
	cl := runNetPod(t, b, dir, "subnet-client", nil, "sleep 600")
	for _, p := range []netPod{web, cl} {
		if !strings.HasPrefix(p.ip, "10.90.") {
			t.Errorf("pod IP %s is not in 10.90.0.0/16", p.ip)
		}
	}
	reachable(t, client, cl, web)

	t.Run("check", func(t *testing.T) {
		check := func() string {
			t.Helper()
			// Other prerequisites may fail on this host: only the
			// subnet lines are looked at.
			out, _ := exec.Command(filepath.Join(n.bin, "berthd"), "--config", b.ConfigPath, "check").CombinedOutput()
			var lines []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "cni subnet") {
					lines = append(lines, l)
				}
			}
			return strings.Join(lines, "\n")
		}
		if got := check(); !strings.HasPrefix(got, "ok") || !strings.Contains(got, "cni subnet 10.90.0.0/16") {
			t.Errorf("check with no overlap:\n%s", got)
		}
		n.holder(t, "berthdummy1", "10.90.200.1/24")
		defer n.ip(t, "link", "del", "berthdummy1")
		if got := check(); !strings.HasPrefix(got, "FAIL") || !strings.Contains(got, "address 10.90.200.1/24 on berthdummy1") {
			t.Errorf("check with an overlap:\n%s", got)
		}
	})

	t.Run("explicit", func(t *testing.T) {
		base, err := os.MkdirTemp("", "berth-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
		cfg := fmt.Sprintf("root = %q\nstate = %q\nsocket = %q\nshim_path = %q\n[cni]\nconf_dir = %q\ncache_dir = %q\ndefault_subnet = \"10.88.0.0/16\"\n",
			filepath.Join(base, "root"), filepath.Join(base, "state"), filepath.Join(base, "state", "berth.sock"),
			filepath.Join(n.bin, "berth-shim"), filepath.Join(base, "cni"), filepath.Join(base, "cni-cache"))
		if err := os.WriteFile(filepath.Join(base, "config.toml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(n.bin, "berthd"), "--config", filepath.Join(base, "config.toml")).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("berthd with a taken explicit subnet: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "cni.default_subnet 10.88.0.0/16 overlaps") || !strings.Contains(string(out), "berthdummy0") {
			t.Errorf("berthd's refusal does not give the reason:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(base, "cni", network.DefaultConfName)); err == nil {
			t.Error("berthd wrote a conflist on the taken subnet")
		}
	})
}

// TestSubnetPodCIDR: UpdateRuntimeConfig's pod_cidr renders berth's
// default network on it: new pods get addresses there and reach each
// other, a pod on the old subnet still goes away cleanly, the same CIDR
// again leaves the file alone, a restart keeps it, a malformed one is
// InvalidArgument.
func TestSubnetPodCIDR(t *testing.T) {
	n := newNode(t, "p")
	b := harness.Start(t, harness.Options{Bin: n.bin, Mirrors: n.mirrors, DefaultRuntime: "runc"})
	if got := confSubnets(t, b); !slices.Equal(got, []string{"10.88.0.0/16"}) {
		t.Fatalf("default network subnets = %v", got)
	}
	dir := t.TempDir()
	client := b.Client(t)
	b.Crictl(t, "pull", "busybox:1.36")
	old := runNetPod(t, b, dir, "cidr-old", nil, "sleep 600")
	if !strings.HasPrefix(old.ip, "10.88.") {
		t.Errorf("pod IP %s before the pod CIDR", old.ip)
	}

	update := func(cidr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := client.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
			RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}})
		return err
	}
	if err := update("10.66.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := confSubnets(t, b); !slices.Equal(got, []string{"10.66.1.0/24"}) {
		t.Fatalf("after pod_cidr: %v", got)
	}
	web := runNetPod(t, b, dir, "cidr-web", nil, helloServer)
	cl := runNetPod(t, b, dir, "cidr-client", nil, "sleep 600")
	for _, p := range []netPod{web, cl} {
		if !strings.HasPrefix(p.ip, "10.66.1.") {
			t.Errorf("pod IP %s is not in the pod CIDR 10.66.1.0/24", p.ip)
		}
	}
	reachable(t, client, cl, web)
	b.Crictl(t, "rmp", "-f", old.id)

	conf := filepath.Join(filepath.Dir(b.Root), "cni", network.DefaultConfName)
	before, err := os.Stat(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := update("10.66.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(conf); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the same pod CIDR rewrote the conflist (%v → %v, %v)", before.ModTime(), after.ModTime(), err)
	}
	for _, bad := range []string{"10.66.1.7/24", "not-a-cidr"} {
		if err := update(bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("pod_cidr %q: %v, want InvalidArgument", bad, err)
		}
	}

	if err := b.Stop(t); err != nil {
		t.Fatal(err)
	}
	b.Restart(t)
	if got := confSubnets(t, b); !slices.Equal(got, []string{"10.66.1.0/24"}) {
		t.Errorf("after a restart: %v", got)
	}
	reachable(t, client, cl, web)
}
