package server

import (
	"context"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/pod"
)

// The list streams (the kubelet's CRIListStreaming) answer what their List
// twins answer, in pages, so that a node with thousands of containers
// never builds a message near gRPC's 16 MiB cap (berthd's and the
// kubelet's). A page is bounded in items, to keep each message's decoding
// short, and in bytes: half of gRPC's default 4 MiB receive limit, so a
// client that kept the defaults reads every page too.
const (
	pageItems = 1000
	pageBytes = 2 << 20
)

// sendPages sends items as consecutive pages, in order, each item once.
// The CRI asks for at least one item per response, so an empty list sends
// nothing and the stream just ends. A client gone (cancelled, timed out)
// stops it before the next page. An item larger than a page on its own
// is sent alone.
func sendPages[T proto.Message](ctx context.Context, items []T, send func(page []T) error) error {
	flush := func(page []T) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return send(page)
	}
	start, size := 0, 0
	for i, item := range items {
		// Each item is one element of the response's repeated field 1:
		// its tag, its length and itself.
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(item))
		if i > start && (i-start == pageItems || size+n > pageBytes) {
			if err := flush(items[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		return flush(items[start:])
	}
	return nil
}

// podLists is what the stream RPCs need of the pod manager: the very calls
// their List twins make, so a stream cannot hold other items than its List.
type podLists interface {
	ListPodSandbox(ctx context.Context, f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox
	ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) []*runtimeapi.Container
	ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats
	ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats
	ListPodSandboxMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics
}

var _ podLists = (*pod.Manager)(nil)

// listStreams serves the RuntimeService's list streams from a podLists
// (the pod manager; a fake in tests).
type listStreams struct{ pods podLists }

func (l listStreams) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	ctx := stream.Context()
	return sendPages(ctx, l.pods.ListPodSandbox(ctx, req.GetFilter()), func(page []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: page})
	})
}

func (l listStreams) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	ctx := stream.Context()
	return sendPages(ctx, l.pods.ListContainers(ctx, req.GetFilter()), func(page []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: page})
	})
}

func (l listStreams) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	ctx := stream.Context()
	return sendPages(ctx, l.pods.ListContainerStats(ctx, req.GetFilter()), func(page []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: page})
	})
}

func (l listStreams) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	ctx := stream.Context()
	return sendPages(ctx, l.pods.ListPodSandboxStats(ctx, req.GetFilter()), func(page []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: page})
	})
}

func (l listStreams) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	ctx := stream.Context()
	return sendPages(ctx, l.pods.ListPodSandboxMetrics(ctx), func(page []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: page})
	})
}

// StreamPodSandboxes streams what ListPodSandbox lists, in pages.
func (s *RuntimeService) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	return listStreams{s.Pods}.StreamPodSandboxes(req, stream)
}

// StreamContainers streams what ListContainers lists, in pages.
func (s *RuntimeService) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	return listStreams{s.Pods}.StreamContainers(req, stream)
}

// StreamContainerStats streams what ListContainerStats reports, in pages.
func (s *RuntimeService) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	return listStreams{s.Pods}.StreamContainerStats(req, stream)
}

// StreamPodSandboxStats streams what ListPodSandboxStats reports, in pages.
func (s *RuntimeService) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	return listStreams{s.Pods}.StreamPodSandboxStats(req, stream)
}

// StreamPodSandboxMetrics streams what ListPodSandboxMetrics returns, in
// pages.
func (s *RuntimeService) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	return listStreams{s.Pods}.StreamPodSandboxMetrics(req, stream)
}
