package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/config"
)

// The adaptation glue against the library's own plugin stub, in process,
// on a socket in a temporary directory: what a real plugin sees and what
// its answers do.

// fakeDomain is a runtime of fixed pods and containers that records the
// updates and evictions plugins ask for.
type fakeDomain struct {
	mu        sync.Mutex
	pods      []Pod
	ctrs      []Container
	resources map[string]*runtimeapi.LinuxContainerResources
	evicted   []string
}

func (d *fakeDomain) Pods() []Pod {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pods)
}

func (d *fakeDomain) Containers() []Container {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ctrs)
}

func (d *fakeDomain) UpdateContainer(_ context.Context, id string, change func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, ok := d.resources[id]
	if !ok {
		return fmt.Errorf("no container %s", id)
	}
	r, err := change(proto.Clone(cur).(*runtimeapi.LinuxContainerResources))
	if err != nil {
		return err
	}
	d.resources[id] = r
	return nil
}

func (d *fakeDomain) EvictContainer(_ context.Context, id, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evicted = append(d.evicted, id)
	return nil
}

func (d *fakeDomain) res(id string) *runtimeapi.LinuxContainerResources {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resources[id]
}

// testPlugin records what it is told, as "Event:id", and adjusts
// containers.
type testPlugin struct {
	mu      sync.Mutex
	events  []string
	synced  []string
	refuse  map[string]bool // events to refuse
	syncedC chan struct{}
	once    sync.Once
	// onPostStart runs in the PostStartContainer handler.
	onPostStart func() error
}

func newTestPlugin() *testPlugin {
	return &testPlugin{refuse: map[string]bool{}, syncedC: make(chan struct{})}
}

func (p *testPlugin) record(event, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event+":"+id)
	if p.refuse[event] {
		return errors.New("refused by the test plugin")
	}
	return nil
}

func (p *testPlugin) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *testPlugin) count(event string) int {
	n := 0
	for _, e := range p.got() {
		if e == event {
			n++
		}
	}
	return n
}

func (p *testPlugin) setRefuse(event string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse[event] = on
}

func (p *testPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, pod := range pods {
		p.synced = append(p.synced, "pod:"+pod.GetId()+":"+pod.GetName())
	}
	for _, c := range ctrs {
		p.synced = append(p.synced, "ctr:"+c.GetId()+":"+c.GetName()+":"+c.GetState().String())
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.syncedC) })
	return nil, nil
}

func (p *testPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record("RunPodSandbox", pod.GetId())
}

func (p *testPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record("StopPodSandbox", pod.GetId())
}

func (p *testPlugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record("RemovePodSandbox", pod.GetId())
}

// CreateContainer adjusts every part of the container NRI can, and asks
// for the existing container ctr0's CPUs.
func (p *testPlugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if err := p.record("CreateContainer", c.GetId()); err != nil {
		return nil, nil, err
	}
	a := &api.ContainerAdjustment{}
	a.AddEnv("FROM_PLUGIN", pod.GetName()+"/"+c.GetName())
	a.AddAnnotation("plugin.example.com/seen", "yes")
	a.AddMount(&api.Mount{Source: "/srv/data", Destination: "/data", Type: "bind", Options: []string{"rbind", "ro"}})
	a.AddRlimit("RLIMIT_NOFILE", 4096, 1024)
	oom := 500
	a.SetLinuxOomScoreAdj(&oom)
	a.AddDevice(&api.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: api.FileMode(0o666)})
	a.AddHooks(&api.Hooks{Prestart: []*api.Hook{{Path: "/usr/bin/true"}}})
	if c.GetName() == "with-cdi" {
		a.AddCDIDevice(&api.CDIDevice{Name: "vendor.example.com/gpu=0"})
	}
	a.SetLinuxCPUSetCPUs("0-1")
	a.SetLinuxMemoryLimit(128 << 20)
	u := &api.ContainerUpdate{}
	u.SetContainerId("ctr0")
	u.SetLinuxCPUSetCPUs("2-3")
	return a, []*api.ContainerUpdate{u}, nil
}

func (p *testPlugin) PostCreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	return p.record("PostCreateContainer", c.GetId())
}

func (p *testPlugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	return p.record("StartContainer", c.GetId())
}

func (p *testPlugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	if err := p.record("PostStartContainer", c.GetId()); err != nil {
		return err
	}
	p.mu.Lock()
	f := p.onPostStart
	p.mu.Unlock()
	if f != nil {
		return f()
	}
	return nil
}

// UpdateContainer pins the container to memory node 0 besides what it was
// asked.
func (p *testPlugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	if err := p.record("UpdateContainer", c.GetId()); err != nil {
		return nil, err
	}
	u := &api.ContainerUpdate{}
	u.SetContainerId(c.GetId())
	u.SetLinuxCPUSetMems("0")
	return []*api.ContainerUpdate{u}, nil
}

func (p *testPlugin) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	return p.record("PostUpdateContainer", c.GetId())
}

func (p *testPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, p.record("StopContainer", c.GetId())
}

func (p *testPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	return p.record("RemoveContainer", c.GetId())
}

type harness struct {
	t      *testing.T
	n      *NRI
	d      *fakeDomain
	p      *testPlugin
	stub   stub.Stub
	socket string
}

func podOf(id, name string) Pod {
	return Pod{ID: id, Ready: true, Handler: "runc", Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Labels:   map[string]string{"app": name},
	}}
}

func ctrOf(id, podID, name string, state runtimeapi.ContainerState) Container {
	return Container{ID: id, PodID: podID, State: state, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
	}}
}

// start runs an NRI on a fresh socket with one pod and one running
// container, and connects a test plugin to it.
func start(t *testing.T) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "nri-") // short: a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	h := &harness{t: t, socket: filepath.Join(dir, "nri.sock"), p: newTestPlugin(), d: &fakeDomain{
		pods:      []Pod{podOf("pod0", "existing")},
		ctrs:      []Container{ctrOf("ctr0", "pod0", "old", runtimeapi.ContainerState_CONTAINER_RUNNING)},
		resources: map[string]*runtimeapi.LinuxContainerResources{"ctr0": {CpuShares: 100, CpusetCpus: "0-3"}},
	}}
	h.n, err = New(Options{
		Config: config.NRI{
			Enable: true, SocketPath: h.socket, PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf.d"),
			PluginRegistrationTimeout: config.Duration{Duration: 5 * time.Second}, PluginRequestTimeout: config.Duration{Duration: 5 * time.Second},
		},
		Version: "test", Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.n.Start(h.d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.n.Stop)
	if fi, err := os.Stat(h.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v, %v: want mode 0600", fi, err)
	}
	h.stub, err = stub.New(h.p, stub.WithPluginName("test"), stub.WithPluginIdx("10"), stub.WithSocketPath(h.socket))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.stub.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stub.Stop)
	select {
	case <-h.p.syncedC:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin was not synchronised")
	}
	// The plugin is registered once its synchronisation is over.
	h.n.BlockSync()()
	return h
}

// wantEvents waits for the plugin to have seen want, in that order.
func (h *harness) wantEvents(want ...string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.p.got()
		i := 0
		for _, g := range got {
			if i < len(want) && g == want[i] {
				i++
			}
		}
		if i == len(want) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("plugin saw %v, want %v in this order", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:   &specs.Linux{Resources: &specs.LinuxResources{}},
	}
}

func TestSynchronizeWithExisting(t *testing.T) {
	h := start(t)
	h.p.mu.Lock()
	synced := slices.Clone(h.p.synced)
	h.p.mu.Unlock()
	want := []string{"pod:pod0:existing", "ctr:ctr0:old:CONTAINER_RUNNING"}
	if !slices.Equal(synced, want) {
		t.Errorf("synchronised with %v, want %v", synced, want)
	}
}

func TestContainerLifecycle(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	pod := podOf("pod1", "web")
	if err := h.n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	s := baseSpec()
	c := ctrOf("ctr1", "pod1", "app", runtimeapi.ContainerState_CONTAINER_UNKNOWN)
	if err := h.n.CreateContainer(ctx, pod, c, s, func(*specs.Spec, []string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Env, []string{"PATH=/bin", "FROM_PLUGIN=web/app"}) {
		t.Errorf("env = %v", s.Process.Env)
	}
	if s.Annotations["plugin.example.com/seen"] != "yes" {
		t.Errorf("annotations = %v", s.Annotations)
	}
	if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" && m.Source == "/srv/data" }) {
		t.Errorf("mounts = %v", s.Mounts)
	}
	if !slices.Contains(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}) {
		t.Errorf("rlimits = %v", s.Process.Rlimits)
	}
	if adj := s.Process.OOMScoreAdj; adj == nil || *adj != max(500, h.n.oomFloor) {
		t.Errorf("OOM score adjustment = %v", adj)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/fuse" || len(s.Linux.Resources.Devices) != 1 {
		t.Errorf("devices = %v, rules %v", s.Linux.Devices, s.Linux.Resources.Devices)
	}
	if s.Hooks == nil || len(s.Hooks.Prestart) != 1 { //nolint:staticcheck // what a plugin asked for
		t.Errorf("hooks = %+v", s.Hooks)
	}
	if r := s.Linux.Resources; r.CPU == nil || r.CPU.Cpus != "0-1" || r.Memory == nil || *r.Memory.Limit != 128<<20 {
		t.Errorf("resources = %+v", r)
	}
	if r := h.d.res("ctr0"); r.CpusetCpus != "2-3" || r.CpuShares != 100 {
		t.Errorf("the other container's update = %v, want its CPUs changed and the rest kept", r)
	}

	h.n.PostCreateContainer(ctx, pod, c)
	c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
	if err := h.n.StartContainer(ctx, pod, c); err != nil {
		t.Fatal(err)
	}
	h.n.PostStartContainer(ctx, pod, c)
	// It exits by itself and is removed at once: its stop comes once,
	// before its removal.
	c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	h.n.ContainerExited(pod, c)
	h.n.StopContainer(ctx, pod, c)
	h.n.RemoveContainer(ctx, pod, c)
	h.n.StopPodSandbox(ctx, pod)
	h.n.StopPodSandbox(ctx, pod)
	h.n.RemovePodSandbox(ctx, pod)
	h.wantEvents("RunPodSandbox:pod1", "CreateContainer:ctr1", "PostCreateContainer:ctr1", "StartContainer:ctr1",
		"PostStartContainer:ctr1", "StopContainer:ctr1", "RemoveContainer:ctr1", "StopPodSandbox:pod1", "RemovePodSandbox:pod1")
	time.Sleep(50 * time.Millisecond) // the exit's relay, had it not been deduplicated
	for _, ev := range []string{"StopContainer:ctr1", "StopPodSandbox:pod1"} {
		if n := h.p.count(ev); n != 1 {
			t.Errorf("%s relayed %d times", ev, n)
		}
	}
}

func TestRemoveStopsFirst(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	pod := podOf("pod1", "web")
	if err := h.n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	c := ctrOf("ctr1", "pod1", "app", runtimeapi.ContainerState_CONTAINER_UNKNOWN)
	if err := h.n.CreateContainer(ctx, pod, c, baseSpec(), nil); err != nil {
		t.Fatal(err)
	}
	h.n.RemoveContainer(ctx, pod, c) // created, never started
	h.n.RemovePodSandbox(ctx, pod)   // never stopped
	h.wantEvents("StopContainer:ctr1", "RemoveContainer:ctr1", "StopPodSandbox:pod1", "RemovePodSandbox:pod1")
	// Removed: nothing more is relayed of them.
	h.n.StopContainer(ctx, pod, c)
	h.n.StopPodSandbox(ctx, pod)
	if h.p.count("StopContainer:ctr1") != 1 || h.p.count("StopPodSandbox:pod1") != 1 {
		t.Errorf("events after removal: %v", h.p.got())
	}
}

func TestRefusals(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	pod := podOf("pod1", "web")
	h.p.setRefuse("RunPodSandbox", true)
	if err := h.n.RunPodSandbox(ctx, pod); err == nil {
		t.Fatal("a refused pod ran")
	}
	h.wantEvents("RunPodSandbox:pod1", "StopPodSandbox:pod1", "RemovePodSandbox:pod1")
	h.p.setRefuse("RunPodSandbox", false)
	if err := h.n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}

	c := ctrOf("ctr1", "pod1", "app", runtimeapi.ContainerState_CONTAINER_UNKNOWN)
	h.p.setRefuse("CreateContainer", true)
	if err := h.n.CreateContainer(ctx, pod, c, baseSpec(), nil); err == nil {
		t.Fatal("a refused container was allowed")
	}
	h.wantEvents("CreateContainer:ctr1", "StopContainer:ctr1", "RemoveContainer:ctr1")
	h.p.setRefuse("CreateContainer", false)

	// CDI devices a plugin adds are injected; one that cannot be fails
	// the creation, and plugins are told.
	var injected []string
	c = ctrOf("ctr2", "pod1", "with-cdi", runtimeapi.ContainerState_CONTAINER_UNKNOWN)
	if err := h.n.CreateContainer(ctx, pod, c, baseSpec(), func(_ *specs.Spec, d []string) error { injected = d; return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(injected, []string{"vendor.example.com/gpu=0"}) {
		t.Errorf("injected %v", injected)
	}
	c.ID = "ctr3"
	if err := h.n.CreateContainer(ctx, pod, c, baseSpec(), func(*specs.Spec, []string) error { return errors.New("no such device") }); err == nil {
		t.Fatal("a container created without the CDI device a plugin added")
	}
	h.wantEvents("CreateContainer:ctr3", "StopContainer:ctr3", "RemoveContainer:ctr3")
	c.ID = "ctr4"
	if err := h.n.CreateContainer(ctx, pod, c, baseSpec(), nil); err == nil {
		t.Fatal("a CDI device injected without a registry")
	}
}

func TestUpdates(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	pod := podOf("pod0", "existing")
	c := ctrOf("ctr0", "pod0", "old", runtimeapi.ContainerState_CONTAINER_RUNNING)
	r, err := h.n.UpdateContainer(ctx, pod, c, &runtimeapi.LinuxContainerResources{CpuShares: 200, MemoryLimitInBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if r.CpuShares != 200 || r.MemoryLimitInBytes != 1<<30 || r.CpusetMems != "0" {
		t.Errorf("resources to apply = %v, want the request plus the plugin's memory node", r)
	}
	h.n.PostUpdateContainer(ctx, pod, c)
	h.wantEvents("UpdateContainer:ctr0", "PostUpdateContainer:ctr0")

	// Updates a plugin asks for by itself.
	u := &api.ContainerUpdate{}
	u.SetContainerId("ctr0")
	u.SetLinuxMemoryLimit(256 << 20)
	missing := &api.ContainerUpdate{}
	missing.SetContainerId("nope")
	missing.SetLinuxCPUShares(2)
	ignored := &api.ContainerUpdate{}
	ignored.SetContainerId("nope2")
	ignored.SetLinuxCPUShares(2)
	ignored.SetIgnoreFailure()
	unsupported := &api.ContainerUpdate{}
	unsupported.SetContainerId("ctr0")
	unsupported.SetLinuxPidLimits(10)
	failed, err := h.stub.UpdateContainers([]*api.ContainerUpdate{u, missing, ignored})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].GetContainerId() != "nope" {
		t.Errorf("failed updates = %v, want the missing container's only", failed)
	}
	if got := h.d.res("ctr0"); got.MemoryLimitInBytes != 256<<20 || got.CpusetCpus != "0-3" {
		t.Errorf("resources after the plugin's update = %v", got)
	}
	failed, err = h.stub.UpdateContainers([]*api.ContainerUpdate{unsupported})
	if err != nil || len(failed) != 1 {
		t.Errorf("a pids limit update (which berth cannot apply live) = %v, %v; want it failed", failed, err)
	}
}

func TestEvictions(t *testing.T) {
	h := start(t)
	// The library passes no plugin's evictions through yet; the runtime
	// side honours them when it does.
	h.n.evict(context.Background(), []*api.ContainerEviction{{ContainerId: "ctr0", Reason: "make room"}})
	if !slices.Equal(h.d.evicted, []string{"ctr0"}) {
		t.Errorf("evicted %v", h.d.evicted)
	}
}

// TestUpdateFromHandler: a plugin asking for updates while it handles an
// event gets them at once (the event's relay holds NRI's lock).
func TestUpdateFromHandler(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	done := make(chan error, 1)
	h.p.mu.Lock()
	h.p.onPostStart = func() error {
		u := &api.ContainerUpdate{}
		u.SetContainerId("ctr0")
		u.SetLinuxMemoryLimit(32 << 20)
		failed, err := h.stub.UpdateContainers([]*api.ContainerUpdate{u})
		if err == nil && len(failed) > 0 {
			err = fmt.Errorf("failed: %v", failed)
		}
		done <- err
		return nil
	}
	h.p.mu.Unlock()
	pod := podOf("pod0", "existing")
	start := time.Now()
	h.n.PostStartContainer(ctx, pod, ctrOf("ctr0", "pod0", "old", runtimeapi.ContainerState_CONTAINER_RUNNING))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the update waited %s: for the relay's lock?", d)
	}
	if r := h.d.res("ctr0"); r.MemoryLimitInBytes != 32<<20 {
		t.Errorf("resources = %v", r)
	}
}
