// Package cgroups reads container and pod cgroups (v1 and v2, through
// containerd/cgroups) for stats, and removes the pod cgroups berth made.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerd/cgroups/v3/cgroup1"
	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/berthrt/berth/runtime/host"
)

// Sample is one reading of a cgroup. CPU times are nanoseconds.
type Sample struct {
	At time.Time
	// CPUNanos is the cumulative CPU time, user and system.
	CPUNanos, UserNanos, SystemNanos uint64
	// CFS bandwidth control.
	Periods, ThrottledPeriods, ThrottledNanos uint64
	// Memory: usage, working set (usage minus inactive file cache), RSS
	// (anonymous memory), page faults, and the rest of the breakdown.
	MemUsage, WorkingSet, RSS, PageFaults, MajorPageFaults                     uint64
	MemCache, MemMapped, MemSwap, MemKernel, MemMaxUsage, MemFailcnt, OOMKills uint64
	// MemLimit is the limit, 0 without one.
	MemLimit uint64
	// HasSwap says the kernel accounts swap (MemSwap is the swap used):
	// cgroup v2's memory.swap.*, v1's memory.memsw.*. SwapLimit is the
	// swap the cgroup may use, when limited (SwapLimited).
	HasSwap, SwapLimited bool
	SwapLimit            uint64
	// Pressure is the cgroup's PSI, where the kernel keeps it.
	Pressure Pressure
	// Processes is the number of tasks; PidsLimit 0 means no limit.
	Processes, PidsLimit uint64
	// IO per device.
	IO []DeviceIO
}

// DeviceIO is one block device's I/O.
type DeviceIO struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// Reader reads cgroups of one driver and mode.
type Reader struct {
	Mode   host.CgroupMode
	Driver string // cgroupfs or systemd
	// Root is where cgroup v2 (and a hybrid host's cgroup2 tree, under
	// unified/) is read; "" is /sys/fs/cgroup. Tests point it at files
	// (v1 controllers then are its subdirectories: memory/, cpuacct/...;
	// "" finds them in the mount table).
	Root string
}

// unlimited is the value above which a limit is none: the kernel rounds
// "max" (and v1's -1) to a page multiple near 2^63.
const unlimited = 1 << 62

func (r Reader) root() string {
	if r.Root == "" {
		return "/sys/fs/cgroup"
	}
	return r.Root
}

// Dir turns an OCI cgroupsPath into a cgroup path relative to a hierarchy
// root: systemd's "slice:prefix:name" becomes the slice path and scope.
func (r Reader) Dir(cgroupsPath string) string {
	if r.Driver != "systemd" {
		return cgroupsPath
	}
	parts := strings.SplitN(cgroupsPath, ":", 3)
	if len(parts) != 3 {
		// A pod's slice, by its name (spec.Pod.CgroupParent).
		if strings.HasSuffix(cgroupsPath, ".slice") && !strings.Contains(cgroupsPath, "/") {
			return ExpandSlice(cgroupsPath)
		}
		return cgroupsPath
	}
	if parts[2] == "" {
		return ExpandSlice(parts[0])
	}
	return path.Join(ExpandSlice(parts[0]), parts[1]+"-"+parts[2]+".scope")
}

// ExpandSlice turns "a-b-c.slice" into "/a.slice/a-b.slice/a-b-c.slice".
func ExpandSlice(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "" || name == "-" {
		return "/"
	}
	out, prefix := "", ""
	for _, comp := range strings.Split(name, "-") {
		prefix += comp
		out += "/" + prefix + ".slice"
		prefix += "-"
	}
	return out
}

// ErrGone is returned for a cgroup that does not exist (any more).
var ErrGone = errors.New("cgroup does not exist")

// Read samples the cgroup at dir (relative to the hierarchy root).
func (r Reader) Read(dir string) (Sample, error) {
	s := Sample{At: time.Now()}
	if r.Mode == host.CgroupV2 {
		return r.readV2(dir, s)
	}
	st, err := r.statV1(dir)
	if err != nil {
		return s, err
	}
	if c := st.CPU; c != nil {
		if c.Usage != nil {
			s.CPUNanos, s.UserNanos, s.SystemNanos = c.Usage.Total, c.Usage.User, c.Usage.Kernel
		}
		if t := c.Throttling; t != nil {
			s.Periods, s.ThrottledPeriods, s.ThrottledNanos = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := st.Memory; mem != nil && mem.Usage != nil {
		s.MemUsage, s.RSS, s.PageFaults, s.MajorPageFaults = mem.Usage.Usage, mem.TotalRSS, mem.TotalPgFault, mem.TotalPgMajFault
		s.WorkingSet = sub(mem.Usage.Usage, mem.TotalInactiveFile)
		s.MemCache, s.MemMapped = mem.TotalCache, mem.TotalMappedFile
		s.MemMaxUsage, s.MemFailcnt = mem.Usage.Max, mem.Usage.Failcnt
		if mem.Kernel != nil {
			s.MemKernel = mem.Kernel.Usage
		}
		if mem.Usage.Limit < unlimited {
			s.MemLimit = mem.Usage.Limit
		}
		swapV1(&s, mem)
	}
	if oc := st.MemoryOomControl; oc != nil {
		s.OOMKills = oc.OomKill
	}
	if st.Pids != nil {
		s.Processes, s.PidsLimit = st.Pids.Current, st.Pids.Limit
	}
	if b := st.Blkio; b != nil {
		byDev := map[[2]uint64]*DeviceIO{}
		dev := func(e *stats1.BlkIOEntry) *DeviceIO {
			k := [2]uint64{e.Major, e.Minor}
			if byDev[k] == nil {
				byDev[k] = &DeviceIO{Major: e.Major, Minor: e.Minor}
			}
			return byDev[k]
		}
		for _, e := range b.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				dev(e).ReadBytes = e.Value
			case "write":
				dev(e).WriteBytes = e.Value
			}
		}
		for _, e := range b.IoServicedRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				dev(e).Reads = e.Value
			case "write":
				dev(e).Writes = e.Value
			}
		}
		for _, d := range byDev {
			s.IO = append(s.IO, *d)
		}
	}
	if r.Mode == host.CgroupHybrid {
		// runc and crun put containers in the cgroup2 tree too.
		s.Pressure = readPressure(filepath.Join(r.root(), "unified", dir))
	}
	return s, nil
}

// v1Read are the v1 controllers a Sample comes from; the others (hugetlb,
// rdma, devices, freezer...) are not read.
var v1Read = map[cgroup1.Name]bool{cgroup1.Cpu: true, cgroup1.Cpuacct: true, cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Blkio: true}

// v1Hierarchy caches where the v1 controllers stats read are mounted:
// cgroup1's default hierarchy parses the mount table on every call, which
// was a third of a stats call's time at 60 pods.
var v1Hierarchy struct {
	sync.Mutex
	subs []cgroup1.Subsystem
}

// v1Stats is the hierarchy of the v1 controllers in v1Read, found once (a
// failure is not kept: the next read tries again).
func v1Stats() ([]cgroup1.Subsystem, error) {
	v1Hierarchy.Lock()
	defer v1Hierarchy.Unlock()
	if v1Hierarchy.subs != nil {
		return v1Hierarchy.subs, nil
	}
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var subs []cgroup1.Subsystem
	for _, s := range all {
		if v1Read[s.Name()] {
			subs = append(subs, s)
		}
	}
	if len(subs) > 0 {
		v1Hierarchy.subs = subs
	}
	return subs, nil
}

// swapV1 reads swap from v1's memory+swap counters (memory.memsw.*, there
// when the kernel accounts swap): what they count beyond memory is swap.
func swapV1(s *Sample, mem *stats1.MemoryStat) {
	if mem.Swap == nil || mem.Swap.Limit == 0 {
		return // no memsw files: a limit is never 0 where they exist
	}
	s.HasSwap = true
	s.MemSwap = sub(mem.Swap.Usage, mem.Usage.Usage)
	if mem.Swap.Limit < unlimited {
		s.SwapLimited = true
		s.SwapLimit = sub(mem.Swap.Limit, mem.Usage.Limit)
	}
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Remove deletes the cgroup at dir, and any cgroups left below it (gVisor
// leaves its sandbox's), from every hierarchy. Only empty cgroups can go:
// one with processes in it is an error. A missing one is fine.
func (r Reader) Remove(dir string) error {
	roots := []string{"/sys/fs/cgroup"}
	if r.Mode != host.CgroupV2 {
		ents, err := os.ReadDir("/sys/fs/cgroup")
		if err != nil {
			return err
		}
		roots = roots[:0]
		// Every hierarchy, the unified one of a hybrid host included:
		// runc puts containers there too.
		for _, e := range ents {
			if e.IsDir() {
				roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
			}
		}
	}
	var errs []error
	for _, root := range roots {
		top := filepath.Join(root, dir)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		// Deepest first.
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirCgroup(dirs[i]); err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// rmdirCgroup removes one cgroup directory. A process that is exiting
// (an exec's helper reporting its child's exit, a task the kernel is
// still tearing down) keeps it busy for a moment: retry briefly.
func rmdirCgroup(dir string) error {
	delay := 10 * time.Millisecond
	for try := 0; ; try++ {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || try == 5 {
			return err
		}
		time.Sleep(delay)
		delay *= 2
	}
}

// Procs lists the processes in the cgroup at dir.
func (r Reader) Procs(dir string) []int {
	file := filepath.Join("/sys/fs/cgroup", dir, "cgroup.procs")
	if r.Mode != host.CgroupV2 {
		file = filepath.Join("/sys/fs/cgroup/pids", dir, "cgroup.procs")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
