package pod

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.m.RuntimeReady(ctx); err != nil {
		t.Errorf("RuntimeReady: %v", err)
	}
	if err := e.m.NetworkReady(ctx); err != nil {
		t.Errorf("NetworkReady: %v", err)
	}
	if hs := e.m.Handlers(ctx); len(hs) != 3 || hs[0].Name != "" {
		t.Errorf("Handlers = %v", hs)
	}
	if info := e.m.Info(ctx); info["defaultHandler"] != "runc" {
		t.Errorf("Info = %v", info)
	}

	podID := e.runPod("web")
	st, info, err := e.m.PodSandboxStatus(ctx, podID[:8], true)
	if err != nil || st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.GetIp() != "10.0.0.2" || len(st.Network.AdditionalIps) != 1 || info["info"] == "" {
		t.Fatalf("PodSandboxStatus = %v, %v, %v", st, info, err)
	}
	if l := e.m.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}); len(l) != 1 {
		t.Errorf("ListPodSandbox by label = %v", l)
	}
	if l := e.m.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}); len(l) != 0 {
		t.Errorf("ListPodSandbox of not-ready pods = %v", l)
	}
	if _, err := e.m.RunPodSandbox(ctx, podConfig("web"), ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second pod of one name: %v", err)
	}

	id := e.createCtr(podID, "app")
	cst, _, err := e.m.ContainerStatus(ctx, id, false)
	if err != nil || cst.State != runtimeapi.ContainerState_CONTAINER_CREATED || cst.User.Linux.Uid != 1000 || cst.Resources.GetLinux().GetCpuShares() != 512 {
		t.Fatalf("ContainerStatus = %v, %v", cst, err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if err := e.m.StartContainer(ctx, id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second start: %v", err)
	}
	if l := e.m.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}); len(l) != 1 {
		t.Errorf("ListContainers running = %v", l)
	}
	if l := e.m.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: "nope"}); len(l) != 0 {
		t.Errorf("ListContainers of a missing id = %v", l)
	}
	_, info, err = e.m.ContainerStatus(ctx, id, true)
	if err != nil || !strings.Contains(info["info"], "runtimeSpec") {
		t.Errorf("verbose ContainerStatus = %v, %v", info, err)
	}

	out, stderr, code, err := e.m.ExecSync(ctx, id, []string{"echo", "hi"}, 5)
	if err != nil || code != 3 || !strings.Contains(string(out), `"echo"`) || string(stderr) != "err" {
		t.Errorf("ExecSync = %q %q %d %v", out, stderr, code, err)
	}
	if _, _, _, err := e.m.ExecSync(ctx, id, []string{"sleep"}, 1); !errors.Is(err, errdefs.ErrDeadlineExceeded) {
		t.Errorf("ExecSync that timed out: %v", err)
	}
	if err := e.m.CheckStreamable(id); err != nil {
		t.Errorf("CheckStreamable: %v", err)
	}
	if err := e.m.CheckPortForward(podID); err != nil {
		t.Errorf("CheckPortForward: %v", err)
	}
	if err := e.m.UpdateContainerResources(ctx, id, &runtimeapi.LinuxContainerResources{CpuShares: 1024}); err != nil {
		t.Errorf("UpdateContainerResources: %v", err)
	}
	if cst, _, _ := e.m.ContainerStatus(ctx, id, false); cst.Resources.GetLinux().GetCpuShares() != 1024 {
		t.Errorf("resources after update = %v", cst.Resources)
	}
	if err := e.m.ReopenContainerLog(ctx, id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ReopenContainerLog without a log: %v", err)
	}
	pods, ctrs, shims := e.m.Inventory()
	if pods["runc"] != 1 || ctrs["runc"][stateRunning] != 1 || shims != 1 {
		t.Errorf("Inventory = %v %v %d", pods, ctrs, shims)
	}

	if err := e.m.StopContainer(ctx, id, 10); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	cst, _, _ = e.m.ContainerStatus(ctx, id, false)
	if cst.State != runtimeapi.ContainerState_CONTAINER_EXITED || cst.ExitCode != 130 || cst.Reason != "Error" {
		t.Errorf("after stop (SIGINT, the image's): %v", cst)
	}
	if err := e.m.StopPodSandbox(ctx, podID); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if st, _, _ := e.m.PodSandboxStatus(ctx, podID, false); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.Network != nil {
		t.Errorf("stopped pod = %v", st)
	}
	if e.cni.count() != 0 {
		t.Error("stopped pod still attached")
	}
	if err := e.m.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	e.wantClean("RemovePodSandbox")
	if e.shims.live() != 0 {
		t.Error("shim still runs")
	}
}

// TestRequestValidation: malformed requests are refused, as InvalidArgument,
// before anything is made.
func TestRequestValidation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	for name, call := range map[string]func() error{
		"RunPodSandbox without config": func() error { _, err := e.m.RunPodSandbox(ctx, nil, ""); return err },
		"RunPodSandbox without name": func() error {
			_, err := e.m.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{}}, "")
			return err
		},
		"CreateContainer without pod":    func() error { _, err := e.m.CreateContainer(ctx, "", ctrConfig("c")); return err },
		"CreateContainer without config": func() error { _, err := e.m.CreateContainer(ctx, podID, nil); return err },
		"CreateContainer without name": func() error {
			_, err := e.m.CreateContainer(ctx, podID, &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "app"}})
			return err
		},
		"CreateContainer without image": func() error {
			_, err := e.m.CreateContainer(ctx, podID, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}})
			return err
		},
		"StopContainer negative timeout": func() error { return e.m.StopContainer(ctx, "x", -1) },
		"RemoveContainer without ID":     func() error { return e.m.RemoveContainer(ctx, "") },
		"RemovePodSandbox without ID":    func() error { return e.m.RemovePodSandbox(ctx, "") },
		"ExecSync negative timeout":      func() error { _, _, _, err := e.m.ExecSync(ctx, "x", []string{"a"}, -1); return err },
		"ExecSync without command":       func() error { _, _, _, err := e.m.ExecSync(ctx, "x", nil, 0); return err },
		"UpdateContainerResources without resources": func() error {
			return e.m.UpdateContainerResources(ctx, "x", nil)
		},
		"ContainerStatus without ID": func() error { _, _, err := e.m.ContainerStatus(ctx, "", false); return err },
	} {
		if err := call(); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if e.shims.spawned != 1 {
		t.Errorf("%d shims spawned, want only the one of the valid pod", e.shims.spawned)
	}
}

// TestAttackPodLSMRequestsAreNotDropped: a pod asking for a malformed
// SELinux label or an AppArmor profile berth cannot apply is refused before
// anything runs (a pod without a sandbox container has no spec of its own
// where the request would be noticed).
func TestAttackPodLSMRequestsAreNotDropped(t *testing.T) {
	e := newEnv(t)
	for field, sc := range map[string]*runtimeapi.LinuxSandboxSecurityContext{
		"LinuxSandboxSecurityContext.selinux_options": {SelinuxOptions: &runtimeapi.SELinuxOption{Type: "spc_t:s0"}},
		"LinuxSandboxSecurityContext.apparmor":        {Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}},
	} {
		_, err := e.m.RunPodSandbox(context.Background(), &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: sc},
		}, "")
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), field) || e.shims.spawned != 0 {
			t.Errorf("%s: err = %v, %d shims spawned; want InvalidArgument naming the field, nothing run", field, err, e.shims.spawned)
		}
	}
	e.wantClean("refused pods")
}

// TestRunPodSandboxFailsAtEachStep: whichever step fails, nothing of the
// pod is left: no record, name, lease, mount, attachment, directory or
// shim.
func TestRunPodSandboxFailsAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler string
		pidPod  bool // a shared PID namespace needs a sandbox container
		fail    func(e *env)
	}{
		{name: "unknown handler", handler: "nope"},
		{name: "pause image missing, pull fails", handler: "runsc", fail: func(e *env) { e.images.set("pauseMissing", errInjected); e.images.set("Pull", errInjected) }},
		{name: "pause image config", handler: "runsc", fail: func(e *env) { e.images.set("Config", errInjected) }},
		{name: "shm mount", fail: func(e *env) { e.mounts.set("tmpfs", errInjected) }},
		{name: "network namespace", fail: func(e *env) { e.ns.set("NewNetNS", errInjected) }},
		{name: "IPC namespace", fail: func(e *env) { e.ns.set("Pinipc", errInjected) }},
		{name: "UTS namespace", fail: func(e *env) { e.ns.set("Pinuts", errInjected) }},
		{name: "shim spawn", fail: func(e *env) { e.shims.set("Spawn", errInjected) }},
		{name: "CNI setup", fail: func(e *env) { e.cni.set("Setup", errInjected) }},
		{name: "CNI setup, sandbox container", handler: "runsc", fail: func(e *env) { e.cni.set("Setup", errInjected) }},
		{name: "pause layers lease", pidPod: true, fail: func(e *env) { e.images.set("Lease", errInjected) }},
		{name: "pause rootfs mount", handler: "runsc", fail: func(e *env) { e.mounts.set("overlay", errInjected) }},
		{name: "sandbox container create", handler: "runsc", fail: func(e *env) { e.shims.failAll("Create") }},
		{name: "sandbox container start", pidPod: true, fail: func(e *env) { e.shims.failAll("Start") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.fail != nil {
				tc.fail(e)
			}
			cfg := podConfig("p")
			if tc.pidPod {
				cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
			}
			if _, err := e.m.RunPodSandbox(context.Background(), cfg, tc.handler); err == nil {
				t.Fatal("RunPodSandbox succeeded")
			}
			e.wantClean("a failed RunPodSandbox")
			if n := e.shims.live(); n != 0 {
				t.Errorf("%d shims left running", n)
			}
		})
	}
}

// failAll makes op fail on every shim spawned from now on.
func (f *fakeShims) failAll(op string) { f.set("all"+op, errInjected) }

// TestCreateContainerFailsAtEachStep: whichever step fails, nothing of the
// container is left, and the pod is unharmed.
func TestCreateContainerFailsAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*runtimeapi.ContainerConfig)
		fail func(e *env, podID string)
		want error
	}{
		{name: "image missing", cfg: func(c *runtimeapi.ContainerConfig) { c.Image.Image = "missing" }, want: errdefs.ErrNotFound},
		{name: "image config", fail: func(e *env, _ string) { e.images.set("Config", errInjected) }},
		{name: "layers lease", fail: func(e *env, _ string) { e.images.set("Lease", errInjected) }},
		{name: "rootfs mount", fail: func(e *env, _ string) { e.mounts.set("overlay", errInjected) }},
		{name: "writable image volume", cfg: withVolume(false, ""), want: errdefs.ErrInvalidArgument},
		{name: "image volume subpath missing", cfg: withVolume(true, "missing"), want: errdefs.ErrInvalidArgument},
		{name: "image volume bind", cfg: withVolume(true, ""), fail: func(e *env, _ string) { e.mounts.set("bind", errInjected) }},
		{name: "image volume read-only", cfg: withVolume(true, ""), fail: func(e *env, _ string) { e.mounts.set("remount", errInjected) }},
		{name: "PID namespace target missing", cfg: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "nope"}}
		}, want: errdefs.ErrNotFound},
		{name: "shim create", fail: func(e *env, podID string) { e.shimOf(podID).set("Create", errInjected) }},
		// Gone before the manager noticed: the call itself finds out.
		{name: "shim gone", fail: func(e *env, podID string) { e.shimOf(podID).unreachable() }, want: errdefs.ErrUnavailable},
		{name: "pod not ready", fail: func(e *env, podID string) { _ = e.m.StopPodSandbox(context.Background(), podID) }, want: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			podID := e.runPod("p")
			mounts := e.mounts.count() // the pod's /dev/shm
			if tc.fail != nil {
				tc.fail(e, podID)
			}
			cfg := ctrConfig("c")
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			_, err := e.m.CreateContainer(context.Background(), podID, cfg)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CreateContainer: %v, want %v", err, tc.want)
			}
			if n := e.records(bucketContainers); n != 0 {
				t.Errorf("%d container records left", n)
			}
			e.m.mu.Lock()
			names, ctrs := len(e.m.names), len(e.m.containers)
			e.m.mu.Unlock()
			if names != 1 || ctrs != 0 {
				t.Errorf("%d names, %d containers left; want the pod's name only", names, ctrs)
			}
			if n := e.images.count(); n != 0 {
				t.Errorf("leases left: %v", e.images.leases)
			}
			if n := e.mounts.count(); n > mounts {
				t.Errorf("mounts left: %v", e.mounts.mounts)
			}
			if err := e.m.RemovePodSandbox(context.Background(), podID); err != nil {
				t.Fatalf("RemovePodSandbox: %v", err)
			}
			e.wantClean("pod removal after a failed CreateContainer")
		})
	}
}

func withVolume(readOnly bool, sub string) func(*runtimeapi.ContainerConfig) {
	return func(c *runtimeapi.ContainerConfig) {
		c.Mounts = append(c.Mounts, &runtimeapi.Mount{ContainerPath: "/data", Readonly: readOnly, Image: &runtimeapi.ImageSpec{Image: "vol"}, ImageSubPath: sub})
	}
}

func TestImageVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	cfg := ctrConfig("c")
	withVolume(true, "")(cfg)
	id, err := e.m.CreateContainer(ctx, podID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := e.m.ContainerStatus(ctx, id, false)
	if len(st.Mounts) != 1 || st.Mounts[0].Image.ImageRef != "sha256:vol" {
		t.Errorf("mounts = %v", st.Mounts)
	}
	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if e.images.count() != 0 || e.mounts.count() != 1 {
		t.Errorf("after remove: leases %v, mounts %v", e.images.leases, e.mounts.mounts)
	}
}

// TestStartContainerError: a container that cannot start is reported
// exited with StartError, as the kubelet expects.
func TestStartContainerError(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	e.shimOf(podID).set("Start", errInjected)
	if err := e.m.StartContainer(ctx, id); !errors.Is(err, errInjected) {
		t.Fatalf("StartContainer: %v", err)
	}
	st, _, _ := e.m.ContainerStatus(ctx, id, false)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "StartError" || st.ExitCode != 128 || st.FinishedAt == 0 {
		t.Errorf("status = %v", st)
	}
	// Stored: a restarted berthd says the same.
	e.restart()
	if st, _, _ := e.m.ContainerStatus(ctx, id, false); st.Reason != "StartError" {
		t.Errorf("after restart = %v", st)
	}
	for name, err := range map[string]error{
		"missing": e.m.StartContainer(ctx, "nope"),
		"exited":  e.m.StartContainer(ctx, id),
		"shim gone": func() error {
			id2 := e.createCtr(podID, "d")
			e.shimOf(podID).die()
			return e.m.StartContainer(ctx, id2)
		}(),
	} {
		if err == nil {
			t.Errorf("StartContainer of a container %s succeeded", name)
		}
	}
}

// TestStopContainerTimeout: a container that ignores its stop signal is
// killed when the timeout ends; one that ignores SIGKILL too makes the
// call fail when its context ends.
func TestStopContainerTimeout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	s := e.shimOf(podID)
	s.mu.Lock()
	s.ignore[id] = true
	s.mu.Unlock()
	start := time.Now()
	if err := e.m.StopContainer(ctx, id, 1); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("killed after %s, before the timeout", d)
	}
	st, _, _ := e.m.ContainerStatus(ctx, id, false)
	if st.ExitCode != 137 || s.called("Kill") != 2 {
		t.Errorf("exit %d after %d kills; want 137 after 2", st.ExitCode, s.called("Kill"))
	}

	id2 := e.createCtr(podID, "stuck")
	if err := e.m.StartContainer(ctx, id2); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.deaf[id2] = true
	s.mu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := e.m.StopContainer(tctx, id2, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("StopContainer of a stuck container: %v", err)
	}
	// A kill that fails is reported.
	s.set("Kill", errInjected)
	if err := e.m.StopContainer(ctx, id2, 0); !errors.Is(err, errInjected) {
		t.Errorf("StopContainer with a failing kill: %v", err)
	}
	if err := e.m.StopContainer(ctx, id2, 5); !errors.Is(err, errInjected) {
		t.Errorf("StopContainer with a failing signal: %v", err)
	}
}

// TestStopRemoveIdempotentAndConcurrent: stopping and removing what is
// gone succeeds, and many concurrent calls do the work once.
func TestStopRemoveIdempotentAndConcurrent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for name, err := range map[string]error{
		"StopContainer":    e.m.StopContainer(ctx, "missing", 0),
		"RemoveContainer":  e.m.RemoveContainer(ctx, "missing"),
		"StopPodSandbox":   e.m.StopPodSandbox(ctx, "missing"),
		"RemovePodSandbox": e.m.RemovePodSandbox(ctx, "missing"),
	} {
		if err != nil {
			t.Errorf("%s of a missing object: %v", name, err)
		}
	}
	podID := e.runPod("p")
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		id := e.createCtr(podID, n)
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		for _, id := range ids {
			wg.Add(2)
			go func() { defer wg.Done(); errs <- e.m.StopContainer(ctx, id, 2) }()
			go func() { defer wg.Done(); errs <- e.m.RemoveContainer(ctx, ids[0]) }()
		}
	}
	wg.Wait()
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- e.m.StopPodSandbox(ctx, podID) }()
		go func() { defer wg.Done(); errs <- e.m.RemovePodSandbox(ctx, podID) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent stop/remove: %v", err)
		}
	}
	e.wantClean("concurrent removal")
	if n := e.shims.live(); n != 0 {
		t.Errorf("%d shims left", n)
	}
}

// TestSandboxContainer: a pod with a sandbox container (gVisor) leases
// the pause image, starts it and kills it on stop.
func TestSandboxContainer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.images.set("pauseMissing", errInjected)
	podID, err := e.m.RunPodSandbox(ctx, podConfig("p"), "runsc")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.images.pulled) != 1 || e.images.count() != 1 {
		t.Errorf("pulled %v, leases %v", e.images.pulled, e.images.leases)
	}
	s := e.shimOf(podID)
	if s.called("Start") != 1 {
		t.Error("sandbox container not started")
	}
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.m.ContainerStatus(ctx, id, false); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container of a stopped pod: %v", st.State)
	}
	if err := e.m.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	e.wantClean("RemovePodSandbox")
}

// TestPauseExit: a sandbox container that dies makes the pod not ready.
func TestPauseExit(t *testing.T) {
	e := newEnv(t)
	podID, err := e.m.RunPodSandbox(context.Background(), podConfig("p"), "runsc")
	if err != nil {
		t.Fatal(err)
	}
	events := e.m.Subscribe(t.Context())
	e.shimOf(podID).exit(podID, 1)
	eventually(t, "pod not ready", func() bool {
		st, _, _ := e.m.PodSandboxStatus(context.Background(), podID, false)
		return st.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	select {
	case ev := <-events:
		if ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			t.Errorf("event = %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no stopped event")
	}
	if err := e.m.CheckPortForward(podID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("CheckPortForward of a not-ready pod: %v", err)
	}
}

// TestLostShim: when a pod's shim dies, its containers are exited (with
// the exit the shim wrote down, else 255) and the pod is not ready.
func TestLostShim(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.shimOf(podID).die()
	eventually(t, "container exited", func() bool {
		st, _, _ := e.m.ContainerStatus(ctx, id, false)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	st, _, _ := e.m.ContainerStatus(ctx, id, false)
	if st.ExitCode != 255 || !strings.Contains(st.Message, "berth-shim") {
		t.Errorf("status = %v", st)
	}
	eventually(t, "pod not ready", func() bool {
		st, _, _ := e.m.PodSandboxStatus(ctx, podID, false)
		return st.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	if _, _, _, err := e.m.ExecSync(ctx, id, []string{"x"}, 0); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ExecSync in an exited container: %v", err)
	}
	// Everything can still be removed.
	if err := e.m.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	e.wantClean("removal of a pod whose shim died")
}

// TestRecovery: a restarted berthd reconnects to running shims, learns
// exits it missed, rolls back half-created pods and containers and drops
// containers whose pod is gone.
func TestRecovery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	running := e.createCtr(podID, "running")
	exits := e.createCtr(podID, "exits")
	for _, id := range []string{running, exits} {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	lostPod := e.runPod("lost")
	lostCtr := e.createCtr(lostPod, "c")
	if err := e.m.StartContainer(ctx, lostCtr); err != nil {
		t.Fatal(err)
	}

	// A crash: berthd goes while a pod and a container are half made.
	writeHalfCreated(t, e, podID)
	e.stop()
	// Meanwhile a container exits and a shim dies.
	e.shimOf2(podID).exit(exits, 0)
	e.shimOf2(lostPod).die()
	e.start()

	for id, want := range map[string]runtimeapi.ContainerState{
		running: runtimeapi.ContainerState_CONTAINER_RUNNING,
		exits:   runtimeapi.ContainerState_CONTAINER_EXITED,
		lostCtr: runtimeapi.ContainerState_CONTAINER_EXITED,
	} {
		st, _, err := e.m.ContainerStatus(ctx, id, false)
		if err != nil || st.State != want {
			t.Errorf("container %s after restart: %v %v, want %v", short(id), st.GetState(), err, want)
		}
	}
	if st, _, _ := e.m.ContainerStatus(ctx, exits, false); st.Reason != "Completed" {
		t.Errorf("missed exit recorded as %v", st)
	}
	if st, _, _ := e.m.PodSandboxStatus(ctx, lostPod, false); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod whose shim died: %v", st.State)
	}
	if n := e.records(bucketSandboxes); n != 2 {
		t.Errorf("%d pod records, want the 2 whole pods", n)
	}
	if n := e.records(bucketContainers); n != 3 {
		t.Errorf("%d container records, want the 3 whole containers", n)
	}
	// The names of the rolled back objects are free again.
	id := e.runPod("half")
	if _, err := e.m.CreateContainer(ctx, podID, ctrConfig("half")); err != nil {
		t.Errorf("name of a rolled back container: %v", err)
	}
	for _, p := range []string{podID, lostPod, id} {
		if err := e.m.RemovePodSandbox(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	e.wantClean("removal after recovery")
}

// shimOf2 finds a pod's shim while no manager runs.
func (e *env) shimOf2(podID string) *fakeShim {
	e.shims.mu.Lock()
	defer e.shims.mu.Unlock()
	for sock, s := range e.shims.bySock {
		if strings.HasSuffix(sock, podID[:16]+".sock") {
			return s
		}
	}
	e.t.Fatalf("no shim for %s", podID)
	return nil
}

// writeHalfCreated stores what a crash in RunPodSandbox and in
// CreateContainer (in pod podID) leaves, and a container whose pod is gone.
func writeHalfCreated(t *testing.T, e *env, podID string) {
	t.Helper()
	m := e.m
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hid := newID()
	pcfg := podConfig("half")
	raw, err := proto.Marshal(pcfg)
	must(err)
	sb := &sandbox{rec: sandboxRecord{ID: hid, Name: sandboxName(pcfg.Metadata), Config: raw, Handler: "runc", State: stateCreating, NetNS: filepath.Join(m.netnsDir(), hid), Pinned: true}}
	must(m.saveSandbox(sb))
	must(PrivateDir(m.podDir(hid)))
	must(e.ns.NewNetNS(sb.rec.NetNS))
	must(m.mountShm(filepath.Join(m.podDir(hid), "shm"), nil))

	cid := newID()
	raw, err = proto.Marshal(ctrConfig("half"))
	must(err)
	must(m.saveContainer(&container{rec: containerRecord{ID: cid, SandboxID: podID, Name: "half_p_ns_uid-p_0", Config: raw, State: stateCreating}}))
	lowers, err := e.images.Lease(cid, "sha256:app")
	must(err)
	must(m.mountRootfs(lowers, filepath.Join(m.ctrRootDir(), cid), filepath.Join(m.ctrBundle(cid), "rootfs"), nil))

	oid := newID()
	must(m.saveContainer(&container{rec: containerRecord{ID: oid, SandboxID: newID(), Name: "orphan", Config: raw, State: stateRunning}}))
}
