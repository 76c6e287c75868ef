package cgroups

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// readV2 samples the cgroup2 cgroup at dir into s.
func (r Reader) readV2(dir string, s Sample) (Sample, error) {
	abs := filepath.Join(r.root(), dir)
	// The library reads a missing cgroup as zeros: ask first.
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, ErrGone
		}
		return s, err
	}
	m, err := cgroup2.Load(dir, cgroup2.WithMountpoint(r.root()))
	if err != nil {
		return s, err
	}
	st, err := m.Stat()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, ErrGone
		}
		return s, err
	}
	if c := st.CPU; c != nil {
		s.CPUNanos, s.UserNanos, s.SystemNanos = c.UsageUsec*1000, c.UserUsec*1000, c.SystemUsec*1000
		s.Periods, s.ThrottledPeriods, s.ThrottledNanos = c.NrPeriods, c.NrThrottled, c.ThrottledUsec*1000
	}
	if mem := st.Memory; mem != nil {
		s.MemUsage, s.RSS, s.PageFaults, s.MajorPageFaults = mem.Usage, mem.Anon, mem.Pgfault, mem.Pgmajfault
		s.WorkingSet = sub(mem.Usage, mem.InactiveFile)
		s.MemCache, s.MemMapped, s.MemSwap, s.MemMaxUsage = mem.File, mem.FileMapped, mem.SwapUsage, mem.MaxUsage
		s.MemKernel = mem.KernelStack + mem.Slab + mem.Sock
		if mem.UsageLimit < unlimited {
			s.MemLimit = mem.UsageLimit
		}
		// The library reads a missing memory.swap.max as 0, which is also
		// a real limit (no swap): the file says which.
		if _, err := os.Stat(filepath.Join(abs, "memory.swap.current")); err == nil {
			s.HasSwap = true
			s.SwapLimited = mem.SwapLimit < unlimited
			if s.SwapLimited {
				s.SwapLimit = mem.SwapLimit
			}
		}
	}
	if ev := st.MemoryEvents; ev != nil {
		s.OOMKills, s.MemFailcnt = ev.OomKill, ev.Max
	}
	if st.Pids != nil {
		s.Processes, s.PidsLimit = st.Pids.Current, st.Pids.Limit
	}
	if st.Io != nil {
		for _, e := range st.Io.Usage {
			s.IO = append(s.IO, DeviceIO{Major: e.Major, Minor: e.Minor, ReadBytes: e.Rbytes, WriteBytes: e.Wbytes, Reads: e.Rios, Writes: e.Wios})
		}
	}
	s.Pressure = readPressure(abs)
	return s, nil
}
