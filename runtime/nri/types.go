package nri

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is a pod as berth describes it to plugins; runtime/pod fills it,
// this package turns it into NRI's PodSandbox.
type Pod struct {
	ID      string
	Config  *runtimeapi.PodSandboxConfig
	Handler string
	// Ready is false once the pod is stopped.
	Ready bool
	// Overhead and Resources are the pod-level resources: the config's,
	// or the last in-place resize's.
	Overhead, Resources *runtimeapi.LinuxContainerResources
	// Pid is the sandbox container's init (0 for a pod without one).
	Pid int
	IPs []string
	// CgroupParent is the pod's effective cgroup parent, CgroupsPath the
	// sandbox container's cgroup ("" without one).
	CgroupParent, CgroupsPath string
	// Namespaces are the pod's own namespaces, by OCI type ("network",
	// "ipc", "uts", "user"), as paths that can be joined.
	Namespaces map[specs.LinuxNamespaceType]string
}

// Container is a container as berth describes it to plugins.
type Container struct {
	ID, PodID string
	Config    *runtimeapi.ContainerConfig
	// Spec is the container's OCI spec (the one being created, in
	// CreateContainer); nil if it could not be read.
	Spec  *specs.Spec
	State runtimeapi.ContainerState
	Pid   int
	// Times in Unix nanoseconds, 0 while they have not happened.
	CreatedAt, StartedAt, FinishedAt int64
	ExitCode                         int32
	Reason, Message                  string
	// ImageName is the image as requested, ImageRef its digest
	// reference, ImageID its config digest.
	ImageName, ImageRef, ImageID string
}

// Domain is the runtime seen from plugins: what they are synchronised
// with when they connect, and what their updates change.
// (*pod.Manager).NRIDomain implements it.
type Domain interface {
	// Pods lists the pods set up (ready or stopped), none half-created.
	Pods() []Pod
	// Containers lists the containers that have not exited.
	Containers() []Container
	// UpdateContainer changes a running or created container's resources
	// live: change gets the current ones and returns the new ones.
	UpdateContainer(ctx context.Context, id string, change func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error
	// EvictContainer stops a container at once (SIGKILL).
	EvictContainer(ctx context.Context, id, reason string) error
}

// CDIInjector injects CDI devices into a spec (*cdi.Registry's Inject).
type CDIInjector func(s *specs.Spec, devices []string) error
