package cgroups

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthrt/berth/runtime/host"
)

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"kubepods-besteffort-pod1.slice": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
		"system.slice":                   "/system.slice",
		"-.slice":                        "/",
	} {
		if got := ExpandSlice(in); got != want {
			t.Errorf("ExpandSlice(%q) = %q, want %q", in, got, want)
		}
	}
	r := Reader{Driver: "systemd"}
	if got := r.Dir("system.slice:berth:abc"); got != "/system.slice/berth-abc.scope" {
		t.Errorf("Dir = %q", got)
	}
	if got := r.Dir("berth-p1.slice"); got != "/berth.slice/berth-p1.slice" {
		t.Errorf("Dir of a pod slice = %q", got)
	}
}

// TestReadRealCgroup puts a process in a fresh cgroup and reads it back.
func TestReadRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mode := host.Cgroups()
	r := Reader{Mode: mode, Driver: "cgroupfs"}
	dir := "/berth-test-" + strconv.Itoa(os.Getpid())
	roots := []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/pids"}
	if mode == host.CgroupV2 {
		roots = []string{"/sys/fs/cgroup"}
	}
	if mode == host.CgroupHybrid {
		roots = append(roots, "/sys/fs/cgroup/unified")
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for _, root := range roots {
		if _, err := os.Stat(root); err != nil {
			continue
		}
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	s, err := r.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUNanos == 0 || s.MemUsage == 0 || s.Processes != 1 {
		t.Errorf("sample = %+v", s)
	}
	// Where the kernel keeps PSI and the host has a cgroup2 tree, the
	// cgroup has its pressure; where it accounts swap, its swap.
	if _, err := os.Stat("/proc/pressure/cpu"); err == nil && mode != host.CgroupV1 {
		if p := s.Pressure; p.CPU == nil || p.CPU.Some == nil || p.Memory == nil || p.IO == nil {
			t.Errorf("pressure = %+v", p)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.usage_in_bytes"); err == nil && !s.HasSwap {
		t.Error("memory.memsw is there, the sample has no swap")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := r.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(dir); err == nil {
		t.Error("removed cgroup still reads")
	}
}

// TestRemoveWaitsForAnExitingProcess: a process on its way out (here one
// that exits 50 ms after the removal starts) does not fail the removal;
// one that stays does, and its cgroup stays with it.
func TestRemoveWaitsForAnExitingProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	r := Reader{Mode: host.Cgroups(), Driver: "cgroupfs"}
	root := "/sys/fs/cgroup/pids"
	if r.Mode == host.CgroupV2 {
		root = "/sys/fs/cgroup"
	}
	for _, c := range []struct {
		sleep   string
		removed bool
	}{{"0.05", true}, {"30", false}} {
		dir := "/berth-test-" + strconv.Itoa(os.Getpid()) + "-" + c.sleep
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// The shell joins the cgroup itself, then becomes the sleeper.
		cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec sleep "$2"`, "sh", d, c.sleep)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		for deadline := time.Now().Add(5 * time.Second); len(r.Procs(dir)) == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the process did not join its cgroup")
			}
		}
		err := r.Remove(dir)
		_, statErr := os.Stat(d)
		if c.removed && (err != nil || statErr == nil) {
			t.Errorf("a process exiting in 50 ms: %v (cgroup there: %v)", err, statErr == nil)
		}
		if !c.removed && (err == nil || statErr != nil) {
			t.Errorf("a process that stays: %v, want an error and the cgroup kept", err)
		}
		_ = cmd.Process.Kill()
		<-exited
		_ = r.Remove(dir)
	}
}
