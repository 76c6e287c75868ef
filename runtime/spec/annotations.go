package spec

import (
	"maps"
	"path"
	"slices"
	"strings"
)

// Annotations that tell runtimes (gVisor among them) how a pod's
// containers belong together.
const (
	AnnContainerType     = "io.kubernetes.cri.container-type"
	AnnSandboxID         = "io.kubernetes.cri.sandbox-id"
	AnnSandboxName       = "io.kubernetes.cri.sandbox-name"
	AnnSandboxNamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnSandboxUID        = "io.kubernetes.cri.sandbox-uid"
	AnnSandboxLogDir     = "io.kubernetes.cri.sandbox-log-directory"
	AnnContainerName     = "io.kubernetes.cri.container-name"
	AnnImageName         = "io.kubernetes.cri.image-name"
	ContainerTypeSandbox = "sandbox"
	ContainerTypeApp     = "container"
)

// crunSystemdSubgroup is where crun, with the systemd cgroup driver on
// cgroup v2, puts a container's processes: a "container" cgroup below the
// scope, unless this is set. berth sets it empty, so that the container's
// cgroup is the scope that cgroupsPath names, as runc makes it: where
// berth reads its stats and limits, watches OOM kills and joins execs.
const crunSystemdSubgroup = "run.oci.systemd.subgroup"

// annotations are a spec's: the pod's and the container's (ctr) CRI
// annotations that the handler lets through, then the handler's own, then
// berth's, which nothing overrides.
func annotations(rt Target, h Host, p *Pod, typ string, ctr map[string]string) map[string]string {
	a := passThrough(p.Config.GetAnnotations(), rt.PodAnnotations)
	maps.Copy(a, passThrough(ctr, rt.ContainerAnnotations))
	maps.Copy(a, rt.Annotations)
	if rt.Kind == "crun" && h.CgroupDriver == "systemd" {
		a[crunSystemdSubgroup] = ""
	}
	md := p.Config.GetMetadata()
	a[AnnContainerType] = typ
	a[AnnSandboxID] = p.ID
	a[AnnSandboxName] = md.GetName()
	a[AnnSandboxNamespace] = md.GetNamespace()
	a[AnnSandboxUID] = md.GetUid()
	if d := p.Config.GetLogDirectory(); d != "" {
		a[AnnSandboxLogDir] = d
	}
	return a
}

// reservedAnnotations are the prefixes of the keys that tell runtimes how
// a pod's containers belong together (berth's, and CRI-O's that runsc
// also reads): never a tenant's to set, whatever the allow-list says.
var reservedAnnotations = []string{"io.kubernetes.cri.", "io.kubernetes.cri-o."}

// passThrough returns the annotations whose key matches one of patterns.
func passThrough(in map[string]string, patterns []string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if slices.ContainsFunc(reservedAnnotations, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		if slices.ContainsFunc(patterns, func(p string) bool { ok, _ := path.Match(p, k); return ok }) {
			out[k] = v
		}
	}
	return out
}
