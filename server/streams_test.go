package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// grpcCap is the message cap berthd (cmd/berthd) and the kubelet set.
const grpcCap = 16 << 20

// fakePods lists fixed items in a fixed order, applying the filters the
// way the pod manager does (id prefix, pod id prefix, labels).
type fakePods struct {
	pods       []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	ctrStats   []*runtimeapi.ContainerStats
	podStats   []*runtimeapi.PodSandboxStats
	metrics    []*runtimeapi.PodSandboxMetrics
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (f *fakePods) ListPodSandbox(ctx context.Context, flt *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, p := range f.pods {
		if strings.HasPrefix(p.Id, flt.GetId()) && labelsMatch(p.Labels, flt.GetLabelSelector()) &&
			(flt.GetState() == nil || flt.GetState().GetState() == p.State) {
			out = append(out, p)
		}
	}
	return out
}

func (f *fakePods) ListContainers(ctx context.Context, flt *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		if strings.HasPrefix(c.Id, flt.GetId()) && strings.HasPrefix(c.PodSandboxId, flt.GetPodSandboxId()) &&
			labelsMatch(c.Labels, flt.GetLabelSelector()) && (flt.GetState() == nil || flt.GetState().GetState() == c.State) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakePods) ListContainerStats(ctx context.Context, flt *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	var out []*runtimeapi.ContainerStats
	for _, s := range f.ctrStats {
		if strings.HasPrefix(s.Attributes.Id, flt.GetId()) && labelsMatch(s.Attributes.Labels, flt.GetLabelSelector()) {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakePods) ListPodSandboxStats(ctx context.Context, flt *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	var out []*runtimeapi.PodSandboxStats
	for _, s := range f.podStats {
		if strings.HasPrefix(s.Attributes.Id, flt.GetId()) && labelsMatch(s.Attributes.Labels, flt.GetLabelSelector()) {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakePods) ListPodSandboxMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	return f.metrics
}

// fakeStream is the server side of a stream: it keeps what is sent and
// calls afterSend (to cancel the client, say) after each message.
type fakeStream[R any] struct {
	grpc.ServerStream
	ctx       context.Context
	sent      []*R
	afterSend func()
}

func (f *fakeStream[R]) Context() context.Context { return f.ctx }

func (f *fakeStream[R]) Send(m *R) error {
	f.sent = append(f.sent, m)
	if f.afterSend != nil {
		f.afterSend()
	}
	return nil
}

func hexID(prefix string, i int) string {
	return fmt.Sprintf("%s%0*x", prefix, 64-len(prefix), i)
}

// kubeletContainer is container i of pod i/2 as the kubelet creates it:
// its labels and annotations are those of a real kubelet's container.
func kubeletContainer(i int) *runtimeapi.Container {
	name, podName := fmt.Sprintf("app-%d", i%2), fmt.Sprintf("web-7d4b9c8f6-%05d", i/2)
	return &runtimeapi.Container{
		Id:           hexID("c", i),
		PodSandboxId: hexID("p", i/2),
		Metadata:     &runtimeapi.ContainerMetadata{Name: name, Attempt: uint32(i % 3)},
		Image:        &runtimeapi.ImageSpec{Image: "registry.example.com/team/web@sha256:" + hexID("", 7)},
		ImageRef:     "sha256:" + hexID("", 8),
		ImageId:      "sha256:" + hexID("", 8),
		State:        runtimeapi.ContainerState(i % 4),
		CreatedAt:    1_700_000_000_000_000_000 + int64(i),
		Labels: map[string]string{
			"io.kubernetes.container.name": name,
			"io.kubernetes.pod.name":       podName,
			"io.kubernetes.pod.namespace":  "production-frontend",
			"io.kubernetes.pod.uid":        fmt.Sprintf("3f2c9a1e-8b7d-4c6e-9f01-%012d", i/2),
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash":                     fmt.Sprintf("%08x", i*2654435761),
			"io.kubernetes.container.restartCount":             fmt.Sprint(i % 3),
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
			"io.kubernetes.container.ports":                    `[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9090,"protocol":"TCP"},{"name":"grpc","containerPort":9443,"protocol":"TCP"}]`,
			"io.kubernetes.container.preStopHandler":           `{"exec":{"command":["/bin/sh","-c","sleep 5 && /usr/local/bin/drain --timeout=20s --endpoint=http://127.0.0.1:8080/healthz"]}}`,
		},
	}
}

func kubeletContainers(n int) []*runtimeapi.Container {
	out := make([]*runtimeapi.Container, n)
	for i := range out {
		out[i] = kubeletContainer(i)
	}
	return out
}

// testPods is a small node: six pods, twelve containers, their stats and
// metrics, in an order no sorting would give.
func testPods() *fakePods {
	f := &fakePods{}
	for _, i := range []int{5, 2, 9, 0, 7, 3} {
		id := hexID("p", i)
		labels := map[string]string{"app": fmt.Sprint("a", i%2)}
		md := &runtimeapi.PodSandboxMetadata{Name: fmt.Sprint("pod-", i), Namespace: "ns", Uid: fmt.Sprint("uid-", i)}
		f.pods = append(f.pods, &runtimeapi.PodSandbox{Id: id, Metadata: md, Labels: labels,
			State: runtimeapi.PodSandboxState(i % 2), RuntimeHandler: "runc"})
		attrs := &runtimeapi.PodSandboxAttributes{Id: id, Metadata: md, Labels: labels}
		f.podStats = append(f.podStats, &runtimeapi.PodSandboxStats{Attributes: attrs,
			Linux: &runtimeapi.LinuxPodSandboxStats{Cpu: &runtimeapi.CpuUsage{UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: uint64(i)}}}})
		f.metrics = append(f.metrics, &runtimeapi.PodSandboxMetrics{PodSandboxId: id,
			Metrics: []*runtimeapi.Metric{{Name: "container_network_receive_bytes_total", Value: &runtimeapi.UInt64Value{Value: uint64(i)}}}})
		for _, j := range []int{2*i + 1, 2 * i} {
			c := kubeletContainer(j)
			c.Labels["app"] = labels["app"]
			f.containers = append(f.containers, c)
			f.ctrStats = append(f.ctrStats, &runtimeapi.ContainerStats{
				Attributes: &runtimeapi.ContainerAttributes{Id: c.Id, Metadata: c.Metadata, Labels: c.Labels},
				Cpu:        &runtimeapi.CpuUsage{UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: uint64(j)}},
			})
		}
	}
	return f
}

// streamItems runs call on a fake stream and returns every item of every
// page, and the number of pages.
func streamItems[R any, T proto.Message](t *testing.T, call func(grpc.ServerStreamingServer[R]) error, items func(*R) []T) ([]proto.Message, int) {
	t.Helper()
	st := &fakeStream[R]{ctx: context.Background()}
	if err := call(st); err != nil {
		t.Fatalf("stream: %v", err)
	}
	var out []proto.Message
	for _, page := range st.sent {
		if len(items(page)) == 0 {
			t.Error("a response without items: the CRI asks for at least one")
		}
		out = append(out, msgs(items(page))...)
	}
	return out, len(st.sent)
}

func msgs[T proto.Message](items []T) []proto.Message {
	out := make([]proto.Message, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

func sameItems(t *testing.T, what string, got, want []proto.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: the stream has %d items, its List %d", what, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: item %d differs:\n stream %v\n list   %v", what, i, got[i], want[i])
		}
	}
}

// TestStreamsEqualTheirListTwins: each stream holds what its List twin
// returns for the same filter, in the same order; an empty list is a
// stream without responses.
func TestStreamsEqualTheirListTwins(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		f    *fakePods
	}{{"node", testPods()}, {"empty node", &fakePods{}}} {
		f, l := tc.f, listStreams{tc.f}
		sel := map[string]string{"app": "a1"}
		podFilters := []*runtimeapi.PodSandboxFilter{nil, {LabelSelector: sel}, {Id: hexID("p", 9)[:10]},
			{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, {Id: "nope"}}
		for i, flt := range podFilters {
			got, _ := streamItems(t, func(s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
				return l.StreamPodSandboxes(&runtimeapi.StreamPodSandboxesRequest{Filter: flt}, s)
			}, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)
			sameItems(t, fmt.Sprintf("%s: pods, filter %d", tc.name, i), got, msgs(f.ListPodSandbox(ctx, flt)))
		}
		ctrFilters := []*runtimeapi.ContainerFilter{nil, {LabelSelector: sel}, {PodSandboxId: hexID("p", 9)},
			{Id: hexID("c", 4)}, {State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}}
		for i, flt := range ctrFilters {
			got, _ := streamItems(t, func(s grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
				return l.StreamContainers(&runtimeapi.StreamContainersRequest{Filter: flt}, s)
			}, (*runtimeapi.StreamContainersResponse).GetContainers)
			sameItems(t, fmt.Sprintf("%s: containers, filter %d", tc.name, i), got, msgs(f.ListContainers(ctx, flt)))
		}
		for i, flt := range []*runtimeapi.ContainerStatsFilter{nil, {LabelSelector: sel}, {Id: hexID("c", 11)}} {
			got, _ := streamItems(t, func(s grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
				return l.StreamContainerStats(&runtimeapi.StreamContainerStatsRequest{Filter: flt}, s)
			}, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats)
			sameItems(t, fmt.Sprintf("%s: container stats, filter %d", tc.name, i), got, msgs(f.ListContainerStats(ctx, flt)))
		}
		for i, flt := range []*runtimeapi.PodSandboxStatsFilter{nil, {LabelSelector: sel}, {Id: hexID("p", 3)}} {
			got, _ := streamItems(t, func(s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
				return l.StreamPodSandboxStats(&runtimeapi.StreamPodSandboxStatsRequest{Filter: flt}, s)
			}, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats)
			sameItems(t, fmt.Sprintf("%s: pod stats, filter %d", tc.name, i), got, msgs(f.ListPodSandboxStats(ctx, flt)))
		}
		got, pages := streamItems(t, func(s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
			return l.StreamPodSandboxMetrics(&runtimeapi.StreamPodSandboxMetricsRequest{}, s)
		}, (*runtimeapi.StreamPodSandboxMetricsResponse).GetPodSandboxMetrics)
		sameItems(t, tc.name+": metrics", got, msgs(f.ListPodSandboxMetrics(ctx)))
		if len(f.metrics) == 0 && pages != 0 {
			t.Errorf("%s: an empty list gave %d responses, want none", tc.name, pages)
		}
	}
	// The filters above must select something and not everything, or the
	// comparison proves little.
	f := testPods()
	if n := len(f.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "a1"}})); n == 0 || n == len(f.containers) {
		t.Errorf("the label filter selects %d of %d containers", n, len(f.containers))
	}
}

// TestStreamPages5000Containers: a node's 5,000 containers, with the
// kubelet's labels and annotations, come in several pages, each under the
// page bounds (so far under gRPC's cap), none lost, none repeated, in
// order.
func TestStreamPages5000Containers(t *testing.T) {
	f := &fakePods{containers: kubeletContainers(5000)}
	st := &fakeStream[runtimeapi.StreamContainersResponse]{ctx: context.Background()}
	if err := (listStreams{f}).StreamContainers(&runtimeapi.StreamContainersRequest{}, st); err != nil {
		t.Fatal(err)
	}
	if len(st.sent) < 3 {
		t.Errorf("5,000 containers came in %d responses", len(st.sent))
	}
	var got []*runtimeapi.Container
	for i, page := range st.sent {
		size := proto.Size(page)
		if size > pageBytes || len(page.Containers) > pageItems || size >= grpcCap {
			t.Errorf("page %d: %d items, %d bytes; bounds %d items, %d bytes", i, len(page.Containers), size, pageItems, pageBytes)
		}
		// A page is as big as its items, each as a response of its own:
		// what sendPages counts.
		sum := 0
		for _, c := range page.Containers {
			sum += proto.Size(&runtimeapi.StreamContainersResponse{Containers: []*runtimeapi.Container{c}})
		}
		if size != sum {
			t.Errorf("page %d: %d bytes, yet its items add up to %d", i, size, sum)
		}
		got = append(got, page.Containers...)
	}
	sameItems(t, "5,000 containers", msgs(got), msgs(f.containers))
	t.Logf("%d containers, %d bytes listed at once, in %d pages", len(f.containers),
		proto.Size(&runtimeapi.ListContainersResponse{Containers: f.containers}), len(st.sent))
}

// TestSendPagesBounds: the page bounds, by items and by bytes; an item
// bigger than a page goes alone; nothing is sent for nothing.
func TestSendPagesBounds(t *testing.T) {
	ctx := context.Background()
	pageSizes := func(items []*runtimeapi.Container) []int {
		var sizes []int
		if err := sendPages(ctx, items, func(page []*runtimeapi.Container) error {
			sizes = append(sizes, len(page))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return sizes
	}
	small := make([]*runtimeapi.Container, 2*pageItems+1)
	for i := range small {
		small[i] = &runtimeapi.Container{Id: fmt.Sprint(i)}
	}
	if got := fmt.Sprint(pageSizes(small)); got != fmt.Sprint([]int{pageItems, pageItems, 1}) {
		t.Errorf("%d small items came in pages of %s", len(small), got)
	}
	big := &runtimeapi.Container{Id: "big", Annotations: map[string]string{"a": strings.Repeat("x", pageBytes)}}
	half := &runtimeapi.Container{Id: "half", Annotations: map[string]string{"a": strings.Repeat("x", pageBytes/2)}}
	if got := fmt.Sprint(pageSizes([]*runtimeapi.Container{half, big, half, half, {Id: "s"}})); got != "[1 1 1 2]" {
		t.Errorf("pages by bytes: %s, want [1 1 1 2]", got)
	}
	if got := pageSizes(nil); len(got) != 0 {
		t.Errorf("an empty list sent %v", got)
	}
	wantErr := errors.New("send failed")
	n := 0
	err := sendPages(ctx, small, func(page []*runtimeapi.Container) error { n++; return wantErr })
	if !errors.Is(err, wantErr) || n != 1 {
		t.Errorf("a failed send: %v after %d sends", err, n)
	}
}

// TestStreamStopsWhenClientCancels: once the client is gone, no further
// page is sent and the stream ends with the context's error.
func TestStreamStopsWhenClientCancels(t *testing.T) {
	f := &fakePods{containers: kubeletContainers(5000)}
	ctx, cancel := context.WithCancel(context.Background())
	st := &fakeStream[runtimeapi.StreamContainersResponse]{ctx: ctx, afterSend: cancel}
	err := (listStreams{f}).StreamContainers(&runtimeapi.StreamContainersRequest{}, st)
	if !errors.Is(err, context.Canceled) || len(st.sent) != 1 {
		t.Errorf("cancelled after the first page: err %v, %d pages sent", err, len(st.sent))
	}
	st = &fakeStream[runtimeapi.StreamContainersResponse]{ctx: ctx}
	if err := (listStreams{f}).StreamContainers(&runtimeapi.StreamContainersRequest{}, st); !errors.Is(err, context.Canceled) || len(st.sent) != 0 {
		t.Errorf("cancelled before: err %v, %d pages sent", err, len(st.sent))
	}
}
