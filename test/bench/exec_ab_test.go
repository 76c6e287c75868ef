package bench

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

var (
	abOld     = flag.String("ab-old", "", "TestExecAB: directory of another build of berthd and berth-shim to compare ExecSync with")
	abBatches = flag.Int("ab-batches", 20, "TestExecAB: batches taken in turns")
	abBatch   = flag.Int("ab-batch", 25, "TestExecAB: ExecSyncs per batch")
)

// TestExecAB compares the ExecSync latency of two builds (this one and
// -ab-old) on one machine at the same time: one berthd each, one
// container each, batches taken in turns so that drift hits both.
//
//	go test -run TestExecAB ./test/bench/ -args -ab-old /tmp/old-bin
func TestExecAB(t *testing.T) {
	if *abOld == "" {
		t.Skip("no -ab-old build to compare with")
	}
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	type side struct {
		name string
		rt   runtimeapi.RuntimeServiceClient
		ctr  string
		lat  []time.Duration
	}
	ctx := context.Background()
	var sides []*side
	for _, b := range []struct{ name, bin string }{{"this build", ""}, {"-ab-old", *abOld}} {
		d := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc", Bin: b.bin,
			Extra: fmt.Sprintf("[runtimes.runc]\npath = %q\n", *runtimePath), Args: []string{"--log-level", "info"}})
		rt, img := dial(t, d.Socket)
		_, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36"}})
		must(t, "pull", err)
		cfg := podConfig("ab", t.TempDir())
		p, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		must(t, "run pod", err)
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.PodSandboxId, Config: ctrConfig("ab", sigtermCmd...), SandboxConfig: cfg})
		must(t, "create", err)
		_, err = rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId})
		must(t, "start", err)
		t.Cleanup(func() {
			_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.PodSandboxId})
			_, _ = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.PodSandboxId})
		})
		sides = append(sides, &side{name: b.name, rt: rt, ctr: c.ContainerId})
	}
	for range *abBatches {
		for _, s := range sides {
			for range *abBatch {
				d, err := timed(func() error {
					r, err := s.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: s.ctr, Cmd: []string{"true"}, Timeout: 10})
					if err == nil && r.ExitCode != 0 {
						err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
					}
					return err
				})
				must(t, s.name+" ExecSync", err)
				s.lat = append(s.lat, d)
			}
		}
	}
	for _, s := range sides {
		t.Logf("%s: ExecSync p50 %s, p90 %s, p99 %s (%d)", s.name, ms(percentile(s.lat, 0.5)), ms(percentile(s.lat, 0.9)), ms(percentile(s.lat, 0.99)), len(s.lat))
	}
}
