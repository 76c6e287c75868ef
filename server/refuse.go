package server

import (
	"context"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// The refusals a request earns by itself, before anything is done: fields
// berth would otherwise drop (see Fields). Refusals that depend on the pod
// or the node are runtime/spec's.

// checkPodConfig refuses the fields of a pod berth cannot honour.
func checkPodConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if set(cfg.GetWindows()) {
		return errdefs.InvalidArgument("PodSandboxConfig.windows: berth runs Linux pods only")
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	// A pod has no other container to join.
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET || ns.GetTargetId() != "" {
		return errdefs.InvalidArgument("LinuxSandboxSecurityContext.namespace_options: pid TARGET and target_id are for containers, not pods")
	}
	return checkTargetModes("LinuxSandboxSecurityContext", ns)
}

// checkContainerConfig refuses the fields of a container berth cannot
// honour whatever its pod.
func checkContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	if set(cfg.GetWindows()) {
		return errdefs.InvalidArgument("ContainerConfig.windows: berth runs Linux containers only")
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if err := checkTargetModes("LinuxContainerSecurityContext", ns); err != nil {
		return err
	}
	target := ns.GetPid() == runtimeapi.NamespaceMode_TARGET
	if target && ns.GetTargetId() == "" {
		return errdefs.InvalidArgument("NamespaceOption.target_id: pid TARGET needs the id of the container to join")
	}
	if !target && ns.GetTargetId() != "" {
		return errdefs.InvalidArgument("NamespaceOption.target_id %q: only pid TARGET joins another container (pid is %s)", ns.GetTargetId(), ns.GetPid())
	}
	for _, m := range cfg.GetMounts() {
		if m.GetImage().GetImage() == "" {
			if m.GetImageSubPath() != "" {
				return errdefs.InvalidArgument("Mount.image_sub_path of %s: only an image volume has one", m.GetContainerPath())
			}
			continue
		}
		if m.GetHostPath() != "" {
			return errdefs.InvalidArgument("Mount.host_path of %s: an image volume (Mount.image) has none", m.GetContainerPath())
		}
		// The image volume's mount takes no options yet: refused rather
		// than mounted without (a dropped noexec is a silent downgrade).
		if len(m.GetMountOptions()) > 0 {
			return errdefs.InvalidArgument("Mount.mount_options of image volume %s: berth cannot apply them to an image volume yet", m.GetContainerPath())
		}
	}
	return nil
}

// checkTargetModes refuses TARGET for network and IPC: the CRI defines it
// for the PID namespace only.
func checkTargetModes(owner string, ns *runtimeapi.NamespaceOption) error {
	if ns.GetNetwork() == runtimeapi.NamespaceMode_TARGET || ns.GetIpc() == runtimeapi.NamespaceMode_TARGET {
		return errdefs.InvalidArgument("%s.namespace_options: network and ipc cannot be TARGET, only pid", owner)
	}
	return nil
}

// RuntimeHandlers lists the configured runtime handlers ("" is the
// default one).
type RuntimeHandlers interface {
	Handlers(ctx context.Context) []*runtimeapi.RuntimeHandler
}

// checkImageHandler refuses a pull for a runtime handler that does not
// exist, as the CRI asks. Every handler shares the one image store, so a
// known one needs nothing more.
func checkImageHandler(ctx context.Context, handlers RuntimeHandlers, name string) error {
	if name == "" {
		return nil
	}
	if handlers != nil {
		for _, h := range handlers.Handlers(ctx) {
			if h.GetName() == name {
				return nil
			}
		}
	}
	return errdefs.InvalidArgument("ImageSpec.runtime_handler: unknown runtime handler %q", name)
}

// set reports whether m is present with some field set: an empty message
// asks for nothing and is not refused.
func set(m proto.Message) bool {
	return m != nil && proto.Size(m) > 0
}
