package direct

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/caps"
)

func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }

// ptraceSeccompGetFilter is PTRACE_SECCOMP_GET_FILTER.
const ptraceSeccompGetFilter = 0x420c

// ReadFilter reads the seccomp program the runtime installed in pid: the
// oldest of its filters (a program may add its own later; those are not
// the container's). pid is stopped for the moment it takes. Call it on a
// locked OS thread: a tracee answers only the thread that attached.
func ReadFilter(pid int) ([]byte, error) {
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fmt.Errorf("read the container's seccomp filter: attach: %w", err)
	}
	// Detaching needs the tracee stopped; if it never stops, exiting
	// detaches.
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fmt.Errorf("read the container's seccomp filter: interrupt: %w", err)
	}
	if err := waitStopped(pid, 2*time.Second); err != nil {
		return nil, err
	}
	defer unix.PtraceDetach(pid)
	var prog []byte
	for i := 0; ; i++ {
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(pid), uintptr(i), 0, 0, 0)
		if e == unix.ENOENT {
			break
		}
		if e != 0 {
			return nil, fmt.Errorf("read the container's seccomp filter %d: %w", i, e)
		}
		if n == 0 {
			continue
		}
		buf := make([]unix.SockFilter, n)
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(pid), uintptr(i), uintptr(unsafePointer(&buf[0])), 0, 0); e != 0 {
			return nil, fmt.Errorf("read the container's seccomp filter %d: %w", i, e)
		}
		prog = unsafe.Slice((*byte)(unsafePointer(&buf[0])), len(buf)*int(unsafe.Sizeof(buf[0])))
	}
	if len(prog) == 0 {
		return nil, errors.New("the container's init has no seccomp filter")
	}
	return prog, nil
}

func waitStopped(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read the container's seccomp filter: wait: %w", err)
		case got == pid && ws.Stopped():
			return nil
		case got == pid:
			return fmt.Errorf("read the container's seccomp filter: the container's init ended (%v)", ws)
		}
		if time.Now().After(deadline) {
			return errors.New("read the container's seccomp filter: the container's init did not stop")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// loadFilter installs prog on the calling thread.
func loadFilter(prog []byte, flags uint) error {
	size := int(unsafe.Sizeof(unix.SockFilter{}))
	if len(prog) == 0 || len(prog)%size != 0 {
		return fmt.Errorf("seccomp program of %d bytes", len(prog))
	}
	insns := make([]unix.SockFilter, len(prog)/size)
	copy(unsafe.Slice((*byte)(unsafePointer(&insns[0])), len(prog)), prog)
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafePointer(&fprog))); e != 0 {
		return fmt.Errorf("load the container's seccomp filter: %w", e)
	}
	return nil
}

// StartTime is pid's start time (clock ticks after boot): with the pid, it
// names one process for good.
func StartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat reads pid's state letter and start time from /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses: count from the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	return fields[0][0], start, err
}

// sameProcess says whether pid is still the live process that started at
// start.
func sameProcess(pid int, start uint64) error {
	if state, now, err := procStat(pid); err != nil || now != start || state == 'Z' || state == 'X' {
		return fmt.Errorf("the container's init (pid %d) is gone", pid)
	}
	return nil
}

// joinCgroups moves this process into every cgroup pid is in.
func joinCgroups(pid int) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("container cgroups: %w", err)
	}
	defer f.Close()
	self := []byte(strconv.Itoa(os.Getpid()))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		key := parts[1] // controllers, "name=x", or "" for the unified hierarchy
		m, ok := mounts[key]
		if !ok {
			continue // a hierarchy not mounted here
		}
		rel, err := filepath.Rel(m.root, parts[2])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		procs := filepath.Join(m.point, rel, "cgroup.procs")
		if err := os.WriteFile(procs, self, 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", procs, err)
		}
	}
	return sc.Err()
}

type cgroupMount struct{ point, root string }

// cgroupMounts maps each hierarchy (as /proc/<pid>/cgroup names it) to
// where it is mounted.
func cgroupMounts() (map[string]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]cgroupMount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(after) < 3 {
			continue
		}
		m := cgroupMount{point: fields[4], root: fields[3]}
		switch after[0] {
		case "cgroup2":
			if _, seen := out[""]; !seen {
				out[""] = m
			}
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(after[2], ",") {
				if o == "rw" || o == "ro" || strings.HasPrefix(o, "release_agent") || o == "clone_children" || o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" {
					continue
				}
				ctrls = append(ctrls, o)
			}
			key := strings.Join(ctrls, ",")
			if _, seen := out[key]; !seen {
				out[key] = m
			}
		}
	}
	return out, sc.Err()
}

// checkCaps rejects capability names Linux does not have.
func checkCaps(c *specs.LinuxCapabilities) error {
	if c == nil {
		return nil
	}
	var unknown []string
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		_, u := caps.Mask(set)
		unknown = append(unknown, u...)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("unknown capabilities %v", unknown)
	}
	return nil
}

// dropBounding drops from the thread's bounding set what c's lacks (nil:
// everything). It needs CAP_SETPCAP: before the user changes.
func dropBounding(c *specs.LinuxCapabilities) error {
	if c == nil {
		c = &specs.LinuxCapabilities{}
	}
	bounding, _ := caps.Mask(c.Bounding)
	last := len(caps.All) - 1
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	for i := 0; i <= last; i++ {
		if bounding&(1<<uint(i)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", i, err)
		}
	}
	return nil
}

// setCaps sets the thread's effective, permitted, inheritable and ambient
// sets to c's (nil: none).
func setCaps(c *specs.LinuxCapabilities) error {
	if c == nil {
		c = &specs.LinuxCapabilities{}
	}
	eff, _ := caps.Mask(c.Effective)
	perm, _ := caps.Mask(c.Permitted)
	inh, _ := caps.Mask(c.Inheritable)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i].Effective = uint32(eff >> (32 * i))
		data[i].Permitted = uint32(perm >> (32 * i))
		data[i].Inheritable = uint32(inh >> (32 * i))
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for _, name := range c.Ambient {
		n, _ := caps.Number(name)
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(n), 0, 0); err != nil {
			return fmt.Errorf("raise ambient %s: %w", name, err)
		}
	}
	return nil
}
