package pod

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestStatsAndMetricsOnFakes: stats and metrics of pods whose cgroups do
// not exist still answer, for every pod and container listed.
func TestStatsAndMetricsOnFakes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, _ = e.m.ContainerStats(ctx, id)
	_ = e.m.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: podID})
	_, _ = e.m.PodSandboxStats(ctx, podID)
	_ = e.m.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{})
	if d := e.m.ListMetricDescriptors(ctx); len(d) == 0 {
		t.Error("no metric descriptors")
	}
	_ = e.m.ListPodSandboxMetrics(ctx)
	if _, err := e.m.ContainerStats(ctx, "missing"); err == nil {
		t.Error("stats of a missing container")
	}
}

// nopStream is a stream that holds nothing.
type nopStream struct{}

func (nopStream) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopStream) Write(b []byte) (int, error) { return len(b), nil }
func (nopStream) Close() error                { return nil }

// TestStreamsRefused: exec, attach and port-forward report what stops
// them, and ask the shim for a session only for a running container.
func TestStreamsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.ExecStream(ctx, id, []string{"sh"}, nil, nopStream{}, nopStream{}, false, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec in a created container: %v", err)
	}
	if err := e.m.ExecStream(ctx, id, nil, nil, nopStream{}, nopStream{}, false, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("exec without command: %v", err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	resize := make(chan remotecommand.TerminalSize, 1)
	resize <- remotecommand.TerminalSize{Width: 80, Height: 24}
	if err := e.m.ExecStream(ctx, id, []string{"sh"}, nopStream{}, nopStream{}, nopStream{}, true, resize); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("exec: %v", err)
	}
	if err := e.m.AttachStream(ctx, id, nil, nopStream{}, nopStream{}, false, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("attach: %v", err)
	}
	if s := e.shimOf(podID); s.called("Exec") != 1 || s.called("Attach") != 1 {
		t.Errorf("shim sessions asked: exec %d, attach %d", s.called("Exec"), s.called("Attach"))
	}
	if err := e.m.PortForward(ctx, podID, 0, nopStream{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("port-forward to port 0: %v", err)
	}
	if err := e.m.PortForward(ctx, "missing", 80, nopStream{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("port-forward to a missing pod: %v", err)
	}
}

// ImageFsInfo's container filesystem: what the writable layers hold.
func TestContainerUsage(t *testing.T) {
	e := newEnv(t)
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	upper := filepath.Join(e.m.ctrRootDir(), id, "upper")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "data"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := e.m.ContainerUsage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Mountpoint != e.m.ctrRootDir() || u.Bytes < 64<<10 || u.Inodes < 2 {
		t.Errorf("container usage %+v: want the 64 KiB file and its directory under %s", u, e.m.ctrRootDir())
	}
}
