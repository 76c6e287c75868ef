package direct

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/caps"
)

func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) } //nolint:gosec // the kernel ABI: a sock_filter array read and written as bytes

// ptraceSeccompGetFilter is PTRACE_SECCOMP_GET_FILTER.
const ptraceSeccompGetFilter = 0x420c

// ReadFilter reads the seccomp program the runtime installed in pid: the
// oldest of its filters (a program may add its own later; those are not
// the container's). pid is stopped for the moment it takes. Call it on a
// locked OS thread: a tracee answers only the thread that attached.
// alive is called once pid is attached and stopped: the filter is read
// only from the process that was meant (not from one reusing its pid).
func ReadFilter(pid int, alive func() error) ([]byte, error) {
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
	// A failed detach leaves nothing to do: the tracee is gone or is
	// detached when this tracer exits.
	defer func() { _ = unix.PtraceDetach(pid) }()
	if err := alive(); err != nil {
		return nil, err
	}
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
		prog = unsafe.Slice((*byte)(unsafePointer(&buf[0])), len(buf)*int(unsafe.Sizeof(buf[0]))) //nolint:gosec // see unsafePointer
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
	copy(unsafe.Slice((*byte)(unsafePointer(&insns[0])), len(prog)), prog) //nolint:gosec // see unsafePointer
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafePointer(&fprog))); e != 0 {
		return fmt.Errorf("load the container's seccomp filter: %w", e)
	}
	return nil
}

// joinCgroups moves this process into every cgroup pid is in, then checks
// that it is in exactly those: a hierarchy it could not match would leave
// the process outside the container's limits (fail closed). alive says
// pid was not reaped since its cgroup file was read.
func joinCgroups(pid int, mounts CgroupMounts, alive func() error) error {
	want, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("container cgroups: %w", err)
	}
	if err := alive(); err != nil {
		return err
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		m, ok := mounts[hierarchyKey(strings.Split(parts[1], ","))]
		if !ok {
			continue // compared below: a hierarchy not mounted here fails
		}
		rel, err := filepath.Rel(m.Root, parts[2])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		procs := filepath.Join(m.Point, rel, "cgroup.procs")
		if err := os.WriteFile(procs, self, 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", procs, err)
		}
	}
	got, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("%w: in %q, the container's init in %q", ErrCgroupMismatch, got, want)
	}
	return nil
}

// ErrCgroupMismatch: the helper could not enter every cgroup of the
// container; nothing is started outside its limits.
var ErrCgroupMismatch = errors.New("could not join every cgroup of the container")

// CgroupMounts map each hierarchy, keyed as hierarchyKey keys the
// controller field of /proc/<pid>/cgroup, to where it is mounted.
type CgroupMounts map[string]CgroupMount

// CgroupMount is where a hierarchy is mounted (Point), and which of its
// cgroups is the mount's root (Root).
type CgroupMount struct {
	Point string `json:"point"`
	Root  string `json:"root"`
}

// HostCgroupMounts reads the host's cgroup mounts (the shim's view). A v1
// hierarchy is known by the real controllers (/proc/cgroups) and name=
// among its mount options, whatever other options it has (favordynmods,
// nsdelegate, ...).
func HostCgroupMounts() (CgroupMounts, error) {
	ctrls, err := controllers()
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return parseCgroupMounts(f, ctrls)
}

func parseCgroupMounts(r io.Reader, ctrls map[string]bool) (CgroupMounts, error) {
	infos, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	out := CgroupMounts{}
	for _, mi := range infos {
		var key string
		if mi.FSType == "cgroup" {
			// A v1 hierarchy's controllers are among its superblock options.
			var names []string
			for _, o := range strings.Split(mi.VFSOptions, ",") {
				if ctrls[o] || strings.HasPrefix(o, "name=") {
					names = append(names, o)
				}
			}
			if len(names) == 0 {
				continue
			}
			key = hierarchyKey(names)
		}
		if _, seen := out[key]; !seen {
			out[key] = CgroupMount{Point: mi.Mountpoint, Root: mi.Root}
		}
	}
	return out, nil
}

// hierarchyKey is the order-independent key of a hierarchy's controllers.
func hierarchyKey(names []string) string {
	names = slices.Clone(names)
	slices.Sort(names)
	return strings.Join(names, ",")
}

// controllers are the cgroup controllers this kernel has.
func controllers() (map[string]bool, error) {
	data, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out[f[0]] = true
		}
	}
	return out, nil
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

// maxCap is past every capability number a kernel may have (the
// bounding set is 64 bits wide).
const maxCap = 63

// dropBounding drops from the thread's bounding set what c's lacks (nil:
// everything), and checks that it is gone. It needs CAP_SETPCAP: before
// the user changes. Every number up to maxCap is tried rather than the
// kernel's cap_last_cap: that file would be read in the container's view,
// which the container controls; EINVAL is a number this kernel lacks.
func dropBounding(c *specs.LinuxCapabilities) error {
	if c == nil {
		c = &specs.LinuxCapabilities{}
	}
	bounding, _ := caps.Mask(c.Bounding)
	for i := 0; i <= maxCap; i++ {
		if bounding&(1<<uint(i)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", i, err)
		}
	}
	return checkBounding(bounding)
}

// checkBounding fails unless the thread's bounding set is within allowed.
func checkBounding(allowed uint64) error {
	for i := 0; i <= maxCap; i++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read capability %d of the bounding set: %w", i, err)
		}
		if in == 1 && allowed&(1<<uint(i)) == 0 {
			return fmt.Errorf("capability %d is still in the bounding set", i)
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
