package direct

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts, namespaces and capability changes")
	}
}

// The helper must not learn which capabilities exist from the container's
// view: a container that bind-mounts "-1" over its
// /proc/sys/kernel/cap_last_cap (in a user and mount namespace of its own)
// once made it drop nothing. The child runs dropBounding in a mount
// namespace where that file is faked, then reports its bounding set.
func TestAttackFakedCapLastCap(t *testing.T) {
	requireRoot(t)
	if os.Getenv("BERTH_TEST_FAKED_CAPLAST") == "1" {
		fakedCapLastCapChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAttackFakedCapLastCap$")
	cmd.Env = append(os.Environ(), "BERTH_TEST_FAKED_CAPLAST=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "bounding=0000000000000001") {
		t.Fatalf("bounding set after dropping all but CAP_CHOWN under a faked cap_last_cap:\n%s", out)
	}
}

func fakedCapLastCapChild() {
	runtime.LockOSThread()
	fail := func(what string, err error) {
		os.Stdout.WriteString(what + ": " + err.Error() + "\n")
		os.Exit(1)
	}
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		fail("unshare", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("private", err)
	}
	fake := filepath.Join(os.TempDir(), "berth-fake-cap-last-cap")
	if err := os.WriteFile(fake, []byte("-1\n"), 0o600); err != nil {
		fail("write", err)
	}
	defer os.Remove(fake)
	if err := unix.Mount(fake, "/proc/sys/kernel/cap_last_cap", "", unix.MS_BIND, ""); err != nil {
		fail("bind", err)
	}
	if err := dropBounding(&specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}); err != nil {
		fail("dropBounding", err)
	}
	var mask uint64
	for i := 0; i <= maxCap; i++ {
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err == nil && in == 1 {
			mask |= 1 << uint(i)
		}
	}
	fmt.Printf("bounding=%016x\n", mask)
}

// A pinned init that leaves its namespaces (as `unshare -U -r -m` in the
// attack does) is refused; one that exits is gone.
func TestAttackInitLeavesNamespaces(t *testing.T) {
	requireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	cmd := exec.Command("/bin/sh", "-c", "read x; exec "+unshare+" -m sleep 100")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	in, err := PinInit(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.Verify(); err != nil {
		t.Fatalf("verify right after pinning: %v", err)
	}
	stdin.Close() // now it enters a mount namespace of its own
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = in.Verify()
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, ErrNamespacesChanged) || !strings.Contains(err.Error(), "mnt") {
		t.Fatalf("verify after the init left its mount namespace: %v", err)
	}
	// What was pinned is still the original: the descriptor a helper joins.
	pidfd, ns, err := in.Dup([]string{"mnt"})
	if err != nil {
		t.Fatal(err)
	}
	var pinned, self unix.Stat_t
	_ = unix.Fstat(int(ns[0].Fd()), &pinned)
	_ = unix.Stat("/proc/self/ns/mnt", &self)
	pidfd.Close()
	ns[0].Close()
	if pinned.Ino != self.Ino {
		t.Errorf("pinned mount namespace %d is not the one the init was created in (%d)", pinned.Ino, self.Ino)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := in.Verify(); !errors.Is(err, ErrInitGone) {
		t.Errorf("verify after the init was reaped: %v", err)
	}
	if err := in.Signal(unix.SIGKILL); !errors.Is(err, unix.ESRCH) {
		t.Errorf("signal after the init was reaped: %v", err)
	}
}

// A v1 hierarchy mounted with an option the helper did not know
// (favordynmods, as README suggests for faster exec) was skipped silently
// and the process ran outside the container's memory cgroup.
func TestAttackCgroupMountOptions(t *testing.T) {
	mountinfo := `32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,favordynmods,memory
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpuacct,cpu,nsdelegate
34 31 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 /sub /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	ctrls := map[string]bool{"memory": true, "cpu": true, "cpuacct": true, "pids": true}
	got, err := parseCgroupMounts(strings.NewReader(mountinfo), ctrls)
	if err != nil {
		t.Fatal(err)
	}
	for field, point := range map[string]string{
		"memory": "/sys/fs/cgroup/memory", "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
		"name=systemd": "/sys/fs/cgroup/systemd", "": "/sys/fs/cgroup/unified",
	} {
		if m, ok := got[hierarchyKey(strings.Split(field, ","))]; !ok || m.Point != point {
			t.Errorf("hierarchy %q: %+v, %v (all: %v)", field, m, ok, got)
		}
	}
}

// An init that is not the pinned process (pid reused) never has its
// cgroups joined; and a process that could not join every hierarchy of
// the init fails.
func TestJoinCgroupsChecks(t *testing.T) {
	gone := errors.New("gone")
	mounts, err := HostCgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if err := joinCgroups(os.Getpid(), mounts, func() error { return gone }); !errors.Is(err, gone) {
		t.Errorf("join with a dead init: %v", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	// Joining one's own cgroups changes nothing, and must match.
	if err := joinCgroups(os.Getpid(), mounts, func() error { return nil }); err != nil {
		t.Errorf("join own cgroups: %v", err)
	}
}
