package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestKill9KeepsPods(t *testing.T) {
	for _, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			podCfg := podConfig(t, dir, "survivor", 0)
			pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
			long := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "long", "trap 'exit 0' TERM; while true; do sleep 0.1; done"), podCfg))
			// Exits while berthd is down.
			short := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "short", "sleep 1; exit 5"), podCfg))
			created := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, "created", "true"), podCfg))
			b.Crictl(t, "start", long)
			b.Crictl(t, "start", short)
			pidBefore := waitState(t, b, long, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid
			podsBefore := b.Crictl(t, "pods", "-q")

			b.Kill(t)
			time.Sleep(1500 * time.Millisecond)
			b.Restart(t)

			if got := b.Crictl(t, "pods", "-q"); got != podsBefore {
				t.Errorf("pods after restart = %q, want %q", got, podsBefore)
			}
			in := inspectCtr(t, b, long)
			if in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || in.Info.Pid != pidBefore {
				t.Errorf("long-running container after restart: %+v (pid was %d)", in, pidBefore)
			}
			if out := b.Crictl(t, "exec", "-s", long, "echo", "still-here"); strings.TrimSpace(out) != "still-here" {
				t.Errorf("exec after restart: %q", out)
			}
			in = waitState(t, b, short, runtimeapi.ContainerState_CONTAINER_EXITED)
			if in.Status.ExitCode != 5 || in.Status.GetFinishedAt() == 0 || in.Status.Reason != "Error" {
				t.Errorf("container that exited while berthd was down: %+v", in.Status)
			}
			if in := inspectCtr(t, b, created); in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
				t.Errorf("created container after restart: %s", in.Status.State)
			}
			// Events still flow: a stop is seen at once.
			start := time.Now()
			b.Crictl(t, "stop", "--timeout", "5", long)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("stop after restart took %v", d)
			}
			b.Crictl(t, "rmp", "-f", pod)
		})
	}
}

func TestSigtermFinishesCallsAndKeepsPods(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	pod, ctr := podWithContainer(t, b, dir, "steady", "while true; do sleep 0.1; done")
	pid := waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid

	// A call in flight when SIGTERM arrives completes.
	client := b.Client(t)
	result := make(chan error, 1)
	go func() {
		resp, err := client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sh", "-c", "sleep 2; echo finished"}})
		if err == nil && string(resp.Stdout) != "finished\n" {
			err = fmt.Errorf("exec output %q", resp.Stdout)
		}
		result <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if err := b.Stop(t); err != nil {
		t.Errorf("berthd exit after SIGTERM: %v", err)
	}
	if err := <-result; err != nil {
		t.Errorf("in-flight ExecSync: %v", err)
	}
	// The container kept running without berthd.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("container process %d gone after berthd stopped: %v", pid, err)
	}
	b.Restart(t)
	if in := inspectCtr(t, b, ctr); in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || in.Info.Pid != pid {
		t.Errorf("after SIGTERM and restart: %+v", in)
	}
	b.Crictl(t, "rmp", "-f", pod)
}
