package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/spec"
)

// statsCache keeps what stats need across calls: the last sample of each
// cgroup (the base of its CPU rate, and the answer to the other stats
// calls of the same kubelet collection) and recent writable-layer sizes
// (walking a layer on every call would be costly).
type statsCache struct {
	mu     sync.Mutex
	marks  map[string]cgroupMark
	layers map[string]layerUsage
	// gen counts the updates of limits: a sample read before one is not
	// answered again.
	gen    uint64
	pruned time.Time
	// cgroupRoot, set by tests, is where cgroups are read ("" is the
	// node's /sys/fs/cgroup).
	cgroupRoot string
}

type layerUsage struct {
	at            time.Time
	bytes, inodes uint64
}

const layerUsageTTL = 10 * time.Second

const (
	// sampleTTL is how long a cgroup sample answers again: less than the
	// kubelet's shortest collection period (1 s), so that every
	// collection reads afresh. A sample carries the time it was taken.
	sampleTTL = 500 * time.Millisecond
	// minRateWindow is the shortest time a CPU rate is measured over:
	// two reads closer than that (made at once) keep the last rate.
	minRateWindow = 100 * time.Millisecond
	// markTTL is how long the sample of a cgroup no longer read is kept
	// (a removed pod's parent cgroup).
	markTTL = 10 * time.Minute
)

// cgroupMark is a cgroup's last sample, the CPU rate it gave, and the
// generation of limits it was read in.
type cgroupMark struct {
	s    cgroups.Sample
	rate *runtimeapi.UInt64Value
	gen  uint64
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

func (m *Manager) cgroupReader() cgroups.Reader {
	return cgroups.Reader{Mode: m.host.CgroupMode, Driver: m.host.CgroupDriver, Root: m.stats.cgroupRoot}
}

// sample reads a cgroup (or answers with its sample of the last
// sampleTTL) and returns it with the CPU rate since the sample before (nil
// on the first).
func (m *Manager) sample(cgroupsPath string) (cgroups.Sample, *runtimeapi.UInt64Value, error) {
	m.stats.mu.Lock()
	mk, ok := m.stats.marks[cgroupsPath]
	gen := m.stats.gen
	m.stats.mu.Unlock()
	if ok && mk.gen == gen && time.Since(mk.s.At) < sampleTTL {
		return mk.s, mk.rate, nil
	}
	s, err := m.cgroupReader().Read(m.cgroupReader().Dir(cgroupsPath))
	if err != nil {
		return s, nil, err
	}
	return s, m.record(cgroupsPath, s, gen), nil
}

// record keeps s as the last sample under key, read in generation gen, and
// returns the CPU use in nanocores since the one before.
func (m *Manager) record(key string, s cgroups.Sample, gen uint64) *runtimeapi.UInt64Value {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	if m.stats.marks == nil {
		m.stats.marks = map[string]cgroupMark{}
	}
	prev, ok := m.stats.marks[key]
	if ok && !s.At.After(prev.s.At.Add(minRateWindow)) {
		// Read at the same time as the last one (or before it): too
		// close to measure a rate over; the last one stands.
		return prev.rate
	}
	var rate *runtimeapi.UInt64Value
	if ok && s.CPUNanos >= prev.s.CPUNanos {
		rate = u64(uint64(float64(s.CPUNanos-prev.s.CPUNanos) / s.At.Sub(prev.s.At).Seconds()))
	}
	m.stats.marks[key] = cgroupMark{s: s, rate: rate, gen: gen}
	if s.At.Sub(m.stats.pruned) > time.Minute {
		for k, mk := range m.stats.marks {
			if s.At.Sub(mk.s.At) > markTTL {
				delete(m.stats.marks, k)
			}
		}
		m.stats.pruned = s.At
	}
	return rate
}

// runtimeSample asks the runtime (gVisor) for a container's use: its
// processes run in the sandbox, not in the container's host cgroup.
func (m *Manager) runtimeSample(sb *sandbox, id string) (cgroups.Sample, *runtimeapi.UInt64Value, error) {
	m.stats.mu.Lock()
	gen := m.stats.gen
	m.stats.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sb.handler.Stats(ctx, id)
	if err != nil {
		return cgroups.Sample{}, nil, err
	}
	s := cgroups.Sample{At: time.Now(), CPUNanos: st.CPUNanos, MemUsage: st.MemUsage, WorkingSet: st.MemUsage, MemLimit: st.MemLimit, Processes: st.Pids}
	return s, m.record("runtime:"+id, s, gen), nil
}

// dropRecentSamples makes the next stats read every cgroup afresh (its
// limits changed), samples being read now included.
func (m *Manager) dropRecentSamples() {
	m.stats.mu.Lock()
	m.stats.gen++
	m.stats.mu.Unlock()
}

// forgetStats drops the cached readings of a removed container or pod.
func (m *Manager) forgetStats(id string) {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	delete(m.stats.layers, id)
	for k := range m.stats.marks {
		if strings.HasSuffix(k, "/"+id) || strings.HasSuffix(k, ":"+id) {
			delete(m.stats.marks, k)
		}
	}
}

// containerSample reads a container's use where its handler keeps it.
func (m *Manager) containerSample(sb *sandbox, id string) (cgroups.Sample, *runtimeapi.UInt64Value, error) {
	if sb.handler.Traits().Sandboxed {
		return m.runtimeSample(sb, id)
	}
	return m.sample(m.containerCgroupsPath(sb, id))
}

func cpuMemory(s cgroups.Sample, rate *runtimeapi.UInt64Value) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	ts := s.At.UnixNano()
	mem := &runtimeapi.MemoryUsage{
		Timestamp: ts, WorkingSetBytes: u64(s.WorkingSet), UsageBytes: u64(s.MemUsage),
		RssBytes: u64(s.RSS), PageFaults: u64(s.PageFaults), MajorPageFaults: u64(s.MajorPageFaults),
	}
	if s.MemLimit > 0 && s.MemLimit >= s.WorkingSet {
		mem.AvailableBytes = u64(s.MemLimit - s.WorkingSet)
	}
	mem.Psi = criPSI(s.Pressure.Memory)
	cpu := &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: u64(s.CPUNanos), UsageNanoCores: rate, Psi: criPSI(s.Pressure.CPU)}
	return cpu, mem
}

func (m *Manager) containerCgroupsPath(sb *sandbox, id string) string {
	return spec.CgroupsPath(m.host, &spec.Pod{ID: sb.rec.ID, Config: sb.cfg}, id)
}

// containerStats reads one container; ok is false when it has no cgroup
// (not created yet, or exited and deleted).
func (m *Manager) containerStats(c *container) (*runtimeapi.ContainerStats, bool) {
	rec := c.snapshot()
	st := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: rec.ID, Metadata: c.cfg.GetMetadata(), Labels: c.cfg.GetLabels(), Annotations: c.cfg.GetAnnotations(),
	}}
	st.WritableLayer = m.writableLayer(rec.ID)
	sb, err := m.getSandbox(rec.SandboxID)
	if err != nil || rec.State == stateExited {
		return st, false
	}
	s, rate, err := m.containerSample(sb, rec.ID)
	if err != nil {
		if !errors.Is(err, cgroups.ErrGone) {
			m.log.Debug("container stats", "id", rec.ID, "err", err)
		}
		return st, false
	}
	st.Cpu, st.Memory = cpuMemory(s, rate)
	st.Swap, st.Io = swapUsage(s), ioUsage(s)
	return st, true
}

// writableLayer measures the container's upper directory, cached briefly.
func (m *Manager) writableLayer(id string) *runtimeapi.FilesystemUsage {
	m.stats.mu.Lock()
	if m.stats.layers == nil {
		m.stats.layers = map[string]layerUsage{}
	}
	u, ok := m.stats.layers[id]
	m.stats.mu.Unlock()
	if !ok || time.Since(u.at) > layerUsageTTL {
		u = layerUsage{at: time.Now()}
		u.bytes, u.inodes = diskUsage(filepath.Join(m.ctrRootDir(), id, "upper"))
		m.stats.mu.Lock()
		m.stats.layers[id] = u
		m.stats.mu.Unlock()
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp: u.at.UnixNano(), FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: m.ctrRootDir()},
		UsedBytes: u64(u.bytes), InodesUsed: u64(u.inodes),
	}
}

// ContainerUsage is what every container's writable layer occupies (the
// CRI's container filesystem of ImageFsInfo), from the same cached
// measurements as container stats.
func (m *Manager) ContainerUsage() (image.FsUsage, error) {
	u := image.FsUsage{Mountpoint: m.ctrRootDir()}
	m.mu.Lock()
	ids := make([]string, 0, len(m.containers))
	for id := range m.containers {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		l := m.writableLayer(id)
		u.Bytes += int64(l.UsedBytes.GetValue())
		u.Inodes += int64(l.InodesUsed.GetValue())
	}
	return u, nil
}

// diskUsage sums the allocated bytes and counts the inodes under dir, a
// container's writable layer, which the container changes while it is
// measured. The walk goes from opened directory to opened directory
// (openat: no path is resolved again, so a directory swapped for a
// symlink leads nowhere), follows no symlink and stays on dir's
// filesystem.
func diskUsage(dir string) (bytes, inodes uint64) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return 0, 0
	}
	w := &usageWalk{dev: st.Dev, seen: map[uint64]bool{}}
	w.add(&st)
	w.dir(fd, 0)
	return w.bytes, w.inodes
}

// maxLayerDepth bounds the directories held open at once by a walk.
const maxLayerDepth = 512

type usageWalk struct {
	dev           uint64
	seen          map[uint64]bool // hard links count once
	bytes, inodes uint64
}

func (w *usageWalk) add(st *unix.Stat_t) {
	if w.seen[st.Ino] {
		return
	}
	w.seen[st.Ino] = true
	w.bytes += uint64(st.Blocks) * 512
	w.inodes++
}

// dir measures the entries of the open directory fd, and closes it.
func (w *usageWalk) dir(fd, depth int) {
	f := os.NewFile(uintptr(fd), "")
	defer func() { _ = f.Close() }()
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			w.entry(fd, name, depth)
		}
		if err != nil {
			return
		}
	}
}

// entry measures name in the directory dirfd, and below it if it is a
// directory of the same filesystem.
func (w *usageWalk) entry(dirfd int, name string, depth int) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Dev != w.dev {
		return
	}
	w.add(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || depth >= maxLayerDepth {
		return
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	// Swapped since the fstatat: what was opened is not what was counted.
	var opened unix.Stat_t
	if err := unix.Fstat(fd, &opened); err != nil || opened.Dev != st.Dev || opened.Ino != st.Ino {
		_ = unix.Close(fd)
		return
	}
	w.dir(fd, depth+1)
}

// ContainerStats reports one container.
func (m *Manager) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, err
	}
	st, _ := m.containerStats(c)
	return st, nil
}

// ListContainerStats reports the containers matching f that have a cgroup.
func (m *Manager) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	cs := m.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()})
	all := make([]*runtimeapi.ContainerStats, len(cs))
	inParallel(len(cs), func(i int) {
		c, err := m.getContainer(cs[i].Id)
		if err != nil {
			return
		}
		if st, ok := m.containerStats(c); ok {
			all[i] = st
		}
	})
	var out []*runtimeapi.ContainerStats
	for _, st := range all {
		if st != nil {
			out = append(out, st)
		}
	}
	return out
}

// inParallel runs f(0) … f(n-1) on as many goroutines as the machine has
// CPUs: reading cgroup files is system calls, which one goroutine
// would make one after the other while the other CPUs wait.
func inParallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// PodSandboxStats reports a pod: its cgroup, network and processes, and
// its containers.
func (m *Manager) PodSandboxStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	sb, err := m.getSandbox(id)
	if err != nil {
		return nil, err
	}
	return m.podStats(ctx, sb), nil
}

// ListPodSandboxStats reports the pods matching f.
func (m *Manager) ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	pods := m.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector()})
	all := make([]*runtimeapi.PodSandboxStats, len(pods))
	inParallel(len(pods), func(i int) {
		if sb, err := m.getSandbox(pods[i].Id); err == nil {
			all[i] = m.podStats(ctx, sb)
		}
	})
	var out []*runtimeapi.PodSandboxStats
	for _, st := range all {
		if st != nil {
			out = append(out, st)
		}
	}
	return out
}

func (m *Manager) podStats(ctx context.Context, sb *sandbox) *runtimeapi.PodSandboxStats {
	rec := sb.snapshot()
	st := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: rec.ID, Metadata: sb.cfg.GetMetadata(), Labels: sb.cfg.GetLabels(), Annotations: sb.cfg.GetAnnotations()},
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	pod := &spec.Pod{ID: rec.ID, Config: sb.cfg}
	if s, rate, err := m.sample(pod.CgroupParent(m.host.CgroupDriver)); err == nil {
		st.Linux.Cpu, st.Linux.Memory = cpuMemory(s, rate)
		st.Linux.Io = ioUsage(s)
		st.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: s.At.UnixNano(), ProcessCount: u64(s.Processes)}
	}
	if rec.State == stateReady && rec.NetNS != "" {
		st.Linux.Network = networkUsage(rec.NetNS)
	}
	st.Linux.Containers = m.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: rec.ID})
	return st
}

// networkUsage reads the interface counters of the network namespace of
// the pod (pinned at netns).
func networkUsage(netns string) *runtimeapi.NetworkUsage {
	nu := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	for _, nic := range network.Interfaces(netns) {
		iface := &runtimeapi.NetworkInterfaceUsage{Name: nic.Name, RxBytes: u64(nic.RxBytes), RxErrors: u64(nic.RxErrors),
			TxBytes: u64(nic.TxBytes), TxErrors: u64(nic.TxErrors)}
		nu.Interfaces = append(nu.Interfaces, iface)
		if nic.Name == "eth0" {
			nu.DefaultInterface = iface
		}
	}
	return nu
}
