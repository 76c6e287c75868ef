package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// recvAll reads a list stream to its end: every item, and the number of
// responses, each of which must hold at least one item.
func recvAll[R any, T any](t *testing.T, stream grpc.ServerStreamingClient[R], err error, items func(*R) []T) ([]T, int) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	pages := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, pages
		}
		if err != nil {
			t.Fatalf("after %d responses: %v", pages, err)
		}
		if len(items(resp)) == 0 {
			t.Error("a response without items: the CRI asks for at least one")
		}
		pages++
		out = append(out, items(resp)...)
	}
}

// sameByID compares a stream's items with its List twin's: berthd lists
// in no fixed order, so both are sorted by id first; key says what of an
// item to compare (the whole item, or its ids where figures move).
func sameByID[T any](t *testing.T, what string, got, want []T, id func(T) string, key func(T) proto.Message) {
	t.Helper()
	order := func(l []T) []T {
		l = slices.Clone(l)
		slices.SortFunc(l, func(a, b T) int { return strings.Compare(id(a), id(b)) })
		return l
	}
	got, want = order(got), order(want)
	if len(got) != len(want) {
		t.Fatalf("%s: the stream has %d items, its List %d", what, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(key(got[i]), key(want[i])) {
			t.Errorf("%s: item %s differs:\n stream %v\n list   %v", what, id(want[i]), key(got[i]), key(want[i]))
		}
	}
}

func whole[T proto.Message](x T) proto.Message { return x }

// TestStreamRPCs: against a real berthd with pods and containers in
// several states, each list stream answers what its List twin answers
// for the same filter; a filter that matches nothing is a stream without
// responses.
func TestStreamRPCs(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	rt, img := b.Client(t), b.ImageClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
		t.Fatal(err)
	}

	// Three pods: two tiers; in the second an unstarted container, in the
	// third one that exited, then the pod stopped.
	var pods []string
	var ctrs []string
	for i, tier := range []string{"a", "b", "a"} {
		cfg := podSpec(dir, fmt.Sprintf("stream-%d", i))
		cfg.Labels = map[string]string{"tier": tier}
		run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, run.PodSandboxId)
		create := func(name string, start bool, cmd ...string) string {
			cc := ctrSpec(name, cmd...)
			cc.Labels = map[string]string{"tier": tier, "name": name}
			c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: cc, SandboxConfig: cfg})
			if err != nil {
				t.Fatal(err)
			}
			if start {
				if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
					t.Fatal(err)
				}
			}
			ctrs = append(ctrs, c.ContainerId)
			return c.ContainerId
		}
		waitState(t, b, create("sleeper", true, "sleep", "600"), runtimeapi.ContainerState_CONTAINER_RUNNING)
		switch i {
		case 1:
			create("idle", false, "true")
		case 2:
			waitState(t, b, create("done", true, "true"), runtimeapi.ContainerState_CONTAINER_EXITED)
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func() {
		for _, p := range pods {
			_, _ = rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p})
		}
	}()
	tierA := map[string]string{"tier": "a"}

	t.Run("StreamPodSandboxes", func(t *testing.T) {
		for _, tc := range []struct {
			f    *runtimeapi.PodSandboxFilter
			want int
		}{{nil, 3}, {&runtimeapi.PodSandboxFilter{LabelSelector: tierA}, 2}, {&runtimeapi.PodSandboxFilter{Id: pods[1]}, 1},
			{&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, 1}} {
			f := tc.f
			s, err := rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: f})
			got, _ := recvAll(t, s, err, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)
			list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("filter %v: %d pods streamed, want %d", f, len(got), tc.want)
			}
			sameByID(t, fmt.Sprintf("pods, filter %v", f), got, list.Items, (*runtimeapi.PodSandbox).GetId, whole)
		}
	})

	t.Run("StreamContainers", func(t *testing.T) {
		// pod 0: sleeper; pod 1: sleeper, idle; pod 2 (stopped): sleeper, done.
		for _, tc := range []struct {
			f    *runtimeapi.ContainerFilter
			want int
		}{{nil, 5}, {&runtimeapi.ContainerFilter{LabelSelector: tierA}, 3}, {&runtimeapi.ContainerFilter{PodSandboxId: pods[1]}, 2},
			{&runtimeapi.ContainerFilter{Id: ctrs[0]}, 1},
			{&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, 2}} {
			f := tc.f
			s, err := rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: f})
			got, _ := recvAll(t, s, err, (*runtimeapi.StreamContainersResponse).GetContainers)
			list, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("filter %v: %d containers streamed, want %d", f, len(got), tc.want)
			}
			sameByID(t, fmt.Sprintf("containers, filter %v", f), got, list.Containers, (*runtimeapi.Container).GetId, whole)
		}
	})

	// Stats and metrics move between two calls: compare what they are of.
	ctrStatsKey := func(s *runtimeapi.ContainerStats) proto.Message { return s.GetAttributes() }
	t.Run("StreamContainerStats", func(t *testing.T) {
		for i, f := range []*runtimeapi.ContainerStatsFilter{nil, {LabelSelector: tierA}, {PodSandboxId: pods[0]}} {
			s, err := rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: f})
			got, _ := recvAll(t, s, err, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats)
			list, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && len(got) == 0 {
				t.Error("no container stats streamed")
			}
			sameByID(t, fmt.Sprintf("container stats, filter %v", f), got, list.Stats,
				func(s *runtimeapi.ContainerStats) string { return s.GetAttributes().GetId() }, ctrStatsKey)
		}
	})

	t.Run("StreamPodSandboxStats", func(t *testing.T) {
		// A pod's stats are of the pod and of its containers.
		key := func(s *runtimeapi.PodSandboxStats) proto.Message {
			out := &runtimeapi.PodSandboxStats{Attributes: s.GetAttributes(), Linux: &runtimeapi.LinuxPodSandboxStats{}}
			for _, c := range s.GetLinux().GetContainers() {
				out.Linux.Containers = append(out.Linux.Containers, &runtimeapi.ContainerStats{Attributes: c.GetAttributes()})
			}
			slices.SortFunc(out.Linux.Containers, func(a, b *runtimeapi.ContainerStats) int {
				return strings.Compare(a.GetAttributes().GetId(), b.GetAttributes().GetId())
			})
			return out
		}
		for i, f := range []*runtimeapi.PodSandboxStatsFilter{nil, {LabelSelector: tierA}, {Id: pods[1]}} {
			s, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: f})
			got, _ := recvAll(t, s, err, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats)
			list, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && len(got) == 0 {
				t.Error("no pod stats streamed")
			}
			sameByID(t, fmt.Sprintf("pod stats, filter %v", f), got, list.Stats,
				func(s *runtimeapi.PodSandboxStats) string { return s.GetAttributes().GetId() }, key)
		}
	})

	t.Run("StreamPodSandboxMetrics", func(t *testing.T) {
		// A pod's metrics: their names and labels, not their values.
		key := func(m *runtimeapi.PodSandboxMetrics) proto.Message {
			out := &runtimeapi.PodSandboxMetrics{PodSandboxId: m.GetPodSandboxId()}
			for _, x := range m.GetMetrics() {
				out.Metrics = append(out.Metrics, &runtimeapi.Metric{Name: x.GetName(), LabelValues: x.GetLabelValues()})
			}
			for _, c := range m.GetContainerMetrics() {
				cm := &runtimeapi.ContainerMetrics{ContainerId: c.GetContainerId()}
				for _, x := range c.GetMetrics() {
					cm.Metrics = append(cm.Metrics, &runtimeapi.Metric{Name: x.GetName(), LabelValues: x.GetLabelValues()})
				}
				out.ContainerMetrics = append(out.ContainerMetrics, cm)
			}
			slices.SortFunc(out.ContainerMetrics, func(a, b *runtimeapi.ContainerMetrics) int { return strings.Compare(a.ContainerId, b.ContainerId) })
			return out
		}
		s, err := rt.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
		got, _ := recvAll(t, s, err, (*runtimeapi.StreamPodSandboxMetricsResponse).GetPodSandboxMetrics)
		list, err := rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Error("no pod metrics streamed")
		}
		sameByID(t, "pod metrics", got, list.PodMetrics, (*runtimeapi.PodSandboxMetrics).GetPodSandboxId, key)
	})

	t.Run("StreamImages", func(t *testing.T) {
		for i, f := range []*runtimeapi.ImageFilter{nil, {Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}} {
			s, err := img.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: f})
			got, _ := recvAll(t, s, err, (*runtimeapi.StreamImagesResponse).GetImages)
			list, err := img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || i == 1 && len(got) != 1 {
				t.Errorf("filter %v: %d images streamed", f, len(got))
			}
			sameByID(t, fmt.Sprintf("images, filter %v", f), got, list.Images, (*runtimeapi.Image).GetId, whole)
		}
	})

	// Nothing matches: the stream ends at once, without a response.
	t.Run("empty", func(t *testing.T) {
		none := map[string]string{"tier": "none"}
		counts := map[string]int{}
		s1, err := rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: none}})
		_, counts["pods"] = recvAll(t, s1, err, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)
		s2, err := rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: none}})
		_, counts["containers"] = recvAll(t, s2, err, (*runtimeapi.StreamContainersResponse).GetContainers)
		s3, err := rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: none}})
		_, counts["container stats"] = recvAll(t, s3, err, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats)
		s4, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: none}})
		_, counts["pod stats"] = recvAll(t, s4, err, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats)
		s5, err := img.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "no-such-image:1"}}})
		_, counts["images"] = recvAll(t, s5, err, (*runtimeapi.StreamImagesResponse).GetImages)
		for what, n := range counts {
			if n != 0 {
				t.Errorf("%s: %d responses for a filter that matches nothing", what, n)
			}
		}
	})
}
