package pod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/network"
)

// The CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics) are the
// kubelet's /metrics/cadvisor without cAdvisor: the same names and labels,
// from the same cgroup readings as the stats calls.

// baseLabels start every metric's labels.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	extra      []string
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var metricDefs = []metricDef{
	{"container_blkio_device_usage_total", "Blkio device bytes usage", counter, []string{"device", "major", "minor", "operation"}},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals", counter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals", counter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled", counter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds", counter, nil},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds", counter, nil},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds", counter, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container", gauge, nil},
	{"container_fs_inodes_free", "Number of available Inodes", gauge, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", gauge, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem", gauge, []string{"device"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", counter, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed", counter, []string{"device"}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem", gauge, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", counter, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed", counter, []string{"device"}},
	{"container_last_seen", "Last time a container was seen by the exporter", gauge, nil},
	{"container_memory_cache", "Number of bytes of page cache memory", gauge, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits", counter, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures", counter, []string{"failure_type", "scope"}},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes", gauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes", gauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", gauge, nil},
	{"container_memory_rss", "Size of RSS in bytes", gauge, nil},
	{"container_memory_swap", "Container swap usage in bytes", gauge, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", gauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes", gauge, nil},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", counter, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", counter, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", counter, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", counter, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counter, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", counter, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", counter, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", counter, []string{"interface"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container", counter, nil},
	{"container_processes", "Number of processes running inside the container", gauge, nil},
	{"container_sockets", "Number of open sockets for the container", gauge, nil},
	{"container_spec_cpu_period", "CPU period of the container", gauge, nil},
	{"container_spec_cpu_quota", "CPU quota of the container", gauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container", gauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container", gauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container", gauge, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds", gauge, nil},
	{"container_threads", "Number of threads running inside the container", gauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", gauge, nil},
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics returns.
func (m *Manager) ListMetricDescriptors(ctx context.Context) []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDefs))
	for _, d := range metricDefs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: append(append([]string{}, baseLabels...), d.extra...)})
	}
	return out
}

// ListPodSandboxMetrics returns every ready pod's metrics: network per pod,
// everything else per container.
func (m *Manager) ListPodSandboxMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	var out []*runtimeapi.PodSandboxMetrics
	for _, p := range m.ListPodSandbox(ctx, nil) {
		sb, err := m.getSandbox(p.Id)
		if err != nil {
			continue
		}
		out = append(out, m.podMetrics(sb))
	}
	return out
}

// metricSet builds the metrics of one container (or pod).
type metricSet struct {
	labels []string
	ts     int64
	out    []*runtimeapi.Metric
}

func (s *metricSet) put(name string, typ runtimeapi.MetricType, value uint64, extra ...string) {
	s.out = append(s.out, &runtimeapi.Metric{
		Name: name, Timestamp: s.ts, MetricType: typ,
		LabelValues: append(append([]string{}, s.labels...), extra...), Value: u64(value),
	})
}

func (m *Manager) podMetrics(sb *sandbox) *runtimeapi.PodSandboxMetrics {
	rec := sb.snapshot()
	md := sb.cfg.GetMetadata()
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: rec.ID}
	if rec.State == stateReady && rec.NetNS != "" {
		set := &metricSet{labels: []string{"POD", rec.ID, m.cfg.Image.PauseImage, rec.Name, md.GetNamespace(), md.GetName()}, ts: nowNano()}
		for _, nic := range network.Interfaces(rec.NetNS) {
			set.put("container_network_receive_bytes_total", counter, nic.RxBytes, nic.Name)
			set.put("container_network_receive_errors_total", counter, nic.RxErrors, nic.Name)
			set.put("container_network_receive_packets_dropped_total", counter, nic.RxDropped, nic.Name)
			set.put("container_network_receive_packets_total", counter, nic.RxPackets, nic.Name)
			set.put("container_network_transmit_bytes_total", counter, nic.TxBytes, nic.Name)
			set.put("container_network_transmit_errors_total", counter, nic.TxErrors, nic.Name)
			set.put("container_network_transmit_packets_dropped_total", counter, nic.TxDropped, nic.Name)
			set.put("container_network_transmit_packets_total", counter, nic.TxPackets, nic.Name)
		}
		pm.Metrics = set.out
	}
	for _, c := range m.podContainers(rec.ID) {
		if cm := m.containerMetrics(sb, c); cm != nil {
			pm.ContainerMetrics = append(pm.ContainerMetrics, cm)
		}
	}
	return pm
}

func (m *Manager) containerMetrics(sb *sandbox, c *container) *runtimeapi.ContainerMetrics {
	rec := c.snapshot()
	if rec.State != stateRunning && rec.State != stateCreated {
		return nil
	}
	r := m.cgroupReader()
	dir := r.Dir(m.containerCgroupsPath(sb, rec.ID))
	s, _, err := m.containerSample(sb, rec.ID)
	if err != nil {
		return nil
	}
	md := sb.cfg.GetMetadata()
	set := &metricSet{labels: []string{c.cfg.GetMetadata().GetName(), rec.ID, rec.ImageName, rec.Name, md.GetNamespace(), md.GetName()}, ts: s.At.UnixNano()}
	sec := func(ns uint64) uint64 { return ns / 1e9 }
	set.put("container_cpu_cfs_periods_total", counter, s.Periods)
	set.put("container_cpu_cfs_throttled_periods_total", counter, s.ThrottledPeriods)
	set.put("container_cpu_cfs_throttled_seconds_total", counter, sec(s.ThrottledNanos))
	set.put("container_cpu_system_seconds_total", counter, sec(s.SystemNanos))
	set.put("container_cpu_usage_seconds_total", counter, sec(s.CPUNanos))
	set.put("container_cpu_user_seconds_total", counter, sec(s.UserNanos))
	set.put("container_memory_cache", gauge, s.MemCache)
	set.put("container_memory_failcnt", counter, s.MemFailcnt)
	set.put("container_memory_failures_total", counter, s.PageFaults, "pgfault", "container")
	set.put("container_memory_failures_total", counter, s.MajorPageFaults, "pgmajfault", "container")
	set.put("container_memory_kernel_usage", gauge, s.MemKernel)
	set.put("container_memory_mapped_file", gauge, s.MemMapped)
	set.put("container_memory_max_usage_bytes", gauge, s.MemMaxUsage)
	set.put("container_memory_rss", gauge, s.RSS)
	set.put("container_memory_swap", gauge, s.MemSwap)
	set.put("container_memory_usage_bytes", gauge, s.MemUsage)
	set.put("container_memory_working_set_bytes", gauge, s.WorkingSet)
	set.put("container_oom_events_total", counter, s.OOMKills)
	set.put("container_processes", gauge, s.Processes)
	set.put("container_threads_max", gauge, s.PidsLimit)
	for _, io := range s.IO {
		dev := strconv.FormatUint(io.Major, 10) + ":" + strconv.FormatUint(io.Minor, 10)
		maj, min := strconv.FormatUint(io.Major, 10), strconv.FormatUint(io.Minor, 10)
		set.put("container_blkio_device_usage_total", counter, io.ReadBytes, dev, maj, min, "Read")
		set.put("container_blkio_device_usage_total", counter, io.WriteBytes, dev, maj, min, "Write")
		set.put("container_fs_reads_bytes_total", counter, io.ReadBytes, dev)
		set.put("container_fs_reads_total", counter, io.Reads, dev)
		set.put("container_fs_writes_bytes_total", counter, io.WriteBytes, dev)
		set.put("container_fs_writes_total", counter, io.Writes, dev)
	}
	var threads, fds, sockets uint64
	for _, pid := range r.Procs(dir) {
		t, f, so := procCounts(pid)
		threads, fds, sockets = threads+t, fds+f, sockets+so
	}
	set.put("container_threads", gauge, threads)
	set.put("container_file_descriptors", gauge, fds)
	set.put("container_sockets", gauge, sockets)

	layer := m.writableLayer(rec.ID)
	dev := m.ctrRootDir()
	set.put("container_fs_usage_bytes", gauge, layer.GetUsedBytes().GetValue(), dev)
	var st unix.Statfs_t
	if unix.Statfs(dev, &st) == nil {
		set.put("container_fs_inodes_free", gauge, st.Ffree, dev)
		set.put("container_fs_inodes_total", gauge, st.Files, dev)
		set.put("container_fs_limit_bytes", gauge, st.Blocks*uint64(st.Bsize), dev)
	}

	res := &runtimeapi.LinuxContainerResources{}
	if len(rec.Resources) > 0 {
		_ = proto.Unmarshal(rec.Resources, res)
	}
	period := uint64(res.CpuPeriod)
	if period == 0 {
		period = 100000 // the kernel's default CFS period
	}
	shares := uint64(res.CpuShares)
	if shares == 0 {
		shares = 1024
	}
	quota := uint64(0)
	if res.CpuQuota > 0 {
		quota = uint64(res.CpuQuota)
	}
	set.put("container_spec_cpu_period", gauge, period)
	set.put("container_spec_cpu_quota", gauge, quota)
	set.put("container_spec_cpu_shares", gauge, shares)
	set.put("container_spec_memory_limit_bytes", gauge, s.MemLimit)
	set.put("container_spec_memory_swap_limit_bytes", gauge, uint64(max(res.MemorySwapLimitInBytes, 0)))
	set.put("container_start_time_seconds", gauge, uint64(max(rec.StartedAt, rec.CreatedAt)/1e9))
	set.put("container_last_seen", gauge, uint64(s.At.Unix()))
	return &runtimeapi.ContainerMetrics{ContainerId: rec.ID, Metrics: set.out}
}

// procCounts counts a process's threads, open files and sockets.
func procCounts(pid int) (threads, fds, sockets uint64) {
	if ts, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		threads = uint64(len(ts))
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return threads, 0, 0
	}
	for _, e := range ents {
		fds++
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return threads, fds, sockets
}
