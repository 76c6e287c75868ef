package pod

import (
	"context"
	"sort"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListWire: what the List RPCs send (items encoded once and kept)
// decodes into the very items ListPodSandbox and ListContainers build,
// through every state a pod and a container go through, with filters.
func TestListWire(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod1, pod2 := e.runPod("a"), e.runPod("b")
	c1, c2 := e.createCtr(pod1, "c1"), e.createCtr(pod2, "c2")
	check := func(step string) {
		t.Helper()
		for _, f := range []*runtimeapi.PodSandboxFilter{nil, {Id: pod1[:8]}, {State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}} {
			resp, err := e.m.ListPodSandboxResponse(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got := decode(t, resp, &runtimeapi.ListPodSandboxResponse{}).GetItems()
			want := e.m.ListPodSandbox(ctx, f)
			sameList(t, step, got, want, func(p *runtimeapi.PodSandbox) string { return p.Id })
		}
		for _, f := range []*runtimeapi.ContainerFilter{nil, {PodSandboxId: pod2}, {State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}} {
			resp, err := e.m.ListContainersResponse(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got := decode(t, resp, &runtimeapi.ListContainersResponse{}).GetContainers()
			want := e.m.ListContainers(ctx, f)
			sameList(t, step, got, want, func(c *runtimeapi.Container) string { return c.Id })
		}
	}
	check("created")
	check("created, again (from the kept encodings)")
	if err := e.m.StartContainer(ctx, c1); err != nil {
		t.Fatal(err)
	}
	check("c1 started")
	if err := e.m.StartContainer(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, c1, 10); err != nil {
		t.Fatal(err)
	}
	check("c1 stopped, c2 started")
	if err := e.m.StopPodSandbox(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	check("pod b stopped")
	if err := e.m.RemovePodSandbox(ctx, pod1); err != nil {
		t.Fatal(err)
	}
	check("pod a removed")
}

func decode[M proto.Message](t *testing.T, sent proto.Message, into M) M {
	t.Helper()
	b, err := proto.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	if len(into.ProtoReflect().GetUnknown()) != 0 {
		t.Errorf("%T: unknown fields left after decoding", into)
	}
	return into
}

func sameList[M proto.Message](t *testing.T, step string, got, want []M, id func(M) string) {
	t.Helper()
	sort.Slice(got, func(i, j int) bool { return id(got[i]) < id(got[j]) })
	sort.Slice(want, func(i, j int) bool { return id(want[i]) < id(want[j]) })
	if len(got) != len(want) {
		t.Fatalf("%s: %d items sent, %d listed", step, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("%s: sent %v\nlisted %v", step, got[i], want[i])
		}
	}
}
