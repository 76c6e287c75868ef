package cdi

import (
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Requested lists the CDI devices a container asks for, each once: CRI's
// CDI_devices (DRA), then the devices of its cdi.k8s.io/* annotations, the
// older form the kubelet's device plugin manager still sends. Only the
// container's annotations count, as in containerd: the kubelet sets them,
// a pod's own annotations reach the sandbox config only.
func Requested(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	add := func(name string) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		add(d.GetName())
	}
	// Sorted keys: the same container gets the same spec every time (later
	// devices' environment wins).
	var keys []string
	for k := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, cdi.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, devices, err := cdi.ParseAnnotations(map[string]string{k: cfg.GetAnnotations()[k]})
		if err != nil {
			return nil, errdefs.InvalidArgument("annotation %s: %v", k, err)
		}
		for _, d := range devices {
			add(d)
		}
	}
	return out, nil
}
