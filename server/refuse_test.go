package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
)

// TestRefusedRequests: a request setting a field berth would drop is
// refused with InvalidArgument naming the field, before anything is done.
// RuntimeService has no pod manager here: a request that got past the
// checks would panic.
func TestRefusedRequests(t *testing.T) {
	s := &RuntimeService{}
	ctx := context.Background()
	pid := func(mode runtimeapi.NamespaceMode, target string) *runtimeapi.LinuxPodSandboxConfig {
		return &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: mode, TargetId: target}}}
	}
	ctrNS := func(ns *runtimeapi.NamespaceOption) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}}}
	}
	imageVolume := func(m *runtimeapi.Mount) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{m}}
	}
	img := &runtimeapi.ImageSpec{Image: "sha256:abc"}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"windows pod", "PodSandboxConfig.windows", func() error {
			_, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
				Windows: &runtimeapi.WindowsPodSandboxConfig{SecurityContext: &runtimeapi.WindowsSandboxSecurityContext{HostProcess: true}}}})
			return err
		}},
		{"pod pid TARGET", "namespace_options", func() error {
			_, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Linux: pid(runtimeapi.NamespaceMode_TARGET, "")}})
			return err
		}},
		{"pod target_id", "target_id", func() error {
			_, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Linux: pid(runtimeapi.NamespaceMode_CONTAINER, "x")}})
			return err
		}},
		{"windows container", "ContainerConfig.windows", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{
				Windows: &runtimeapi.WindowsContainerConfig{Resources: &runtimeapi.WindowsContainerResources{CpuCount: 1}}}})
			return err
		}},
		{"network TARGET", "namespace_options", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: ctrNS(&runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_TARGET})})
			return err
		}},
		{"pid TARGET without a target", "NamespaceOption.target_id", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: ctrNS(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET})})
			return err
		}},
		{"target_id without pid TARGET", "NamespaceOption.target_id", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: ctrNS(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, TargetId: "x"})})
			return err
		}},
		{"image volume with a host path", "Mount.host_path", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: imageVolume(&runtimeapi.Mount{ContainerPath: "/v", Image: img, HostPath: "/etc", Readonly: true})})
			return err
		}},
		{"image volume with mount options", "Mount.mount_options", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: imageVolume(&runtimeapi.Mount{ContainerPath: "/v", Image: img, Readonly: true, MountOptions: []string{"noexec"}})})
			return err
		}},
		{"sub path of a host path", "Mount.image_sub_path", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: imageVolume(&runtimeapi.Mount{ContainerPath: "/v", HostPath: "/srv", ImageSubPath: "x"})})
			return err
		}},
		{"windows resources update", "UpdateContainerResourcesRequest.windows", func() error {
			_, err := s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c",
				Windows: &runtimeapi.WindowsContainerResources{MemoryLimitInBytes: 1}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), tc.field) {
				t.Errorf("err = %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

// TestAcceptedRequests: what the kubelet and crictl send passes the
// checks, empty messages included (they ask for nothing).
func TestAcceptedRequests(t *testing.T) {
	for _, cfg := range []*runtimeapi.PodSandboxConfig{
		nil,
		{Windows: &runtimeapi.WindowsPodSandboxConfig{}},
		{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_NODE}}}},
	} {
		if err := checkPodConfig(cfg); err != nil {
			t.Errorf("pod %v: %v", cfg, err)
		}
	}
	for _, cfg := range []*runtimeapi.ContainerConfig{
		nil,
		{Windows: &runtimeapi.WindowsContainerConfig{}},
		{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "abc"}}}},
		{Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: "/srv", MountOptions: []string{"noexec"}},
			{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}, ImageSubPath: "sub", Readonly: true},
		}},
	} {
		if err := checkContainerConfig(cfg); err != nil {
			t.Errorf("container %v: %v", cfg, err)
		}
	}
}

type fakeHandlers []string

func (f fakeHandlers) Handlers(ctx context.Context) []*runtimeapi.RuntimeHandler {
	var out []*runtimeapi.RuntimeHandler
	for _, n := range f {
		out = append(out, &runtimeapi.RuntimeHandler{Name: n})
	}
	return out
}

// TestPullForRuntimeHandler: a pull naming a runtime handler is for the
// one image store every handler shares; an unknown handler is refused, as
// the CRI asks.
func TestPullForRuntimeHandler(t *testing.T) {
	app := &image.Image{ID: "sha256:app", Chain: []string{"sha256:c"}}
	f := &fakeImages{imgs: map[string]*image.Image{"app:1": app}}
	s := &ImageService{Images: f, Handlers: fakeHandlers{"", "runc", "runsc"}, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	pull := func(handler string) error {
		_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "app:1", RuntimeHandler: handler}})
		return err
	}
	for _, h := range []string{"", "runsc"} {
		if err := pull(h); err != nil {
			t.Errorf("pull for handler %q: %v", h, err)
		}
	}
	if err := pull("kata"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), "ImageSpec.runtime_handler") {
		t.Errorf("pull for an unknown handler: %v", err)
	}
	s.Handlers = nil
	if err := pull("runc"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("pull for a handler with no handler list: %v", err)
	}
	if len(f.pulled) != 2 {
		t.Errorf("pulled %v, want the two accepted pulls only", f.pulled)
	}
}
