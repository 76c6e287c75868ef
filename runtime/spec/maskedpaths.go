package spec

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// defaultMaskedPaths and defaultReadonlyPaths apply when the CRI request
// gives none (the kubelet always gives them, crictl may not).
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// protectedPaths are an unprivileged container's masked and read-only
// paths: the request's, or the defaults when it gives neither.
func protectedPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string) {
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if masked == nil && readonly == nil {
		masked, readonly = defaultMaskedPaths, defaultReadonlyPaths
	}
	return masked, readonly
}
