package pod

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
)

// swapUsage is a cgroup's swap as the CRI reports it; nil where the
// kernel does not account swap. Available is reported only under a limit,
// as memory's is.
func swapUsage(s cgroups.Sample) *runtimeapi.SwapUsage {
	if !s.HasSwap {
		return nil
	}
	u := &runtimeapi.SwapUsage{Timestamp: s.At.UnixNano(), SwapUsageBytes: u64(s.MemSwap)}
	if s.SwapLimited {
		avail := uint64(0)
		if s.SwapLimit > s.MemSwap {
			avail = s.SwapLimit - s.MemSwap
		}
		u.SwapAvailableBytes = u64(avail)
	}
	return u
}

// ioUsage is a cgroup's I/O as the CRI defines it: its pressure only (the
// bytes are cAdvisor's); nil without I/O PSI, as containerd.
func ioUsage(s cgroups.Sample) *runtimeapi.IoUsage {
	if s.Pressure.IO == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: s.At.UnixNano(), Psi: criPSI(s.Pressure.IO)}
}

func criPSI(p *cgroups.PSI) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(d *cgroups.PSIData) *runtimeapi.PsiData {
		if d == nil {
			return nil
		}
		return &runtimeapi.PsiData{Total: d.Total, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Some: data(p.Some), Full: data(p.Full)}
}
