package spec

import (
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

func normCap(c string) string {
	c = strings.ToUpper(c)
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// containerCaps applies add and drop to the default set; "ALL" in add
// starts from every capability, "ALL" in drop from none.
func containerCaps(sc *runtimeapi.LinuxContainerSecurityContext) []string {
	caps := slices.Clone(defaultCaps)
	add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
	isAll := func(c string) bool { return strings.EqualFold(c, "ALL") }
	if slices.ContainsFunc(add, isAll) {
		caps = slices.Clone(allCaps)
	}
	if slices.ContainsFunc(drop, isAll) {
		caps = nil
	}
	for _, c := range add {
		if !isAll(c) && !slices.Contains(caps, normCap(c)) {
			caps = append(caps, normCap(c))
		}
	}
	for _, c := range drop {
		if !isAll(c) {
			caps = slices.DeleteFunc(caps, func(x string) bool { return x == normCap(c) })
		}
	}
	return caps
}

func ambientCaps(sc *runtimeapi.LinuxContainerSecurityContext) []string {
	var out []string
	for _, c := range sc.GetCapabilities().GetAddAmbientCapabilities() {
		out = append(out, normCap(c))
	}
	return out
}

// capSet grants caps as bounding, effective and permitted; inheritable
// stays empty (no capability passes through exec of a file without it).
func capSet(caps, ambient []string) *specs.LinuxCapabilities {
	c := &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	if len(ambient) > 0 {
		c.Ambient, c.Inheritable = ambient, ambient
	}
	return c
}
