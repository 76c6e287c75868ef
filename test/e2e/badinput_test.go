package e2e

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestBadInputGetsClearErrors sends every CRI call nil, empty, huge and
// malformed fields. Each must answer OK or a specific gRPC error; Unknown
// or Internal (what a panic becomes) fail the test, and berthd must still
// serve afterwards.
func TestBadInputGetsClearErrors(t *testing.T) {
	b := startBerthd(t, "runc")
	conn, err := grpc.NewClient("unix://"+b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt, img := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	ctx := context.Background()
	huge := strings.Repeat("x", 1<<20)
	weird := []string{"", "../../etc/passwd", "\x00nul", huge[:4096], "*", "sha256:", "a/b@sha256:zz"}

	check := func(what string, err error, allowed ...codes.Code) {
		t.Helper()
		c := status.Code(err)
		if c == codes.Unknown || c == codes.Internal {
			t.Errorf("%s: %v", what, err)
			return
		}
		if c == codes.OK || len(allowed) == 0 {
			return
		}
		for _, a := range allowed {
			if c == a {
				return
			}
		}
		t.Errorf("%s: code %s (%v), want one of %v", what, c, err, allowed)
	}
	bad := []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition}

	for _, id := range weird {
		_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		check("StopPodSandbox "+short(id), err, bad...)
		_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		check("RemovePodSandbox "+short(id), err, bad...)
		_, err = rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		check("PodSandboxStatus "+short(id), err, bad...)
		_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: &runtimeapi.ContainerConfig{}})
		check("CreateContainer "+short(id), err, bad...)
		_, err = rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
		check("StartContainer "+short(id), err, bad...)
		_, err = rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: -5})
		check("StopContainer "+short(id), err, bad...)
		_, err = rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		check("RemoveContainer "+short(id), err, bad...)
		_, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		check("ContainerStatus "+short(id), err, bad...)
		_, err = rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: -1})
		check("ExecSync "+short(id), err, bad...)
		_, err = rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Tty: true, Stderr: true})
		check("Exec "+short(id), err, bad...)
		_, err = rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id})
		check("Attach "+short(id), err, bad...)
		_, err = rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{-1, 70000}})
		check("PortForward "+short(id), err, bad...)
		_, err = rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		check("ContainerStats "+short(id), err, bad...)
		_, err = rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
		check("PodSandboxStats "+short(id), err, bad...)
		_, err = rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id})
		check("UpdateContainerResources "+short(id), err, bad...)
		_, err = rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
		check("ReopenContainerLog "+short(id), err, bad...)
		_, err = img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: id}})
		check("PullImage "+short(id), err, append(bad, codes.Unknown)...)
		_, err = img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}, Verbose: true})
		check("ImageStatus "+short(id), err, bad...)
		_, err = img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: id}})
		check("RemoveImage "+short(id), err, bad...)
	}

	// Nil sub-messages everywhere.
	_, err = rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{})
	check("RunPodSandbox nil config", err, codes.InvalidArgument)
	_, err = rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{}})
	check("RunPodSandbox nil metadata", err, codes.InvalidArgument)
	_, err = rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "x"}}, RuntimeHandler: "no-such-handler"})
	if c := status.Code(err); c != codes.InvalidArgument || !strings.Contains(err.Error(), "runc") {
		t.Errorf("unknown handler: %v, want InvalidArgument naming the configured ones", err)
	}
	_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{})
	check("CreateContainer nil", err, codes.InvalidArgument)
	_, err = img.PullImage(ctx, &runtimeapi.PullImageRequest{})
	check("PullImage nil", err, codes.InvalidArgument)
	_, err = img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{})
	check("ImageStatus nil", err, codes.InvalidArgument)
	_, err = img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{}})
	check("ListImages empty filter", err)
	_, err = rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{huge: huge}}})
	check("ListContainers huge selector", err)
	_, err = rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: 99}}})
	check("ListPodSandbox bad state", err)
	_, err = rt.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{})
	check("UpdateRuntimeConfig nil", err)

	// A real pod, then malformed containers in it.
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	podCfg := podConfig(t, dir, "victim", 0)
	pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
	for name, cfg := range map[string]*runtimeapi.ContainerConfig{
		"no metadata":      {Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}},
		"no image":         {Metadata: &runtimeapi.ContainerMetadata{Name: "a"}},
		"missing image":    {Metadata: &runtimeapi.ContainerMetadata{Name: "b"}, Image: &runtimeapi.ImageSpec{Image: "nope:1"}},
		"relative mount":   {Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Mounts: []*runtimeapi.Mount{{ContainerPath: "rel", HostPath: "/tmp"}}},
		"unknown user":     {Metadata: &runtimeapi.ContainerMetadata{Name: "d"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody-at-all"}}},
		"missing device":   {Metadata: &runtimeapi.ContainerMetadata{Name: "e"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Devices: []*runtimeapi.Device{{HostPath: "/dev/nonexistent", ContainerPath: "/dev/x"}}},
		"bad seccomp":      {Metadata: &runtimeapi.ContainerMetadata{Name: "f"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "weird/profile"}}},
		"huge labels":      {Metadata: &runtimeapi.ContainerMetadata{Name: "g"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Labels: map[string]string{"k": huge[:1<<16]}, Command: []string{"true"}},
		"duplicate name 1": {Metadata: &runtimeapi.ContainerMetadata{Name: "dup"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Command: []string{"true"}},
	} {
		_, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg})
		check("CreateContainer "+name, err, codes.InvalidArgument, codes.NotFound)
	}
	_, err = rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "dup"}, Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}, Command: []string{"true"}}})
	check("CreateContainer duplicate name", err, codes.AlreadyExists)

	// berthd still serves, and removing the pod leaves nothing.
	before := b.CountLeaks(t)
	b.Crictl(t, "rmp", "-f", pod)
	after := b.CountLeaks(t)
	if after.Shims > before.Shims || after.NetNS >= before.NetNS && before.NetNS > 0 {
		t.Errorf("pod not freed: before %+v after %+v", before, after)
	}
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}
