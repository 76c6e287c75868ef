package spec

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// defaultMaskedPaths and defaultReadonlyPaths are the sandbox container's,
// and an app container's when its request has none (protectedPaths).
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
// paths. The kubelet sends the default lists for procMount Default and
// empty lists for Unmasked, and protobuf cannot tell an empty list from a
// missing one (crictl and critest send none). Kubernetes allows Unmasked
// only with hostUsers: false, so:
//   - in a pod with a user namespace, the lists are exactly the request's,
//     empty ones included (containerd's behaviour everywhere);
//   - elsewhere an empty list cannot be Unmasked: it is the default, so a
//     client that sends no lists does not get an unmasked /proc.
func protectedPaths(sc *runtimeapi.LinuxContainerSecurityContext, userns bool) (masked, readonly []string) {
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if userns {
		return masked, readonly
	}
	if len(masked) == 0 {
		masked = defaultMaskedPaths
	}
	if len(readonly) == 0 {
		readonly = defaultReadonlyPaths
	}
	return masked, readonly
}
