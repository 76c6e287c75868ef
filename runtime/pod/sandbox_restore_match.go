package pod

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
)

// RestorePod's containers: the CRI has the kubelet send each one's
// restore-time config, which describes the checkpointed process (checked
// here as far as berth can) and sets everything around it.

// matchContainers pairs each checkpointed container with its
// restore-time config (by metadata name; the request's names must be
// exactly the checkpoint's) and reads its checkpoint.
func (m *Manager) matchContainers(r *podRestore, req RestorePodRequest) error {
	given := map[string]*runtimeapi.ContainerConfig{}
	for _, c := range req.Containers {
		name := c.GetMetadata().GetName()
		if name == "" {
			return errdefs.InvalidArgument("container_configs: every config needs a metadata name")
		}
		if given[name] != nil {
			return errdefs.InvalidArgument("container_configs names %q twice", name)
		}
		given[name] = c
	}
	for _, pc := range r.dump.Containers {
		src := checkpoint.DirSourceIn(req.Path, pc.Dir())
		if !src.IsCheckpoint() {
			return errdefs.InvalidArgument("pod checkpoint %s: %s holds no container checkpoint", req.Path, pc.Dir())
		}
		rs := &restoreSource{src: src}
		orig, err := rs.readCheckpoint()
		if err != nil {
			return err
		}
		var cfg *runtimeapi.ContainerConfig
		if len(req.Containers) > 0 {
			if cfg = given[pc.Name]; cfg == nil {
				return errdefs.InvalidArgument("container_configs has no config for the checkpointed container %q", pc.Name)
			}
			delete(given, pc.Name)
		}
		out, err := m.podContainerConfig(pc.Name, rs, orig, cfg)
		if err != nil {
			return err
		}
		r.ctrs, r.srcs = append(r.ctrs, out), append(r.srcs, rs)
	}
	if len(given) > 0 {
		extra := slices.Sorted(maps.Keys(given))
		return errdefs.InvalidArgument("container_configs names %q, which the checkpoint does not hold", extra)
	}
	return nil
}

// podContainerConfig is the config a checkpointed container is created
// with: the request's (labels, annotations, mounts, devices, resources,
// logging, security context), which must describe the checkpointed
// process (image, command, args, working directory, environment, user);
// without one, the checkpointed config.
func (m *Manager) podContainerConfig(name string, rs *restoreSource, orig, cfg *runtimeapi.ContainerConfig) (*runtimeapi.ContainerConfig, error) {
	image, err := m.restoreImage(&rs.config)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		// Privileges and host paths are never taken from a checkpoint.
		return nil, errdefs.InvalidArgument("container_configs has no config for the checkpointed container %q: a restored container's config is never taken from the checkpoint", name)
	}
	if err := m.sameProcess(name, image, orig, cfg); err != nil {
		return nil, err
	}
	if err := restoreMounts(orig, cfg); err != nil {
		return nil, fmt.Errorf("container %s: %w", name, err)
	}
	out := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	out.Image = &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()}
	return out, nil
}

// sameProcess fails a restore-time config that describes another process
// than the checkpointed one, in what berth can compare.
func (m *Manager) sameProcess(name, image string, orig, cfg *runtimeapi.ContainerConfig) error {
	differs := func(what string) error {
		return errdefs.FailedPrecondition("container %s: its %s differs from the checkpointed process's", name, what)
	}
	if ref := cfg.GetImage().GetImage(); ref != "" {
		want, err := m.images.Get(image)
		if err != nil {
			return err
		}
		if got, err := m.images.Get(ref); err != nil || got.ID != want.ID {
			return differs("image (" + ref + ")")
		}
	}
	switch {
	case !slices.Equal(cfg.GetCommand(), orig.GetCommand()):
		return differs("command")
	case !slices.Equal(cfg.GetArgs(), orig.GetArgs()):
		return differs("args")
	case cfg.GetWorkingDir() != orig.GetWorkingDir():
		return differs("working directory")
	case !equalEnv(cfg.GetEnvs(), orig.GetEnvs()):
		return differs("environment")
	}
	a, b := cfg.GetLinux().GetSecurityContext(), orig.GetLinux().GetSecurityContext()
	if !proto.Equal(a.GetRunAsUser(), b.GetRunAsUser()) || !proto.Equal(a.GetRunAsGroup(), b.GetRunAsGroup()) || a.GetRunAsUsername() != b.GetRunAsUsername() {
		return differs("user")
	}
	return nil
}

// equalEnv compares environments as the process sees them: the last value
// of each name, in any order.
func equalEnv(a, b []*runtimeapi.KeyValue) bool {
	m := func(kvs []*runtimeapi.KeyValue) map[string]string {
		out := map[string]string{}
		for _, kv := range kvs {
			out[kv.GetKey()] = string(kv.GetValue())
		}
		return out
	}
	x, y := m(a), m(b)
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if w, ok := y[k]; !ok || w != v {
			return false
		}
	}
	return true
}
