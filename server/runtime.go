package server

import (
	"context"
	"encoding/json"
	"log/slog"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/pod"
)

// Version is berth's version, set at build time.
var Version = "0.1.0-dev"

// RuntimeService serves the CRI RuntimeService.
type RuntimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	// Pods is the CRI service behind these handlers: it validates
	// requests and does the work; the handlers only translate messages.
	Pods         *pod.Manager
	Streams      Streams
	Streaming    *Streaming
	CgroupDriver string // "cgroupfs" or "systemd"
	Log          *slog.Logger
	// PodCIDR takes the kubelet's pod CIDR (runtime/network's CNI); nil
	// ignores it.
	PodCIDR PodCIDRSetter
}

// PodCIDRSetter renders berth's default CNI network with a pod CIDR.
type PodCIDRSetter interface {
	SetPodCIDR(ctx context.Context, podCIDR string) error
}

// Version reports berth and the CRI version it speaks.
func (s *RuntimeService) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0", // the kubelet runtime API version, not berth's
		RuntimeName:       "berth",
		RuntimeVersion:    Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady and NetworkReady as they are now.
func (s *RuntimeService) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	cond := func(typ string, err error, reason string) *runtimeapi.RuntimeCondition {
		c := &runtimeapi.RuntimeCondition{Type: typ, Status: err == nil}
		if err != nil {
			c.Reason, c.Message = reason, err.Error()
		}
		return c
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			cond(runtimeapi.RuntimeReady, s.Pods.RuntimeReady(ctx), "RuntimeNotReady"),
			cond(runtimeapi.NetworkReady, s.Pods.NetworkReady(ctx), "NetworkPluginNotReady"),
		}},
		RuntimeHandlers: s.Pods.Handlers(ctx),
		Features:        &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.Verbose {
		info, err := json.Marshal(s.Pods.Info(ctx))
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// RuntimeConfig tells the kubelet which cgroup driver to use.
func (s *RuntimeService) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig hands the kubelet's pod CIDR to the network, which
// renders berth's own default CNI network with it (as containerd's
// conf_template) and leaves an administrator's alone. A malformed CIDR is
// InvalidArgument; an empty one (no CIDR yet) changes nothing.
func (s *RuntimeService) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" && s.PodCIDR != nil {
		if err := s.PodCIDR.SetPodCIDR(ctx, cidr); err != nil {
			return nil, err
		}
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// RunPodSandbox starts a pod.
func (s *RuntimeService) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := checkPodConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	id, err := s.Pods.RunPodSandbox(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops a pod.
func (s *RuntimeService) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	return &runtimeapi.StopPodSandboxResponse{}, s.Pods.StopPodSandbox(ctx, req.GetPodSandboxId())
}

// RemovePodSandbox removes a pod.
func (s *RuntimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	return &runtimeapi.RemovePodSandboxResponse{}, s.Pods.RemovePodSandbox(ctx, req.GetPodSandboxId())
}

// PodSandboxStatus reports a pod.
func (s *RuntimeService) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	st, info, err := s.Pods.PodSandboxStatus(ctx, req.GetPodSandboxId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st, Info: info}, nil
}

// ListPodSandbox lists pods. The response carries its items already
// encoded (pod.Manager.ListPodSandboxResponse): on the wire they are
// Items, in this process Items is empty.
func (s *RuntimeService) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return s.Pods.ListPodSandboxResponse(ctx, req.GetFilter())
}

// CreateContainer creates a container in a pod.
func (s *RuntimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if err := checkContainerConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	id, err := s.Pods.CreateContainer(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a container.
func (s *RuntimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	return &runtimeapi.StartContainerResponse{}, s.Pods.StartContainer(ctx, req.GetContainerId())
}

// StopContainer stops a container.
func (s *RuntimeService) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	return &runtimeapi.StopContainerResponse{}, s.Pods.StopContainer(ctx, req.GetContainerId(), req.GetTimeout())
}

// RemoveContainer removes a container.
func (s *RuntimeService) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	return &runtimeapi.RemoveContainerResponse{}, s.Pods.RemoveContainer(ctx, req.GetContainerId())
}

// ContainerStatus reports a container.
func (s *RuntimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	st, info, err := s.Pods.ContainerStatus(ctx, req.GetContainerId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: st, Info: info}, nil
}

// ListContainers lists containers, encoded as ListPodSandbox's are.
func (s *RuntimeService) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return s.Pods.ListContainersResponse(ctx, req.GetFilter())
}

// ExecSync runs a command in a container; a non-zero exit is a normal
// response.
func (s *RuntimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	stdout, stderr, code, err := s.Pods.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), req.GetTimeout())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}

// ReopenContainerLog makes a running container write to a fresh log file.
func (s *RuntimeService) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	return &runtimeapi.ReopenContainerLogResponse{}, s.Pods.ReopenContainerLog(ctx, req.GetContainerId())
}

// UpdateContainerResources changes a container's limits live.
func (s *RuntimeService) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if set(req.GetWindows()) {
		return nil, errdefs.InvalidArgument("UpdateContainerResourcesRequest.windows: berth runs Linux containers only")
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, s.Pods.UpdateContainerResources(ctx, req.GetContainerId(), req.GetLinux())
}

// ContainerStats reports one container's resource usage.
func (s *RuntimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	st, err := s.Pods.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the resource usage of containers.
func (s *RuntimeService) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.Pods.ListContainerStats(ctx, req.GetFilter())}, nil
}

// PodSandboxStats reports one pod's resource usage.
func (s *RuntimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	st, err := s.Pods.PodSandboxStats(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the resource usage of pods.
func (s *RuntimeService) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.Pods.ListPodSandboxStats(ctx, req.GetFilter())}, nil
}

// GetContainerEvents streams container and pod lifecycle events as they
// happen, for the kubelet's evented PLEG.
func (s *RuntimeService) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	events := s.Pods.Subscribe(stream.Context())
	for ev := range events {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// ListMetricDescriptors describes the CRI metrics (the kubelet's
// /metrics/cadvisor without cAdvisor).
func (s *RuntimeService) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: s.Pods.ListMetricDescriptors(ctx)}, nil
}

// ListPodSandboxMetrics returns every pod's metrics.
func (s *RuntimeService) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: s.Pods.ListPodSandboxMetrics(ctx)}, nil
}
