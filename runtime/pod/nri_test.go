package pod

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/nri"
)

// fakeNRI records the events the manager relays, as "Event:id", and
// adjusts every container it is asked about (an env var, a resource).
type fakeNRI struct {
	failures
	mu     sync.Mutex
	events []string
	// held counts BlockSync holds not yet released.
	held int
}

func (f *fakeNRI) Enabled() bool { return true }

func (f *fakeNRI) BlockSync() func() {
	f.mu.Lock()
	f.held++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.held--
			f.mu.Unlock()
		})
	}
}

func (f *fakeNRI) record(event, id string) error {
	f.mu.Lock()
	f.events = append(f.events, event+":"+id)
	f.mu.Unlock()
	return f.err(event)
}

func (f *fakeNRI) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func (f *fakeNRI) holds() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

func (f *fakeNRI) RunPodSandbox(_ context.Context, p nri.Pod) error {
	return f.record("RunPodSandbox", p.ID)
}
func (f *fakeNRI) StopPodSandbox(_ context.Context, p nri.Pod) { _ = f.record("StopPodSandbox", p.ID) }
func (f *fakeNRI) RemovePodSandbox(_ context.Context, p nri.Pod) {
	_ = f.record("RemovePodSandbox", p.ID)
}

func (f *fakeNRI) UpdatePodSandbox(_ context.Context, p nri.Pod, _, resources *runtimeapi.LinuxContainerResources) error {
	if resources.GetCpuShares() == 0 {
		return errors.New("resources not passed")
	}
	return f.record("UpdatePodSandbox", p.ID)
}

func (f *fakeNRI) PostUpdatePodSandbox(_ context.Context, p nri.Pod) {
	_ = f.record("PostUpdatePodSandbox", p.ID)
}

func (f *fakeNRI) CreateContainer(_ context.Context, p nri.Pod, c nri.Container, s *specs.Spec, _ nri.CDIInjector) error {
	if err := f.record("CreateContainer", c.ID); err != nil {
		return err
	}
	if c.PodID != p.ID || c.Config.GetMetadata().GetName() == "" || c.Spec != s {
		return errors.New("container described wrong")
	}
	s.Process.Env = append(s.Process.Env, "FROM_NRI=1")
	return nil
}

func (f *fakeNRI) PostCreateContainer(_ context.Context, _ nri.Pod, c nri.Container) {
	_ = f.record("PostCreateContainer", c.ID)
}

func (f *fakeNRI) StartContainer(_ context.Context, _ nri.Pod, c nri.Container) error {
	return f.record("StartContainer", c.ID)
}

func (f *fakeNRI) PostStartContainer(_ context.Context, _ nri.Pod, c nri.Container) {
	_ = f.record("PostStartContainer", c.ID)
}

func (f *fakeNRI) UpdateContainer(_ context.Context, _ nri.Pod, c nri.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if err := f.record("UpdateContainer", c.ID); err != nil {
		return nil, err
	}
	r = proto.Clone(r).(*runtimeapi.LinuxContainerResources)
	r.CpusetCpus = "0"
	return r, nil
}

func (f *fakeNRI) PostUpdateContainer(_ context.Context, _ nri.Pod, c nri.Container) {
	_ = f.record("PostUpdateContainer", c.ID)
}

func (f *fakeNRI) StopContainer(_ context.Context, _ nri.Pod, c nri.Container) {
	_ = f.record("StopContainer", c.ID)
}

func (f *fakeNRI) ContainerExited(_ nri.Pod, c nri.Container) {
	_ = f.record("ContainerExited", c.ID)
}

func (f *fakeNRI) RemoveContainer(_ context.Context, _ nri.Pod, c nri.Container) {
	_ = f.record("RemoveContainer", c.ID)
}

func withNRI(e *env) *fakeNRI {
	f := &fakeNRI{}
	e.m.nri = f
	return f
}

// inOrder reports whether want appear in got in that order (others may
// come between).
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestNRILifecycleEvents(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	ctx := context.Background()
	pod := e.runPod("web")
	id := e.createCtr(pod, "app")
	if env := e.bundleSpec(id).Process.Env; !slices.Contains(env, "FROM_NRI=1") {
		t.Errorf("the plugins' adjustment is not in the spec written: %v", env)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"RunPodSandbox:" + pod, "CreateContainer:" + id, "PostCreateContainer:" + id, "StartContainer:" + id,
		"PostStartContainer:" + id, "StopContainer:" + id, "RemoveContainer:" + id,
		"StopPodSandbox:" + pod, "RemovePodSandbox:" + pod,
	}
	got := f.got()
	if !inOrder(got, want) {
		t.Errorf("events:\n got %v\nwant %v in this order", got, want)
	}
	if !slices.Contains(got, "ContainerExited:"+id) {
		t.Errorf("the container's exit was not relayed: %v", got)
	}
	if f.holds() != 0 {
		t.Errorf("%d plugin synchronisation holds not released", f.holds())
	}
}

func TestNRIRefusesPod(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	f.set("RunPodSandbox", errInjected)
	if _, err := e.m.RunPodSandbox(context.Background(), podConfig("web"), ""); !errors.Is(err, errInjected) {
		t.Fatalf("RunPodSandbox with a refusing plugin: %v", err)
	}
	e.wantClean("a pod a plugin refused")
	if f.holds() != 0 {
		t.Errorf("%d plugin synchronisation holds not released", f.holds())
	}
	f.set("RunPodSandbox", nil)
	e.runPod("web") // the name is free again
}

func TestNRIRefusesContainer(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	pod := e.runPod("web")
	f.set("CreateContainer", errInjected)
	if _, err := e.m.CreateContainer(context.Background(), pod, ctrConfig("app")); !errors.Is(err, errInjected) {
		t.Fatalf("CreateContainer with a refusing plugin: %v", err)
	}
	if l := e.m.ListContainers(context.Background(), nil); len(l) != 0 {
		t.Errorf("a refused container is listed: %v", l)
	}
	// Accepted by plugins, then failed: they are told it is gone.
	f.set("CreateContainer", nil)
	e.shimOf(pod).set("Create", errInjected)
	if _, err := e.m.CreateContainer(context.Background(), pod, ctrConfig("app")); !errors.Is(err, errInjected) {
		t.Fatalf("CreateContainer with a failing shim: %v", err)
	}
	got := f.got()
	last := got[len(got)-1]
	if !strings.HasPrefix(last, "RemoveContainer:") || strings.TrimPrefix(last, "RemoveContainer:") != strings.TrimPrefix(got[len(got)-2], "CreateContainer:") {
		t.Errorf("plugins not told of the failed creation: %v", got)
	}
	if f.holds() != 0 {
		t.Errorf("%d plugin synchronisation holds not released", f.holds())
	}
}

func TestNRIRefusesStart(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	pod := e.runPod("web")
	id := e.createCtr(pod, "app")
	f.set("StartContainer", errInjected)
	if err := e.m.StartContainer(context.Background(), id); !errors.Is(err, errInjected) {
		t.Fatalf("StartContainer with a refusing plugin: %v", err)
	}
	if n := e.shimOf(pod).called("Start"); n != 0 {
		t.Errorf("a refused container was started (%d)", n)
	}
}

func TestNRIUpdatesResources(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	ctx := context.Background()
	pod := e.runPod("web")
	id := e.createCtr(pod, "app")
	if err := e.m.UpdateContainerResources(ctx, id, &runtimeapi.LinuxContainerResources{CpuShares: 256}); err != nil {
		t.Fatal(err)
	}
	st, _, err := e.m.ContainerStatus(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.GetResources().GetLinux(); r.GetCpuShares() != 256 || r.GetCpusetCpus() != "0" {
		t.Errorf("resources recorded = %v, want the request as the plugin changed it", r)
	}
	if cpu := e.bundleSpec(id).Linux.Resources.CPU; cpu == nil || cpu.Cpus != "0" {
		t.Errorf("spec resources = %+v", cpu)
	}
	if !inOrder(f.got(), []string{"UpdateContainer:" + id, "PostUpdateContainer:" + id}) {
		t.Errorf("events %v", f.got())
	}
}

func TestNRIDomain(t *testing.T) {
	e := newEnv(t)
	withNRI(e)
	ctx := context.Background()
	pod := e.runPod("web")
	created := e.createCtr(pod, "created")
	running := e.createCtr(pod, "running")
	if err := e.m.StartContainer(ctx, running); err != nil {
		t.Fatal(err)
	}
	exited := e.createCtr(pod, "exited")
	if err := e.m.StartContainer(ctx, exited); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, exited, 0); err != nil {
		t.Fatal(err)
	}
	d := e.m.NRIDomain()

	pods := d.Pods()
	if len(pods) != 1 || pods[0].ID != pod || !pods[0].Ready || pods[0].Config.GetMetadata().GetName() != "web" || pods[0].Handler != "runc" {
		t.Fatalf("Pods = %+v", pods)
	}
	if ns := pods[0].Namespaces[specs.NetworkNamespace]; ns == "" {
		t.Errorf("pod's network namespace missing: %v", pods[0].Namespaces)
	}
	var ids []string
	for _, c := range d.Containers() {
		ids = append(ids, c.ID)
		if c.Spec == nil || c.Spec.Process == nil {
			t.Errorf("container %s listed without its spec", c.ID)
		}
	}
	slices.Sort(ids)
	want := []string{created, running}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("Containers = %v, want the created and the running one %v", ids, want)
	}

	err := d.UpdateContainer(ctx, running, func(cur *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
		if cur.GetCpuShares() != 512 {
			return nil, errors.New("not given the current resources")
		}
		cur.MemoryLimitInBytes = 64 << 20
		return cur, nil
	})
	if err != nil {
		t.Fatalf("UpdateContainer: %v", err)
	}
	st, _, _ := e.m.ContainerStatus(ctx, running, false)
	if r := st.GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 64<<20 || r.GetCpuShares() != 512 {
		t.Errorf("resources after a plugin's update = %v", r)
	}
	if err := d.UpdateContainer(ctx, exited, func(r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
		return r, nil
	}); err == nil {
		t.Error("an exited container updated")
	}

	if err := d.EvictContainer(ctx, running, "make room"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, _ := e.m.ContainerStatus(ctx, running, false)
		if st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evicted container is %v", st.GetState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.EvictContainer(ctx, "gone", ""); err != nil {
		t.Errorf("evicting a missing container: %v", err)
	}
}

func TestNRIPodResize(t *testing.T) {
	e := newEnv(t)
	f := withNRI(e)
	ctx := context.Background()
	pod := e.runPod("web")
	r := &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 128 << 20}
	if err := e.m.UpdatePodSandboxResources(ctx, pod, nil, r); err != nil {
		t.Fatal(err)
	}
	if !inOrder(f.got(), []string{"UpdatePodSandbox:" + pod, "PostUpdatePodSandbox:" + pod}) {
		t.Errorf("events %v", f.got())
	}
	// Plugins see the resized pod from then on.
	if p := e.m.NRIDomain().Pods()[0]; !proto.Equal(p.Resources, r) {
		t.Errorf("pod resources for plugins = %v", p.Resources)
	}
	f.set("UpdatePodSandbox", errInjected)
	if err := e.m.UpdatePodSandboxResources(ctx, pod, nil, r); !errors.Is(err, errInjected) {
		t.Errorf("a resize a plugin refused: %v", err)
	}
}
