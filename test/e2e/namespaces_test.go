package e2e

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/harness"
)

// TestPodNamespaces checks what the containers of a pod share on every
// handler: network, IPC and UTS namespaces (with the pod's hostname and
// sysctls), and a PID namespace only when the pod asks for one. runc and
// crun pods hold their namespaces without a sandbox process unless they
// share a PID namespace; gVisor's sandbox always runs.
func TestPodNamespaces(t *testing.T) {
	for _, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			before := b.CountLeaks(t)

			t.Run("shared namespaces", func(t *testing.T) {
				cfg := podSpec(dir, "ns")
				cfg.Hostname = "nsbox"
				cfg.LogDirectory = ""
				// The kubelet's default: each container its own PID namespace.
				cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "23", "kernel.shm_rmid_forced": "1"}
				podCfg := writeJSON(t, filepath.Join(dir, "ns-pod.json"), cfg)
				pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
				defer waitNoLeaks(t, b, before)
				defer b.Crictl(t, "rmp", "-f", pod)
				var ids []string
				for _, name := range []string{"a", "b"} {
					ctr := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, name, "sleep 600"), podCfg))
					b.Crictl(t, "start", ctr)
					ids = append(ids, ctr)
				}
				var seen []string
				for _, ctr := range ids {
					script, want := "hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced", "nsbox 23 1"
					if handler == "runsc" {
						// gVisor's own /proc/sys has neither sysctl.
						script, want = "hostname", "nsbox"
					}
					out := strings.Fields(b.Crictl(t, "exec", "-s", ctr, "sh", "-c", script+"; for n in net ipc uts pid; do readlink /proc/self/ns/$n; done"))
					n := len(strings.Fields(want))
					if len(out) != n+4 || strings.Join(out[:n], " ") != want {
						t.Fatalf("container %s: hostname and sysctls = %q, want %q", ctr[:12], out, want)
					}
					seen = append(seen, strings.Join(out[n:], " "))
				}
				a, c := strings.Fields(seen[0]), strings.Fields(seen[1])
				for i, kind := range []string{"net", "ipc", "uts"} {
					if a[i] != c[i] {
						t.Errorf("%s namespace not shared: %s vs %s", kind, a[i], c[i])
					}
				}
				if handler != "runsc" && a[3] == c[3] {
					// gVisor reports one PID namespace id for its sandbox.
					t.Errorf("PID namespace shared without the pod asking: %s", a[3])
				}
				pid := sandboxPid(t, b, pod)
				if want := handler == "runsc"; (pid != 0) != want {
					t.Errorf("sandbox process pid %d; want one: %v", pid, want)
				}
			})

			// A sysctl of no namespace is not a pod's to set.
			t.Run("node-wide sysctl refused", func(t *testing.T) {
				cfg := podSpec(dir, "bad")
				cfg.Hostname, cfg.LogDirectory = "", ""
				cfg.Linux.Sysctls = map[string]string{"vm.swappiness": "10"}
				bad := writeJSON(t, filepath.Join(dir, "bad-pod.json"), cfg)
				if out, err := b.TryCrictl(t, "runp", bad); err == nil || !strings.Contains(out, "vm.swappiness") {
					t.Errorf("pod with a node-wide sysctl: err %v, output %q; want an error naming the sysctl", err, out)
				}
				waitNoLeaks(t, b, before)
			})

			// A shared PID namespace has the sandbox as its init.
			t.Run("shared PID namespace", func(t *testing.T) {
				cfg := podSpec(dir, "shared")
				cfg.Hostname, cfg.LogDirectory = "", ""
				cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
				shared := writeJSON(t, filepath.Join(dir, "shared-pod.json"), cfg)
				pod := strings.TrimSpace(b.Crictl(t, "runp", shared))
				defer waitNoLeaks(t, b, before)
				defer b.Crictl(t, "rmp", "-f", pod)
				ctrCfg := ctrSpec("s", "sleep", "600")
				ctrCfg.LogPath = ""
				ctrCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
				ctr := strings.TrimSpace(b.Crictl(t, "create", pod, writeJSON(t, filepath.Join(dir, "shared-ctr.json"), ctrCfg), shared))
				b.Crictl(t, "start", ctr)
				if handler != "runsc" { // gVisor's init is its own
					if out := b.Crictl(t, "exec", "-s", ctr, "cat", "/proc/1/cmdline"); !strings.HasPrefix(out, "/pause") {
						t.Errorf("pid 1 of a shared PID namespace = %q, want the sandbox's /pause", out)
					}
				}
				if sandboxPid(t, b, pod) == 0 {
					t.Errorf("a pod sharing its PID namespace has no sandbox process")
				}
			})
		})
	}
}

// sandboxPid is the pid of the pod's sandbox process, from berthd's
// verbose pod status.
func sandboxPid(t *testing.T, b *harness.Berthd, pod string) int {
	t.Helper()
	var info podInfo
	b.PodSandboxStatus(t, pod, &info)
	return info.Pid
}

// TestEgressMasquerade connects from a pod to a server outside the pod
// network (in a namespace the test makes, reached through the host): the
// server sees the host's address, not the pod's.
func TestEgressMasquerade(t *testing.T) {
	for _, handler := range []string{"runc", "runsc"} {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			ln := outsideListener(t, fmt.Sprintf("berthext%d", len(handler)))
			dir := t.TempDir()
			pod, _ := podWithContainer(t, b, dir, "egress", "echo hello | nc "+ln.server+" 8080; sleep 600")
			select {
			case got := <-ln.peers:
				if got.ip != ln.host || got.line != "hello" {
					t.Errorf("outside server saw %q from %s, want hello from the host's %s", got.line, got.ip, ln.host)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no connection from the pod reached the outside server")
			}
			b.Crictl(t, "rmp", "-f", pod)
		})
	}
}

type peer struct{ ip, line string }

type outside struct {
	server, host string
	peers        chan peer
}

// outsideListener makes a network namespace joined to the host by a veth
// (host 192.168.251.1/30, namespace .2) and serves TCP 8080 in it,
// reporting each peer's address and first line.
func outsideListener(t *testing.T, name string) *outside {
	t.Helper()
	o := &outside{server: "192.168.251.2", host: "192.168.251.1", peers: make(chan peer, 4)}
	_ = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}})
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	errc := make(chan error, 1)
	lnc := make(chan net.Listener, 1)
	go func() {
		// This thread ends in the new namespace and is never reused.
		runtime.LockOSThread()
		host, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer host.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		ext, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer ext.Close()
		hh, err := netlink.NewHandleAt(host)
		if err != nil {
			errc <- err
			return
		}
		defer hh.Close()
		peerLink, err := hh.LinkByName(name + "p")
		if err == nil {
			err = hh.LinkSetNsFd(peerLink, int(ext))
		}
		if err != nil {
			errc <- err
			return
		}
		in, err := netlink.LinkByName(name + "p")
		if err == nil {
			err = netlink.AddrAdd(in, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(o.server), Mask: net.CIDRMask(30, 32)}})
		}
		if err == nil {
			err = netlink.LinkSetUp(in)
		}
		if err != nil {
			errc <- err
			return
		}
		ln, err := net.Listen("tcp", o.server+":8080")
		if err != nil {
			errc <- err
			return
		}
		lnc <- ln
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("outside namespace: %v", err)
	}
	ln := <-lnc
	t.Cleanup(func() { ln.Close() })
	hostLink, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.AddrAdd(hostLink, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(o.host), Mask: net.CIDRMask(30, 32)}})
	}
	if err == nil {
		err = netlink.LinkSetUp(hostLink)
	}
	if err != nil {
		t.Fatalf("host side of the veth: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			o.peers <- peer{ip: host, line: strings.TrimSpace(line)}
			c.Close()
		}
	}()
	return o
}
