package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/caps"
)

// defaultCaps are the capabilities of an unprivileged container, as every
// CRI runtime grants them.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps are every capability Linux has, by number (for privileged
// containers and "ALL"; what a node grants is the part of them in its
// bounding set).
var allCaps = caps.All

// withinBounding keeps the capabilities the node can grant: a runtime
// cannot give a container more than it holds itself.
func withinBounding(caps []string, bounding uint64) []string {
	var out []string
	for _, c := range caps {
		for i, name := range allCaps {
			if name == c && bounding&(1<<uint(i)) != 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

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

func ptr[T any](v T) *T { return &v }

// defaultDeviceRules deny every device but the ones every container has.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	rule := func(typ string, major, minor int64) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Access: "rwm"}
		if minor >= 0 {
			r.Minor = &minor
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		rule("c", 1, 3),    // null
		rule("c", 1, 5),    // zero
		rule("c", 1, 7),    // full
		rule("c", 1, 8),    // random
		rule("c", 1, 9),    // urandom
		rule("c", 5, 0),    // tty
		rule("c", 5, 1),    // console
		rule("c", 5, 2),    // ptmx
		rule("c", 136, -1), // pts/*
		rule("c", 10, 200), // net/tun
	}
}

// baseMounts are the filesystems every container gets.
func baseMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}
