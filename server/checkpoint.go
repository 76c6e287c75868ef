package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/pod"
)

// CheckpointContainer writes a running container's checkpoint archive to
// the location the kubelet names, leaving the container running
// (runtime/pod container_checkpoint.go; restore is CreateContainer with
// the archive, or an OCI image holding it, as the image).
func (s *RuntimeService) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if err := s.Pods.CheckpointContainer(ctx, req.GetContainerId(), req.GetLocation(), req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// CheckpointPod writes a checkpoint of the pod's named running containers
// into the caller's empty directory, as one cut, and leaves them running
// (runtime/pod sandbox_checkpoint.go).
func (s *RuntimeService) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if err := s.Pods.CheckpointPod(ctx, req.GetPodSandboxId(), req.GetOutputPath(), req.GetContainerIds(), req.GetOptions()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// RestorePod creates a new pod from a pod checkpoint with every
// checkpointed container in it, created; StartContainer restores each
// (runtime/pod sandbox_restore.go). The configs restored, the
// checkpointed ones too, get the refusals RunPodSandbox and
// CreateContainer give.
func (s *RuntimeService) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	podID, ctrs, err := s.Pods.RestorePod(ctx, pod.RestorePodRequest{
		Path: req.GetCheckpointPath(), Config: req.GetConfig(), Handler: req.GetRuntimeHandler(),
		Options: req.GetOptions(), Containers: req.GetContainerConfigs(), Check: checkRestoredConfigs,
	})
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: podID}
	for _, c := range ctrs {
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: c.Name, ContainerId: c.ID})
	}
	return resp, nil
}

func checkRestoredConfigs(p *runtimeapi.PodSandboxConfig, ctrs []*runtimeapi.ContainerConfig) error {
	if err := checkPodConfig(p); err != nil {
		return err
	}
	for _, c := range ctrs {
		if err := checkContainerConfig(c); err != nil {
			return err
		}
	}
	return nil
}
