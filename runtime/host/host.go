// Package host reads the facts about this node that berth adapts to:
// cgroup mode, the oom_score_adj floor, overlayfs support.
package host

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CgroupMode is how cgroups are mounted.
type CgroupMode string

const (
	CgroupV1      CgroupMode = "v1"
	CgroupHybrid  CgroupMode = "hybrid" // v1 controllers plus a cgroup2 tree at /sys/fs/cgroup/unified
	CgroupV2      CgroupMode = "v2"
	CgroupUnknown CgroupMode = "unknown"
)

// Cgroups returns the cgroup mode of this host.
func Cgroups() CgroupMode {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return CgroupUnknown
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return CgroupV2
	}
	if err := unix.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return CgroupHybrid
	}
	return CgroupV1
}

// HybridControllers lists the controllers bound to the cgroup2 tree of a
// hybrid host (crun refuses to run while any is there).
func HybridControllers() []string {
	b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// V1Mounted reports whether a cgroup v1 hierarchy for controller is mounted.
func V1Mounted(controller string) bool {
	// ... - cgroup cgroup rw,hugetlb
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if slices.Contains(strings.Split(m.VFSOptions, ","), controller) {
			return true
		}
	}
	return false
}

// OOMScoreAdjFloor is the lowest oom_score_adj that processes berth starts
// may get. Without CAP_SYS_RESOURCE the kernel refuses values below the
// caller's inherited minimum; the caller's own value is always allowed,
// so it is the safe floor.
func OOMScoreAdjFloor() int {
	if hasCap(unix.CAP_SYS_RESOURCE) {
		return -1000
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return v
}

// ClampOOMScoreAdj raises v to the floor.
func ClampOOMScoreAdj(v, floor int) int { return max(v, floor) }

func hasCap(c int) bool { return capMask("CapEff:")&(1<<uint(c)) != 0 }

// BoundingSet is this process's capability bounding set: the most any
// container it starts can get.
func BoundingSet() uint64 { return capMask("CapBnd:") }

func capMask(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return mask
		}
	}
	return 0
}

// Overlayfs reports whether the kernel supports overlayfs (already loaded
// or loadable on first mount; a missing entry may still autoload).
func Overlayfs() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "overlay") {
			return true
		}
	}
	_, err = os.Stat("/sys/module/overlay")
	return err == nil
}

// OverlayfsModule reports whether overlayfs is a module of the running
// kernel, which the kernel loads at the first overlay mount (a fresh
// boot has not needed it yet).
func OverlayfsModule() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	b, err := os.ReadFile("/lib/modules/" + unix.ByteSliceToString(u.Release[:]) + "/modules.dep")
	if err != nil {
		return false
	}
	// kernel/fs/overlayfs/overlay.ko[.xz|.zst]: ...
	for _, line := range strings.Split(string(b), "\n") {
		name, _, _ := strings.Cut(line, ":")
		if strings.HasSuffix(name, "/overlay.ko") || strings.Contains(name, "/overlay.ko.") {
			return true
		}
	}
	return false
}
