package network

import (
	"math"
	"math/big"

	"github.com/berthrt/berth/runtime/errdefs"
)

// CNI capability arguments berth fills from a pod's configuration.
// libcni hands each one, as runtimeConfig, only to the plugins of the
// network that declare it in their "capabilities".
const (
	// CapPodAnnotations carries the pod's annotations, under the name
	// containerd uses, so plugins written for containerd read them here.
	CapPodAnnotations = "io.kubernetes.cri.pod-annotations"
	// CapBandwidth carries the pod's traffic shaping to the bandwidth
	// plugin (CNI CONVENTIONS.md).
	CapBandwidth = "bandwidth"
	// CapPortMappings carries the pod's host ports to portmap.
	CapPortMappings = "portMappings"
)

// The pod annotations the kubelet documents for traffic shaping, in bits
// per second as Kubernetes quantities ("1M", "10Mi").
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// The range the kubelet (and containerd) accept for a bandwidth: below
// 1 kbit/s or above 1 Pbit/s is a typo, not a limit.
var (
	minBandwidth = big.NewInt(1_000)
	maxBandwidth = big.NewInt(1_000_000_000_000_000)
)

// Bandwidth is the bandwidth plugin's runtimeConfig: rates in bits per
// second, bursts in bits; zero means no limit in that direction.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// PodBandwidth reads a pod's bandwidth annotations; nil when it has
// none. A value that is not a quantity, or out of range, is
// InvalidArgument naming the annotation. Annotations, units and range
// are containerd's; the burst is not (see burstFor).
func PodBandwidth(annotations map[string]string) (*Bandwidth, error) {
	var bw Bandwidth
	for _, a := range []struct {
		key         string
		rate, burst *uint64
	}{
		{IngressBandwidthAnnotation, &bw.IngressRate, &bw.IngressBurst},
		{EgressBandwidthAnnotation, &bw.EgressRate, &bw.EgressBurst},
	} {
		text, ok := annotations[a.key]
		if !ok {
			continue
		}
		v, err := parseQuantity(text)
		if err != nil {
			return nil, errdefs.InvalidArgument("pod annotation %s: %v", a.key, err)
		}
		if v.Cmp(minBandwidth) < 0 {
			return nil, errdefs.InvalidArgument("pod annotation %s=%q: unreasonably small (< 1kbit)", a.key, text)
		}
		if v.Cmp(maxBandwidth) > 0 {
			return nil, errdefs.InvalidArgument("pod annotation %s=%q: unreasonably large (> 1Pbit)", a.key, text)
		}
		*a.rate = v.Uint64()
		*a.burst = burstFor(*a.rate)
	}
	if bw == (Bandwidth{}) {
		return nil, nil
	}
	return &bw, nil
}

// Bounds of the burst, in bits. The floor lets full-size packets through
// a slow limit; at 1 kbit/s it is still a bucket the plugin's uint32 tick
// arithmetic holds (131 s). The ceiling is the largest burst the plugin
// takes (containerd's burst for every pod).
const (
	minBurst = 128 << 10
	maxBurst = math.MaxUint32
)

// burstFor is the token bucket for a rate: one second of traffic at the
// rate, within [minBurst, maxBurst].
//
// containerd and CRI-O always pass maxBurst. The bandwidth plugin turns
// that into a bucket of tens to hundreds of megabytes (kubernetes#90838:
// a 10M pod sends its first ~250 MB at line rate), so a limited pod is
// not limited for any short transfer; with one second's worth the rate
// holds after the first second.
func burstFor(rate uint64) uint64 {
	return min(max(rate, minBurst), maxBurst)
}

// capabilityArgs are the capability arguments for p's CNI calls. On a
// bad bandwidth annotation it returns the error with the other arguments,
// which a teardown still uses.
func capabilityArgs(p Pod) (map[string]any, error) {
	args := map[string]any{}
	// Always present, as containerd passes it: a plugin that declares
	// the capability sees {} rather than nothing for a pod without any.
	annotations := p.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	args[CapPodAnnotations] = annotations
	if len(p.Ports) > 0 {
		args[CapPortMappings] = p.Ports
	}
	bw, err := PodBandwidth(p.Annotations)
	if bw != nil {
		args[CapBandwidth] = bw
	}
	return args, err
}
