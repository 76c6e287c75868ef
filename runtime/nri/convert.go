package nri

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// toPod is p as NRI plugins see it. The CRI request's fields come first:
// they are what a plugin's policy is written against (labels,
// annotations, the pod's resources).
func toPod(p Pod) *api.PodSandbox {
	md := p.Config.GetMetadata()
	lx := p.Config.GetLinux()
	out := &api.PodSandbox{
		Id:             p.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         maps.Clone(p.Config.GetLabels()),
		Annotations:    maps.Clone(p.Config.GetAnnotations()),
		RuntimeHandler: p.Handler,
		Pid:            uint32(max(p.Pid, 0)), //nolint:gosec // a pid fits
		Ips:            slices.Clone(p.IPs),
		Linux: &api.LinuxPodSandbox{
			PodOverhead:  fromCRIResources(cmp.Or(p.Overhead, lx.GetOverhead())),
			PodResources: fromCRIResources(cmp.Or(p.Resources, lx.GetResources())),
			CgroupParent: p.CgroupParent,
			CgroupsPath:  p.CgroupsPath,
		},
	}
	// Sorted: plugins (and tests) see the same order every time.
	for _, typ := range slices.Sorted(maps.Keys(p.Namespaces)) {
		out.Linux.Namespaces = append(out.Linux.Namespaces, &api.LinuxNamespace{Type: string(typ), Path: p.Namespaces[typ]})
	}
	return out
}

// toContainer is c as NRI plugins see it: its identity and state from
// berth's record, what it runs from its OCI spec.
func toContainer(c Container) *api.Container {
	out := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.PodID,
		Name:          c.Config.GetMetadata().GetName(),
		State:         toState(c.State),
		Labels:        maps.Clone(c.Config.GetLabels()),
		Annotations:   map[string]string{},
		Pid:           uint32(max(c.Pid, 0)), //nolint:gosec // a pid fits
		CreatedAt:     c.CreatedAt,
		StartedAt:     c.StartedAt,
		FinishedAt:    c.FinishedAt,
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
	}
	for _, d := range c.Config.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if c.ImageName != "" || c.ImageID != "" {
		out.Image = &api.Image{Name: c.ImageName, ConfigDigest: c.ImageID}
		if _, digest, ok := strings.Cut(c.ImageRef, "@"); ok {
			out.Image.Digest = digest
		}
	}
	if s := c.Spec; s != nil {
		// The spec's annotations are the ones the runtime gets; the CRI
		// request's (which include those it filtered out) win, as
		// containerd gives them.
		maps.Copy(out.Annotations, s.Annotations)
		out.Mounts = api.FromOCIMounts(s.Mounts)
		out.Hooks = api.FromOCIHooks(s.Hooks)
		if p := s.Process; p != nil {
			out.Args = slices.Clone(p.Args)
			out.Env = slices.Clone(p.Env)
			out.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: slices.Clone(p.User.AdditionalGids)}
			for _, r := range p.Rlimits {
				out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
			}
		}
		out.Linux = toLinuxContainer(s, c.Config)
	}
	maps.Copy(out.Annotations, c.Config.GetAnnotations())
	return out
}

func toLinuxContainer(s *specs.Spec, cfg *runtimeapi.ContainerConfig) *api.LinuxContainer {
	out := &api.LinuxContainer{}
	if p := s.Process; p != nil {
		out.OomScoreAdj = api.Int(p.OOMScoreAdj)
		out.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		if p.Scheduler != nil {
			out.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
		}
	}
	if l := s.Linux; l != nil {
		out.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
		out.Devices = api.FromOCILinuxDevices(l.Devices)
		out.Resources = api.FromOCILinuxResources(l.Resources, s.Annotations)
		out.CgroupsPath = l.CgroupsPath
		out.Sysctl = maps.Clone(l.Sysctl)
		out.NetDevices = api.FromOCILinuxNetDevices(l.NetDevices)
		if l.Seccomp != nil {
			out.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		if r := l.IntelRdt; r != nil {
			out.Rdt = &api.LinuxRdt{ClosId: api.String(r.ClosID), Schemata: api.RepeatedString(r.Schemata), EnableMonitoring: api.Bool(r.EnableMonitoring)}
		}
	}
	if sp := cfg.GetLinux().GetSecurityContext().GetSeccomp(); sp != nil {
		out.SeccompProfile = &api.SecurityProfile{
			ProfileType:  api.SecurityProfile_ProfileType(sp.GetProfileType()),
			LocalhostRef: sp.GetLocalhostRef(),
		}
	}
	return out
}

// toState maps CRI's container states to NRI's (the same, but for the
// name of the last).
func toState(s runtimeapi.ContainerState) api.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return api.ContainerState_CONTAINER_CREATED
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return api.ContainerState_CONTAINER_RUNNING
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}
