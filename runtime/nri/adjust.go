package nri

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// adjust applies the plugins' adjustment to the spec of a container
// being created: annotations, env, args, mounts, hooks, devices, CDI
// devices, resources, rlimits, OOM score, namespaces, sysctls, seccomp,
// scheduling and RDT, as the library's generator does them.
func (n *NRI) adjust(s *specs.Spec, adj *api.ContainerAdjustment, inject CDIInjector) error {
	if adj == nil {
		return nil
	}
	if inject == nil {
		inject = func(_ *specs.Spec, devices []string) error {
			return errdefs.FailedPrecondition("CDI devices %v: berth has no CDI registry here", devices)
		}
	}
	g := generate.SpecGenerator(&specGen{s: s, oomFloor: n.oomFloor},
		generate.WithAnnotationFilter(keepReserved),
		generate.WithResourceChecker(n.checkResources),
		generate.WithBlockIOResolver(noBlockIOClasses),
		generate.WithRdtResolver(rdtClass),
		generate.WithCDIDeviceInjector(inject),
	)
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("apply NRI adjustment: %w", err)
	}
	return nil
}

// reservedAnnotations are the prefixes of the annotations berth sets to
// tell runtimes how a pod's containers belong together (runtime/spec's):
// gVisor, for one, would run a container as a new sandbox if a plugin
// changed them.
var reservedAnnotations = []string{"io.kubernetes.cri.", "io.kubernetes.cri-o."}

// keepReserved refuses plugins' changes to berth's own annotations.
func keepReserved(adj map[string]string) (map[string]string, error) {
	for k := range adj {
		key, _ := api.IsMarkedForRemoval(k)
		for _, p := range reservedAnnotations {
			if strings.HasPrefix(key, p) {
				return nil, errdefs.InvalidArgument("annotation %q is berth's own: NRI plugins may not change it", key)
			}
		}
	}
	return adj, nil
}

// checkResources refuses what this node cannot do: cgroup v2 files on a
// cgroup v1 node (the runtime would fail later, less clearly).
func (n *NRI) checkResources(r *specs.LinuxResources) error {
	if r != nil && len(r.Unified) > 0 && n.cgroups != host.CgroupV2 {
		return errdefs.FailedPrecondition("unified cgroup settings need cgroup v2; this node has cgroup %s", n.cgroups)
	}
	return nil
}

// noBlockIOClasses refuses block I/O classes: berth has no class
// configuration to resolve them with, and dropping one silently would
// leave the container unthrottled.
func noBlockIOClasses(class string) (*specs.LinuxBlockIO, error) {
	return nil, errdefs.FailedPrecondition("block I/O class %q: berth has no block I/O classes configured", class)
}

// rdtClass makes an RDT class the container's CLOS, as containerd does;
// the OCI runtime assigns it (and fails if resctrl lacks it).
func rdtClass(class string) (*specs.LinuxIntelRdt, error) {
	if class == "" {
		return nil, errors.New("empty RDT class")
	}
	return &specs.LinuxIntelRdt{ClosID: class}, nil
}
