package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/exitfile"
)

func TestMain(m *testing.M) {
	if bundle := os.Getenv("BERTH_FAKE_INIT"); bundle != "" {
		fakeInit(bundle, strings.Split(os.Getenv("BERTH_FAKE_ARGS"), "\x1f"))
	}
	if os.Getenv("BERTH_FAKE_RUNTIME") == "1" {
		os.Exit(fakeRuntime(os.Args[1:]))
	}
	os.Exit(m.Run())
}

var (
	svcOnce sync.Once
	svc     *Service
	svcDir  string
	exited  = make(chan struct{}, 1)
)

// service returns the one Service of this test process (a process can be
// made a subreaper once, and the reaper owns every child).
func service(t *testing.T) *Service {
	t.Helper()
	svcOnce.Do(func() {
		os.Setenv("BERTH_FAKE_RUNTIME", "1")
		dir, err := os.MkdirTemp("", "berth-shim-test-")
		if err != nil {
			t.Fatal(err)
		}
		svcDir = dir
		rt := &oci.Runtime{Name: "fake", Path: os.Args[0], Root: filepath.Join(dir, "rt")}
		if err := os.MkdirAll(rt.Root, 0o700); err != nil {
			t.Fatal(err)
		}
		svc, err = New(Options{PodID: "pod", Runtime: rt, StateDir: dir, Log: slog.New(slog.DiscardHandler),
			Exit: func() { exited <- struct{}{} }})
		if err != nil {
			t.Fatal(err)
		}
	})
	return svc
}

// bundle writes a bundle whose init runs sh -c script.
func bundle(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	s := specs.Spec{Process: &specs.Process{Args: []string{"/bin/sh", "-c", script}}}
	if script == "fail-create" {
		s.Process.Args = []string{"fail-create"}
	}
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// events subscribes to the service's exit events.
func events(t *testing.T, s *Service) <-chan *shimv1.Event {
	t.Helper()
	ch := make(chan *shimv1.Event, 16)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	t.Cleanup(func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	})
	return ch
}

func waitEvent(t *testing.T, ch <-chan *shimv1.Event, id string) *shimv1.ContainerState {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Container.Id == id {
				return ev.Container
			}
		case <-timeout:
			t.Fatalf("no exit event for %s", id)
		}
	}
}

// code is the gRPC code err crosses the shim's socket with (see
// UnaryServerInterceptor).
func code(err error) codes.Code { return status.Code(errgrpc.ToGRPC(err)) }

func TestLifecycle(t *testing.T) {
	s := service(t)
	ctx := context.Background()
	evs := events(t, s)
	logPath := filepath.Join(t.TempDir(), "c.log")
	st, err := s.Create(ctx, &shimv1.CreateRequest{Id: "life", Bundle: bundle(t, "echo out; echo err >&2; sleep 2; exit 3"), LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != shimv1.Status_STATUS_CREATED || st.Pid == 0 || st.CreatedAt == 0 {
		t.Fatalf("after create: %+v", st)
	}
	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "life", Bundle: bundle(t, "true")}); code(err) != codes.AlreadyExists {
		t.Errorf("duplicate create: %v", err)
	}
	st, err = s.Start(ctx, &shimv1.IDRequest{Id: "life"})
	if err != nil || st.Status != shimv1.Status_STATUS_RUNNING {
		t.Fatalf("start: %+v %v", st, err)
	}
	if _, err := s.Start(ctx, &shimv1.IDRequest{Id: "life"}); code(err) != codes.FailedPrecondition {
		t.Errorf("second start: %v", err)
	}
	if _, err := s.Delete(ctx, &shimv1.DeleteRequest{Id: "life"}); code(err) != codes.FailedPrecondition {
		t.Errorf("delete of a running container without force: %v", err)
	}
	ex := waitEvent(t, evs, "life")
	if ex.Status != shimv1.Status_STATUS_STOPPED || ex.ExitCode != 3 || ex.FinishedAt < ex.StartedAt || ex.StartedAt == 0 {
		t.Errorf("exit event: %+v", ex)
	}
	if rec, err := exitfile.Read(svcDir, "life"); err != nil || rec.ExitCode != 3 {
		t.Errorf("recorded exit: %+v %v", rec, err)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), " stdout F out\n") || !strings.Contains(string(log), " stderr F err\n") {
		t.Errorf("log = %q", log)
	}
	// Kill after exit is a no-op.
	if _, err := s.Kill(ctx, &shimv1.KillRequest{Id: "life", Signal: 15}); err != nil {
		t.Errorf("kill of a stopped container: %v", err)
	}
	if _, err := s.Delete(ctx, &shimv1.DeleteRequest{Id: "life"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State(ctx, &shimv1.IDRequest{Id: "life"}); code(err) != codes.NotFound {
		t.Errorf("state after delete: %v", err)
	}
	if _, err := exitfile.Read(svcDir, "life"); err == nil {
		t.Error("exit record outlived the container")
	}
}

func TestFastExitAndSignals(t *testing.T) {
	s := service(t)
	ctx := context.Background()
	evs := events(t, s)
	// Exits the moment it starts: the exit may beat Start's return.
	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "fast", Bundle: bundle(t, "exit 0")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &shimv1.IDRequest{Id: "fast"}); err != nil {
		t.Fatal(err)
	}
	if ex := waitEvent(t, evs, "fast"); ex.ExitCode != 0 {
		t.Errorf("fast exit: %+v", ex)
	}
	st, _ := s.State(ctx, &shimv1.IDRequest{Id: "fast"})
	if st.Status != shimv1.Status_STATUS_STOPPED {
		t.Errorf("a started container that exited reads %s", st.Status)
	}

	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "trap", Bundle: bundle(t, "trap 'exit 42' TERM; while true; do sleep 0.05; done")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &shimv1.IDRequest{Id: "trap"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the trap be installed
	if _, err := s.Kill(ctx, &shimv1.KillRequest{Id: "trap", Signal: uint32(unix.SIGTERM)}); err != nil {
		t.Fatal(err)
	}
	if ex := waitEvent(t, evs, "trap"); ex.ExitCode != 42 {
		t.Errorf("trapped TERM: %+v", ex)
	}

	// A created container that never ran is deleted (killed) directly.
	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "never", Bundle: bundle(t, "true")}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"fast", "trap", "never"} {
		if _, err := s.Delete(ctx, &shimv1.DeleteRequest{Id: id}); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
}

func TestExecSync(t *testing.T) {
	s := service(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "ex", Bundle: bundle(t, "while true; do sleep 0.05; done")}); err != nil {
		t.Fatal(err)
	}
	proc := func(script string) []byte {
		b, _ := json.Marshal(specs.Process{Args: []string{"/bin/sh", "-c", script}})
		return b
	}
	if _, err := s.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: "ex", Process: proc("true")}); code(err) != codes.FailedPrecondition {
		t.Errorf("exec in a created container: %v", err)
	}
	if _, err := s.Start(ctx, &shimv1.IDRequest{Id: "ex"}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: "ex", Process: proc("echo hi; echo there >&2; exit 9")})
	if err != nil || resp.ExitCode != 9 || string(resp.Stdout) != "hi\n" || string(resp.Stderr) != "there\n" {
		t.Errorf("exec = %+v, %v", resp, err)
	}
	resp, err = s.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: "ex", Process: proc("head -c 100000 /dev/zero"), MaxOutput: 10})
	if err != nil || len(resp.Stdout) != 10 {
		t.Errorf("capped output: %d bytes, %v", len(resp.Stdout), err)
	}
	start := time.Now()
	// The timeout covers starting the process too (a race-built fake
	// runtime takes a while): long enough for it to start and be killed.
	resp, err = s.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: "ex", Process: proc("sleep 30"), TimeoutNs: int64(3 * time.Second)})
	if err != nil || !resp.TimedOut || resp.ExitCode != 137 || time.Since(start) > 8*time.Second {
		t.Errorf("timeout: %+v %v after %v", resp, err, time.Since(start))
	}
	// Many at once.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: "ex", Process: proc("exit " + string(rune('0'+i)))})
			if err != nil || r.ExitCode != int32(i) {
				t.Errorf("concurrent exec %d: %+v %v", i, r, err)
			}
		}()
	}
	wg.Wait()
	if _, err := s.Delete(ctx, &shimv1.DeleteRequest{Id: "ex", Force: true}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateFailureAndOOM(t *testing.T) {
	s := service(t)
	ctx := context.Background()
	_, err := s.Create(ctx, &shimv1.CreateRequest{Id: "bad", Bundle: bundle(t, "fail-create")})
	if err == nil || !strings.Contains(err.Error(), "told to fail") {
		t.Errorf("create failure: %v, want the runtime's message", err)
	}
	if l, _ := s.List(ctx, &shimv1.Empty{}); len(l.Containers) != 0 {
		t.Errorf("a failed create is listed: %v", l.Containers)
	}

	cg := t.TempDir()
	if err := os.WriteFile(filepath.Join(cg, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	evs := events(t, s)
	if _, err := s.Create(ctx, &shimv1.CreateRequest{Id: "oom", Bundle: bundle(t, "kill -9 $$"), MemoryCgroup: cg}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &shimv1.IDRequest{Id: "oom"}); err != nil {
		t.Fatal(err)
	}
	if ex := waitEvent(t, evs, "oom"); !ex.OomKilled || ex.ExitCode != 137 {
		t.Errorf("OOM kill not reported: %+v", ex)
	}
	if _, err := s.Shutdown(ctx, &shimv1.Empty{}); code(err) != codes.FailedPrecondition {
		t.Errorf("shutdown while owning a container: %v", err)
	}
	if _, err := s.Delete(ctx, &shimv1.DeleteRequest{Id: "oom"}); err != nil {
		t.Fatal(err)
	}
}
