package pinns

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestSysctlKind(t *testing.T) {
	for name, want := range map[string]Kind{
		"net.ipv4.ip_forward": Net, "net.ipv4.conf.eth0/100.rp_filter": Net,
		"kernel.shm_rmid_forced": IPC, "kernel.msgmax": IPC, "kernel.sem": IPC, "fs.mqueue.msg_max": IPC,
		"kernel.hostname": UTS,
	} {
		if got, ok := SysctlKind(name); !ok || got != want {
			t.Errorf("SysctlKind(%s) = %v %v, want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"vm.swappiness", "kernel.pid_max", "fs.file-max", "kernel.semx"} {
		if k, ok := SysctlKind(name); ok {
			t.Errorf("SysctlKind(%s) = %v, want not namespaced", name, k)
		}
	}
	if _, err := Sysctls(map[string]string{"net.core.somaxconn": "1024", "vm.overcommit_memory": "1"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Sysctls with a node-wide one: %v, want InvalidArgument", err)
	}
}

// TestPin pins a UTS namespace with a hostname and an IPC namespace with
// a sysctl, enters them and reads both back.
func TestPin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and mounts")
	}
	dir := t.TempDir()
	uts, ipc := filepath.Join(dir, "uts"), filepath.Join(dir, "ipc")
	if err := Pin(uts, UTS, func() error { return unix.Sethostname([]byte("pinned-host")) }); err != nil {
		t.Fatal(err)
	}
	defer Remove(uts)
	if err := Pin(ipc, IPC, func() error { return WriteSysctls(map[string]string{"kernel.shm_rmid_forced": "1"}) }); err != nil {
		t.Fatal(err)
	}
	defer Remove(ipc)
	if err := Pin(filepath.Join(dir, "bad"), IPC, func() error { return WriteSysctls(map[string]string{"kernel.shm_nope": "1"}) }); err == nil {
		t.Error("Pin with a failing setup succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
		t.Errorf("failed Pin left its file: %v", err)
	}

	type result struct {
		host, rmid string
		err        error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // dies with the goroutine, in the pinned namespaces
		var r result
		for _, p := range []struct {
			path string
			flag int
		}{{uts, unix.CLONE_NEWUTS}, {ipc, unix.CLONE_NEWIPC}} {
			fd, err := unix.Open(p.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Setns(fd, p.flag)
				unix.Close(fd)
			}
			if err != nil {
				r.err = err
				done <- r
				return
			}
		}
		var u unix.Utsname
		if r.err = unix.Uname(&u); r.err == nil {
			r.host = unix.ByteSliceToString(u.Nodename[:])
		}
		b, err := os.ReadFile("/proc/sys/kernel/shm_rmid_forced")
		r.rmid, r.err = string(b), err
		done <- r
	}()
	r := <-done
	if r.err != nil || r.host != "pinned-host" || r.rmid != "1\n" {
		t.Errorf("in the pinned namespaces: hostname %q, shm_rmid_forced %q, err %v", r.host, r.rmid, r.err)
	}
	if h, _ := os.Hostname(); h == "pinned-host" {
		t.Error("the test's own hostname changed")
	}
	if err := Remove(uts); err != nil {
		t.Error(err)
	}
	if err := Remove(uts); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestNormalizeSysctl(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.ip_forward":              "net.ipv4.ip_forward",
		"net/ipv4/ip_forward":              "net.ipv4.ip_forward",
		"net.ipv4.conf.eth0/100.rp_filter": "net.ipv4.conf.eth0/100.rp_filter",
		"net/ipv4/conf/eth0.100/rp_filter": "net.ipv4.conf.eth0/100.rp_filter",
		"kernel.shm_rmid_forced":           "kernel.shm_rmid_forced",
	} {
		if got, err := NormalizeSysctl(in); err != nil || got != want {
			t.Errorf("NormalizeSysctl(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	sysctls, err := Sysctls(map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "1"})
	if err != nil || sysctls[Net]["net.ipv4.conf.eth0/100.rp_filter"] != "1" {
		t.Errorf("Sysctls in slash form = %v, %v", sysctls, err)
	}
	if _, err := Sysctls(map[string]string{"net/ipv4/ip_forward": "1", "net.ipv4.ip_forward": "0"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("one sysctl in both forms: %v, want InvalidArgument", err)
	}
	if _, err := sysctlPath("net..x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("sysctlPath with an empty component: %v", err)
	}
}

// TestWriteSysctlsStaysInProcSys writes through a stand-in /proc/sys: a
// name is a path below it, never above.
func TestWriteSysctlsStaysInProcSys(t *testing.T) {
	base := t.TempDir()
	old := procSys
	procSys = filepath.Join(base, "sys")
	defer func() { procSys = old }()
	for _, d := range []string{"sys/net/ipv4/conf/eth0.100", "sys/kernel", "kernel"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"sys/net/ipv4/conf/eth0.100/rp_filter", "sys/kernel/core_pattern", "kernel/core_pattern"} {
		if err := os.WriteFile(filepath.Join(base, f), []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSysctls(map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "2"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "sys/net/ipv4/conf/eth0.100/rp_filter")); string(b) != "2" {
		t.Errorf("rp_filter = %q", b)
	}
	for _, name := range []string{"net.//.kernel.core_pattern", "net/../kernel/core_pattern", "net.ipv4.conf.eth0/../../../..kernel.core_pattern"} {
		if err := WriteSysctls(map[string]string{name: "|/tmp/x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("WriteSysctls(%q): %v, want InvalidArgument", name, err)
		}
	}
	for _, f := range []string{"sys/kernel/core_pattern", "kernel/core_pattern"} {
		if b, _ := os.ReadFile(filepath.Join(base, f)); string(b) != "0" {
			t.Errorf("%s was written: %q", f, b)
		}
	}
}
