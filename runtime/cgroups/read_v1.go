package cgroups

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerd/cgroups/v3/cgroup1"
	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
)

// statV1 reads the v1 cgroup at dir: only the files a Sample is made of
// (cgroup1's Stat reads every file of every controller, 30 and more a
// cgroup, each through an os.File that asks epoll for it first), with
// plain open/read/close. It fills the fields of cgroup1's Metrics that
// Read takes, as cgroup1 would. A controller whose files are missing
// leaves its fields out; a cgroup missing from every controller is
// ErrGone.
func (r Reader) statV1(dir string) (*stats1.Metrics, error) {
	roots, err := r.v1Roots()
	if err != nil {
		return nil, err
	}
	st := &stats1.Metrics{CPU: &stats1.CPUStat{Usage: &stats1.CPUUsage{}, Throttling: &stats1.Throttle{}}}
	found := false
	var opened []int
	defer func() {
		for _, fd := range opened {
			_ = unix.Close(fd)
		}
	}()
	// at opens the cgroup's directory in controller c: its files are
	// opened from there, without walking the whole path again.
	at := func(c cgroup1.Name) (cgroupDir, bool) {
		root, ok := roots[c]
		if !ok {
			return cgroupDir{}, false
		}
		p := filepath.Join(root, dir)
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return cgroupDir{}, false
		}
		opened = append(opened, fd)
		found = true
		return cgroupDir{fd: fd, path: p}, true
	}
	if p, ok := at(cgroup1.Cpuacct); ok {
		st.CPU.Usage.Total, _ = p.uint("cpuacct.usage")
		if data, err := p.read("cpuacct.stat"); err == nil {
			kv := parseKV(data)
			// In USER_HZ ticks, 100 a second on every Linux Go runs on.
			st.CPU.Usage.User, st.CPU.Usage.Kernel = kv["user"]*1e7, kv["system"]*1e7
		}
	}
	if p, ok := at(cgroup1.Cpu); ok {
		if data, err := p.read("cpu.stat"); err == nil {
			kv := parseKV(data)
			st.CPU.Throttling.Periods, st.CPU.Throttling.ThrottledPeriods, st.CPU.Throttling.ThrottledTime = kv["nr_periods"], kv["nr_throttled"], kv["throttled_time"]
		}
	}
	if p, ok := at(cgroup1.Memory); ok {
		if data, err := p.read("memory.stat"); err == nil {
			kv := parseKV(data)
			mem := &stats1.MemoryStat{Usage: &stats1.MemoryEntry{}, Swap: &stats1.MemoryEntry{}, Kernel: &stats1.MemoryEntry{}}
			mem.TotalRSS, mem.TotalPgFault, mem.TotalPgMajFault = kv["total_rss"], kv["total_pgfault"], kv["total_pgmajfault"]
			mem.TotalInactiveFile, mem.TotalCache, mem.TotalMappedFile = kv["total_inactive_file"], kv["total_cache"], kv["total_mapped_file"]
			file := func(name string) uint64 {
				v, _ := p.uint("memory." + name)
				return v
			}
			mem.Usage.Usage, mem.Usage.Max, mem.Usage.Failcnt, mem.Usage.Limit = file("usage_in_bytes"), file("max_usage_in_bytes"), file("failcnt"), file("limit_in_bytes")
			// memsw files exist where the kernel accounts swap; without
			// them the limit stays 0 (swapV1 reads that as no swap).
			mem.Swap.Usage, mem.Swap.Limit = file("memsw.usage_in_bytes"), file("memsw.limit_in_bytes")
			mem.Kernel.Usage = file("kmem.usage_in_bytes")
			st.Memory = mem
		}
		if data, err := p.read("memory.oom_control"); err == nil {
			st.MemoryOomControl = &stats1.MemoryOomControl{OomKill: parseKV(data)["oom_kill"]}
		}
	}
	if p, ok := at(cgroup1.Pids); ok {
		cur, err := p.uint("pids.current")
		if err == nil {
			st.Pids = &stats1.PidsStat{Current: cur}
			// "max" is no limit (0).
			st.Pids.Limit, _ = p.uint("pids.max")
		}
	}
	if p, ok := at(cgroup1.Blkio); ok {
		st.Blkio = p.blkioStats()
	}
	if !found {
		return nil, ErrGone
	}
	return st, nil
}

// v1Roots are the directories of the v1 controllers a Sample reads: the
// host's (found once from the mount table), or under Root (tests).
func (r Reader) v1Roots() (map[cgroup1.Name]string, error) {
	out := map[cgroup1.Name]string{}
	if r.Root != "" {
		for name := range v1Read {
			out[name] = filepath.Join(r.Root, string(name))
		}
		return out, nil
	}
	subs, err := v1Stats()
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		if p, ok := s.(interface{ Path(string) string }); ok {
			out[s.Name()] = p.Path("/")
		}
	}
	return out, nil
}

// cgroupDir is a cgroup's directory in one controller, open (O_PATH).
type cgroupDir struct {
	fd   int
	path string
}

func (d cgroupDir) read(name string) (string, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	return readFD(fd, filepath.Join(d.path, name))
}

// uint reads a file of one number; "max" is 0 (no limit).
func (d cgroupDir) uint(name string) (uint64, error) {
	data, err := d.read(name)
	if err != nil {
		return 0, err
	}
	return parseV1Uint(data)
}

// blkioStats reads the CFQ counters where the kernel has them and they
// count something (as cgroup1 does), else the throttling layer's (blk-mq):
// recursive ones, so that a pod's cgroup counts its containers' IO, else
// (kernels without them) the cgroup's own.
func (d cgroupDir) blkioStats() *stats1.BlkIOStat {
	// Read, not stat'ed: a container that may write its cgroupfs can make
	// a directory (a child cgroup) of that name, which does not read.
	if serviced := d.blkio("blkio.io_serviced_recursive"); len(serviced) > 0 {
		return &stats1.BlkIOStat{IoServiceBytesRecursive: d.blkio("blkio.io_service_bytes_recursive"), IoServicedRecursive: serviced}
	}
	for _, suffix := range []string{"_recursive", ""} {
		if _, err := d.read("blkio.throttle.io_serviced" + suffix); err == nil {
			return &stats1.BlkIOStat{
				IoServiceBytesRecursive: d.blkio("blkio.throttle.io_service_bytes" + suffix),
				IoServicedRecursive:     d.blkio("blkio.throttle.io_serviced" + suffix),
			}
		}
	}
	return &stats1.BlkIOStat{}
}

func (d cgroupDir) blkio(name string) []*stats1.BlkIOEntry {
	data, err := d.read(name)
	if err != nil {
		return nil
	}
	return parseBlkio(data)
}

// readV1File reads a cgroup file (small: a page or a few) with plain
// system calls.
func readV1File(p string) (string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	return readFD(fd, p)
}

// readFD reads fd to its end and closes it.
func readFD(fd int, p string) (string, error) {
	defer func() { _ = unix.Close(fd) }()
	var buf [4096]byte
	var out []byte
	for {
		n, err := unix.Read(fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return string(out), nil
		}
		out = append(out, buf[:n]...)
		if len(out) > 1<<20 {
			return "", errors.New("cgroup file too large: " + p)
		}
	}
}

// parseV1Uint parses a file of one number; "max" is 0 (no limit).
func parseV1Uint(data string) (uint64, error) {
	v := strings.TrimSpace(data)
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		// A negative limit (-1) is none.
		if i, ierr := strconv.ParseInt(v, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, err
	}
	return n, nil
}

// parseKV parses "key value" lines.
func parseKV(data string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(data, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// parseBlkio parses "major:minor Op value" lines (the Total line has no
// device and is left out).
func parseBlkio(data string) []*stats1.BlkIOEntry {
	var out []*stats1.BlkIOEntry
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		maj, min, ok := strings.Cut(f[0], ":")
		if !ok {
			continue
		}
		e := &stats1.BlkIOEntry{Op: f[1]}
		var err1, err2, err3 error
		e.Major, err1 = strconv.ParseUint(maj, 10, 64)
		e.Minor, err2 = strconv.ParseUint(min, 10, 64)
		e.Value, err3 = strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			out = append(out, e)
		}
	}
	return out
}
