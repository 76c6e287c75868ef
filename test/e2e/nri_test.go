package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// nriPlugin is a tiny NRI plugin, built on the library's stub as real
// plugins are: it injects an environment variable and an annotation into
// every container, refuses containers named "refused", and records what
// it is told as "Event:name".
type nriPlugin struct {
	mu     sync.Mutex
	events []string
	synced []string
	ready  chan struct{}
	once   sync.Once
}

func (p *nriPlugin) record(event, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event+":"+name)
}

func (p *nriPlugin) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *nriPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, pod := range pods {
		p.synced = append(p.synced, pod.GetId())
	}
	for _, c := range ctrs {
		p.synced = append(p.synced, c.GetId())
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.ready) })
	return nil, nil
}

func (p *nriPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.GetName())
	return nil
}

func (p *nriPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.GetName())
	return nil
}

func (p *nriPlugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod.GetName())
	return nil
}

func (p *nriPlugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.GetName())
	if c.GetName() == "refused" {
		return nil, nil, errors.New("the e2e plugin refuses this container")
	}
	a := &api.ContainerAdjustment{}
	a.AddEnv("BERTH_NRI", pod.GetName()+"/"+c.GetName())
	a.AddAnnotation("nri.berth.test/injected", "yes")
	return a, nil, nil
}

func (p *nriPlugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", c.GetName())
	return nil
}

func (p *nriPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", c.GetName())
	return nil, nil
}

func (p *nriPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", c.GetName())
	return nil
}

// connectPlugin connects a plugin to b's NRI socket and waits for its
// synchronisation.
func connectPlugin(t *testing.T, b *harness.Berthd, name, idx string) (*nriPlugin, stub.Stub) {
	t.Helper()
	p := &nriPlugin{ready: make(chan struct{})}
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(b.NRISocket))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("plugin %s: %v\n%s", name, err, b.Log())
	}
	t.Cleanup(s.Stop)
	select {
	case <-p.ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("plugin %s was not synchronised", name)
	}
	return p, s
}

// waitEvents waits for the plugin to have been told want, in that order.
func waitEvents(t *testing.T, p *nriPlugin, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := p.seen()
		i := 0
		for _, e := range got {
			if i < len(want) && e == want[i] {
				i++
			}
		}
		if i == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin was told %v, want %v in this order", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bundleSpec is the OCI spec berthd gave container id.
func bundleSpec(t *testing.T, b *harness.Berthd, id string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(inspectCtr(t, b, id).Info.Bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// memoryLimit is the memory limit of cgroup dir (a cgroupfs path), on
// either cgroup version.
func memoryLimit(dir string) string {
	file := filepath.Join("/sys/fs/cgroup/memory", dir, "memory.limit_in_bytes")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		file = filepath.Join("/sys/fs/cgroup", dir, "memory.max")
	}
	raw, _ := os.ReadFile(file)
	return strings.TrimSpace(string(raw))
}

// TestNRI: a plugin connected to berthd's NRI socket sees every pod and
// container event; what it injects reaches the container; it can update
// a running container's resources and refuse a container, which leaves
// nothing; a plugin connecting later is synchronised with what runs.
func TestNRI(t *testing.T) {
	for _, handler := range []string{"runc", "crun"} {
		t.Run(handler, func(t *testing.T) {
			harness.RequireRoot(t)
			dir := t.TempDir()
			reg := fixtures.Registry(t)
			b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler, NRI: true})
			b.Crictl(t, "pull", "busybox:1.36")
			p, plugin := connectPlugin(t, b, "e2e", "10")

			before := b.CountLeaks(t)
			pod := strings.TrimSpace(b.Crictl(t, "runp", podConfig(t, dir, "nri", 0)))
			defer waitNoLeaks(t, b, before)
			rt := b.Client(t)
			create := func(name string, cmd ...string) (string, error) {
				resp, err := rt.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
					PodSandboxId: pod, Config: ctrSpec(name, cmd...), SandboxConfig: podSpec(dir, "nri"),
				})
				return resp.GetContainerId(), err
			}

			app, err := create("app", "sleep", "600")
			if err != nil {
				t.Fatalf("CreateContainer: %v\n%s", err, b.Log())
			}
			b.Crictl(t, "start", app)

			t.Run("adjusts containers", func(t *testing.T) {
				if out, err := b.TryCrictl(t, "exec", "-s", app, "sh", "-c", `echo "$BERTH_NRI"`); strings.TrimSpace(out) != "nri/app" {
					t.Errorf("BERTH_NRI in the container = %q (%v), want nri/app", out, err)
				}
				if a := bundleSpec(t, b, app).Annotations["nri.berth.test/injected"]; a != "yes" {
					t.Errorf("the plugin's annotation in the spec = %q", a)
				}
				waitEvents(t, p, "RunPodSandbox:nri", "CreateContainer:app", "StartContainer:app")
			})

			t.Run("late plugin synchronised", func(t *testing.T) {
				late, _ := connectPlugin(t, b, "late", "20")
				late.mu.Lock()
				synced := slices.Clone(late.synced)
				late.mu.Unlock()
				if !slices.Contains(synced, pod) || !slices.Contains(synced, app) {
					t.Errorf("a plugin connecting later was synchronised with %v, want pod %s and container %s", synced, pod, app)
				}
			})

			t.Run("plugin updates a container", func(t *testing.T) {
				u := &api.ContainerUpdate{}
				u.SetContainerId(app)
				u.SetLinuxMemoryLimit(64 << 20)
				failed, err := plugin.UpdateContainers([]*api.ContainerUpdate{u})
				if err != nil || len(failed) != 0 {
					t.Fatalf("UpdateContainers: failed %v, %v\n%s", failed, err, b.Log())
				}
				if st := b.ContainerStatus(t, app, nil); st.GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
					t.Errorf("status after the plugin's update: %v", st.GetResources())
				}
				if cg := bundleSpec(t, b, app).Linux.CgroupsPath; !strings.Contains(cg, ":") {
					if mem := memoryLimit(cg); mem != "67108864" {
						t.Errorf("memory limit in the cgroup %s = %q", cg, mem)
					}
				}
			})

			t.Run("exit relayed", func(t *testing.T) {
				id, err := create("exiter", "sh", "-c", "exit 3")
				if err != nil {
					t.Fatal(err)
				}
				b.Crictl(t, "start", id)
				waitState(t, b, id, runtimeapi.ContainerState_CONTAINER_EXITED)
				// Told of the exit by itself, before any removal.
				waitEvents(t, p, "StartContainer:exiter", "StopContainer:exiter")
				b.Crictl(t, "rm", id)
				waitEvents(t, p, "StopContainer:exiter", "RemoveContainer:exiter")
			})

			t.Run("refusal leaves nothing", func(t *testing.T) {
				leaks, dirs := b.CountLeaks(t), ctrDirs(t, b)
				_, err := create("refused", "sleep", "600")
				if err == nil || !strings.Contains(err.Error(), "refuses this container") {
					t.Fatalf("CreateContainer refused by the plugin: %v", err)
				}
				if after := b.CountLeaks(t); after != leaks {
					t.Errorf("the refused container left: before %+v, after %+v", leaks, after)
				}
				if d := ctrDirs(t, b); d != dirs {
					t.Errorf("%d container directories after the refusal, %d before", d, dirs)
				}
			})

			b.Crictl(t, "stopp", pod)
			b.Crictl(t, "rmp", pod)
			waitEvents(t, p, "StopContainer:app", "StopPodSandbox:nri", "RemoveContainer:app", "RemovePodSandbox:nri")
		})
	}
}
