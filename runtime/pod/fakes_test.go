package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
	"github.com/berthrt/berth/runtime/shim"
	"github.com/berthrt/berth/runtime/store"
)

// Hand-written fakes of what the manager drives (deps.go), in the manner
// of containerd's newTestCRIService: each records what was done to it
// and fails the calls a test names in its fail map.

// failures maps an operation name to the error it returns.
type failures struct {
	fmu  sync.Mutex
	errs map[string]error
}

func (f *failures) set(op string, err error) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	if f.errs == nil {
		f.errs = map[string]error{}
	}
	f.errs[op] = err
}

func (f *failures) err(op string) error {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return f.errs[op]
}

// errInjected is what a failing fake returns.
var errInjected = fmt.Errorf("injected failure")

type fakeHandlers struct{ byName map[string]*oci.Handler }

func (f *fakeHandlers) Get(name string) (*oci.Handler, error) {
	if name == "" {
		name = "runc"
	}
	h, ok := f.byName[name]
	if !ok {
		return nil, errdefs.NotFound("runtime handler %q", name)
	}
	return h, nil
}

func (f *fakeHandlers) All() []*oci.Handler {
	var out []*oci.Handler
	for _, n := range []string{"runc", "runsc"} {
		out = append(out, f.byName[n])
	}
	return out
}

func (f *fakeHandlers) Default() string { return "runc" }

// fakeShims launches fakeShims; a shim stays reachable by its socket
// until it dies.
type fakeShims struct {
	failures
	mu      sync.Mutex
	bySock  map[string]*fakeShim
	spawned int
}

func (f *fakeShims) Spawn(ctx context.Context, o shim.SpawnOptions) (shimClient, error) {
	if err := f.err("Spawn"); err != nil {
		return nil, err
	}
	s := newFakeShim(o.StateDir)
	f.fmu.Lock()
	for op, err := range f.errs {
		if rest, ok := strings.CutPrefix(op, "all"); ok {
			s.errs = map[string]error{rest: err}
		}
	}
	f.fmu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bySock[o.Socket] = s
	f.spawned++
	return s, nil
}

func (f *fakeShims) Connect(ctx context.Context, socket string) (shimClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.bySock[socket]
	if s == nil || s.isDead() {
		return nil, errdefs.Unavailable("connect shim %s", socket)
	}
	// A new connection to the same shim.
	return s.reconnect(), nil
}

// live counts the shims that run.
func (f *fakeShims) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.bySock {
		if !s.isDead() && !s.isShutdown() {
			n++
		}
	}
	return n
}

// fakeShim is one pod's shim and its containers.
type fakeShim struct {
	failures
	*shimState
	done     chan struct{}
	doneOnce *sync.Once
}

type shimState struct {
	mu       sync.Mutex
	stateDir string
	ctrs     map[string]*shimv1.ContainerState
	subs     []chan *shimv1.ContainerState
	pid      uint32
	dead     bool
	shutdown bool
	// ignore is the set of containers that ignore every signal but
	// SIGKILL.
	ignore map[string]bool
	// deaf containers ignore SIGKILL too (a stuck process).
	deaf  map[string]bool
	calls []string
	// updates are the Update requests, in order.
	updates []*shimv1.UpdateRequest
	// ckptPods are the CheckpointPod requests, restores the restore
	// options each container was created with.
	ckptPods []*shimv1.CheckpointPodRequest
	restores map[string]*shimv1.RestoreOptions
	// conns are every connection's done channel.
	conns []*fakeShim
}

func newFakeShim(stateDir string) *fakeShim {
	st := &shimState{stateDir: stateDir, ctrs: map[string]*shimv1.ContainerState{}, pid: 100, ignore: map[string]bool{}, deaf: map[string]bool{}}
	s := &fakeShim{shimState: st, done: make(chan struct{}), doneOnce: &sync.Once{}}
	st.conns = append(st.conns, s)
	return s
}

func (s *fakeShim) reconnect() *fakeShim {
	c := &fakeShim{shimState: s.shimState, done: make(chan struct{}), doneOnce: &sync.Once{}}
	c.errs = s.errs
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c
}

func (s *fakeShim) isDead() bool     { s.mu.Lock(); defer s.mu.Unlock(); return s.dead }
func (s *fakeShim) isShutdown() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.shutdown }

// die is the shim's process dying: every connection ends.
func (s *fakeShim) die() {
	s.mu.Lock()
	s.dead = true
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.doneOnce.Do(func() { close(c.done) })
	}
}

// unreachable makes every call fail as a dead shim's would, before the
// manager noticed (its connections stay open).
func (s *fakeShim) unreachable() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
}

func (s *fakeShim) record(op string) error {
	s.mu.Lock()
	s.calls = append(s.calls, op)
	dead := s.dead
	s.mu.Unlock()
	if dead {
		return errdefs.Unavailable("shim is gone")
	}
	return s.err(op)
}

func (s *fakeShim) called(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c == op {
			n++
		}
	}
	return n
}

func (s *fakeShim) Close() error {
	s.doneOnce.Do(func() { close(s.done) })
	return nil
}

func (s *fakeShim) Done() <-chan struct{} { return s.done }

func (s *fakeShim) Info(ctx context.Context, _ *shimv1.Empty) (*shimv1.InfoResponse, error) {
	// Never a pid: stopShim would kill it.
	return nil, errdefs.Unavailable("no info from a fake")
}

func (s *fakeShim) Create(ctx context.Context, r *shimv1.CreateRequest) (*shimv1.ContainerState, error) {
	if err := s.record("Create"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ctrs[r.Id]; ok {
		return nil, errdefs.AlreadyExists("container %s", r.Id)
	}
	s.pid++
	if r.Restore != nil {
		if s.restores == nil {
			s.restores = map[string]*shimv1.RestoreOptions{}
		}
		s.restores[r.Id] = r.Restore
	}
	st := &shimv1.ContainerState{Id: r.Id, Pid: s.pid, Status: shimv1.Status_STATUS_CREATED}
	s.ctrs[r.Id] = st
	return st, nil
}

func (s *fakeShim) Start(ctx context.Context, r *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	if err := s.record("Start"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ctrs[r.Id]
	if !ok {
		return nil, errdefs.NotFound("container %s", r.Id)
	}
	st.Status, st.StartedAt = shimv1.Status_STATUS_RUNNING, time.Now().UnixNano()
	return st, nil
}

// exit stops container id with code and tells every subscriber.
func (s *fakeShim) exit(id string, code int32) {
	s.mu.Lock()
	st, ok := s.ctrs[id]
	if !ok || st.Status == shimv1.Status_STATUS_STOPPED {
		s.mu.Unlock()
		return
	}
	st.Status, st.ExitCode, st.FinishedAt = shimv1.Status_STATUS_STOPPED, code, time.Now().UnixNano()
	ev := proto.Clone(st).(*shimv1.ContainerState)
	subs := append([]chan *shimv1.ContainerState(nil), s.subs...)
	s.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *fakeShim) Kill(ctx context.Context, r *shimv1.KillRequest) (*shimv1.Empty, error) {
	if err := s.record("Kill"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	st, ok := s.ctrs[r.Id]
	ignore := s.ignore[r.Id] && r.Signal != uint32(unix.SIGKILL) || s.deaf[r.Id]
	s.mu.Unlock()
	if !ok {
		return nil, errdefs.NotFound("container %s", r.Id)
	}
	if st.Status == shimv1.Status_STATUS_RUNNING && !ignore {
		go s.exit(r.Id, 128+int32(r.Signal))
	}
	return &shimv1.Empty{}, nil
}

func (s *fakeShim) Delete(ctx context.Context, r *shimv1.DeleteRequest) (*shimv1.ContainerState, error) {
	if err := s.record("Delete"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ctrs[r.Id]
	if !ok {
		return nil, errdefs.NotFound("container %s", r.Id)
	}
	delete(s.ctrs, r.Id)
	return st, nil
}

func (s *fakeShim) State(ctx context.Context, r *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	if err := s.record("State"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ctrs[r.Id]
	if !ok {
		return nil, errdefs.NotFound("container %s", r.Id)
	}
	return proto.Clone(st).(*shimv1.ContainerState), nil
}

func (s *fakeShim) List(ctx context.Context, _ *shimv1.Empty) (*shimv1.ListResponse, error) {
	if err := s.record("List"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &shimv1.ListResponse{}
	for _, st := range s.ctrs {
		out.Containers = append(out.Containers, proto.Clone(st).(*shimv1.ContainerState))
	}
	return out, nil
}

func (s *fakeShim) ExecSync(ctx context.Context, r *shimv1.ExecSyncRequest) (*shimv1.ExecSyncResponse, error) {
	if err := s.record("ExecSync"); err != nil {
		return nil, err
	}
	if strings.Contains(string(r.Process), `"sleep"`) {
		return &shimv1.ExecSyncResponse{TimedOut: true, ExitCode: 137}, nil
	}
	return &shimv1.ExecSyncResponse{Stdout: r.Process, Stderr: []byte("err"), ExitCode: 3}, nil
}

func (s *fakeShim) Exec(ctx context.Context, r *shimv1.ExecRequest) (*shimv1.SessionResponse, error) {
	if err := s.record("Exec"); err != nil {
		return nil, err
	}
	return nil, errdefs.Unavailable("a fake shim serves no sessions")
}

func (s *fakeShim) Attach(ctx context.Context, r *shimv1.AttachRequest) (*shimv1.SessionResponse, error) {
	if err := s.record("Attach"); err != nil {
		return nil, err
	}
	return nil, errdefs.Unavailable("a fake shim serves no sessions")
}

func (s *fakeShim) Update(ctx context.Context, r *shimv1.UpdateRequest) (*shimv1.Empty, error) {
	if err := s.record("Update"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.updates = append(s.updates, r)
	s.mu.Unlock()
	return &shimv1.Empty{}, nil
}

func (s *fakeShim) Checkpoint(ctx context.Context, r *shimv1.CheckpointRequest) (*shimv1.Empty, error) {
	return &shimv1.Empty{}, s.record("Checkpoint")
}

func (s *fakeShim) CheckpointPod(ctx context.Context, r *shimv1.CheckpointPodRequest) (*shimv1.Empty, error) {
	s.mu.Lock()
	s.ckptPods = append(s.ckptPods, r)
	s.mu.Unlock()
	return &shimv1.Empty{}, s.record("CheckpointPod")
}

func (s *fakeShim) ReopenLog(ctx context.Context, r *shimv1.IDRequest) (*shimv1.Empty, error) {
	return &shimv1.Empty{}, s.record("ReopenLog")
}

func (s *fakeShim) Shutdown(ctx context.Context, _ *shimv1.Empty) (*shimv1.Empty, error) {
	if err := s.record("Shutdown"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	return &shimv1.Empty{}, nil
}

func (s *fakeShim) Events(ctx context.Context, _ *shimv1.Empty) (shimv1.ShimService_EventsClient, error) {
	if err := s.record("Events"); err != nil {
		return nil, err
	}
	ch := make(chan *shimv1.ContainerState, 16)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	return &fakeEvents{ctx: ctx, ch: ch, done: s.done}, nil
}

type fakeEvents struct {
	shimv1.ShimService_EventsClient // only Recv is called
	ctx                             context.Context
	ch                              chan *shimv1.ContainerState
	done                            chan struct{}
}

func (e *fakeEvents) Recv() (*shimv1.Event, error) {
	select {
	case st := <-e.ch:
		return &shimv1.Event{Container: st}, nil
	case <-e.ctx.Done():
		return nil, e.ctx.Err()
	case <-e.done:
		return nil, io.EOF
	}
}

// fakeMounter keeps a mount table.
type fakeMounter struct {
	failures
	mu     sync.Mutex
	mounts map[string]int
}

func (f *fakeMounter) IDMapped(src, dst, userns string) error {
	return f.Mount(src, dst, "idmapped", unix.MS_BIND, "userns="+userns)
}

func (f *fakeMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	op := fstype
	if flags&unix.MS_REMOUNT != 0 {
		op = "remount"
	} else if flags&unix.MS_BIND != 0 {
		op = "bind"
	}
	if err := f.err(op); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if flags&unix.MS_REMOUNT == 0 {
		f.mounts[target]++
	}
	return nil
}

func (f *fakeMounter) Unmount(target string, flags int) error {
	if err := f.err("unmount"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mounts[target] == 0 {
		return unix.EINVAL
	}
	if f.mounts[target]--; f.mounts[target] == 0 {
		delete(f.mounts, target)
	}
	return nil
}

func (f *fakeMounter) MountPoints() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for mp := range f.mounts {
		out = append(out, mp)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeMounter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounts)
}

// fakeNamespaces pins namespaces as empty files.
type fakeNamespaces struct {
	failures
	mu      sync.Mutex
	entered []string // kind:file of each Enter
}

func (f *fakeNamespaces) Pin(path string, kind pinns.Kind, setup func() error) error {
	if err := f.err("Pin" + kind.String()); err != nil {
		return err
	}
	return os.WriteFile(path, nil, 0o600)
}

func (f *fakeNamespaces) PinUser(u pinns.UserNS) error {
	if err := f.err("PinUser"); err != nil {
		return err
	}
	for _, p := range append([]string{u.Path}, slices.Collect(maps.Values(u.Owned))...) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Enter records the call; fn would run in the test's own namespaces.
func (f *fakeNamespaces) Enter(path string, kind pinns.Kind, fn func() error) error {
	if err := f.err("Enter" + kind.String()); err != nil {
		return err
	}
	f.mu.Lock()
	f.entered = append(f.entered, kind.String()+":"+filepath.Base(path))
	f.mu.Unlock()
	return nil
}

func (f *fakeNamespaces) LoopbackUp(path string) error { return f.err("LoopbackUp") }

func (f *fakeNamespaces) NewNetNS(path string) error {
	if err := f.err("NewNetNS"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, nil, 0o600)
}

func (f *fakeNamespaces) RemoveNetNS(path string) error {
	if err := f.err("RemoveNetNS"); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

type fakeCgroups struct {
	failures
	mu      sync.Mutex
	removed []string
	// sized is every Size, by directory, in order.
	sized map[string][]*specs.LinuxResources
}

func (f *fakeCgroups) Size(dir string, res *specs.LinuxResources) error {
	if err := f.err("Size"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sized == nil {
		f.sized = map[string][]*specs.LinuxResources{}
	}
	f.sized[dir] = append(f.sized[dir], res)
	return nil
}

func (f *fakeCgroups) Remove(dir string) error {
	if err := f.err("Remove"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, dir)
	return nil
}

// fakeImages has the images "app", "vol" and "pause", each one layer.
type fakeImages struct {
	failures
	dir    string
	mu     sync.Mutex
	leases map[string]string // owner -> image ID
	pulled []string
}

func (f *fakeImages) image(ref string) (*image.Image, error) {
	switch ref {
	case "app", "vol", "pause":
		return &image.Image{ID: "sha256:" + ref, RepoTags: []string{ref}, RepoDigests: []string{ref + "@sha256:d"}}, nil
	}
	return nil, errdefs.NotFound("image %q", ref)
}

func (f *fakeImages) Get(ref string) (*image.Image, error) {
	if err := f.err("Get"); err != nil {
		return nil, err
	}
	if ref == "pause" && f.err("pauseMissing") != nil {
		return nil, errdefs.NotFound("image %q", ref)
	}
	return f.image(ref)
}

func (f *fakeImages) Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error) {
	if err := f.err("Pull"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.pulled = append(f.pulled, ref)
	f.mu.Unlock()
	return f.image(ref)
}

func (f *fakeImages) Config(id string) (*v1.ConfigFile, error) {
	if err := f.err("Config"); err != nil {
		return nil, err
	}
	return &v1.ConfigFile{Config: v1.Config{Cmd: []string{"/bin/app"}, StopSignal: "SIGINT", User: "1000:1000"}}, nil
}

func (f *fakeImages) Lease(owner, id string) ([]string, error) {
	if err := f.err("Lease"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[owner] = id
	layer := filepath.Join(f.dir, strings.TrimPrefix(id, "sha256:"))
	if err := os.MkdirAll(layer, 0o755); err != nil {
		return nil, err
	}
	return []string{layer}, nil
}

func (f *fakeImages) Release(owner string) error {
	if err := f.err("Release"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for o := range f.leases {
		if o == owner || strings.HasPrefix(o, owner+"/") {
			delete(f.leases, o)
		}
	}
	return nil
}

func (f *fakeImages) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases)
}

type fakeCNI struct {
	failures
	mu       sync.Mutex
	attached map[string]bool
}

func (f *fakeCNI) Status() error { return f.err("Status") }

func (f *fakeCNI) Setup(ctx context.Context, p network.Pod) (network.Attachment, error) {
	if err := f.err("Setup"); err != nil {
		return network.Attachment{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached[p.ID] = true
	return network.Attachment{Network: "fake", IPs: []string{"10.0.0.2", "fd00::2"}}, nil
}

func (f *fakeCNI) Teardown(ctx context.Context, p network.Pod) error {
	if err := f.err("Teardown"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, p.ID)
	return nil
}

func (f *fakeCNI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.attached)
}

// env is a Manager on fakes, with its store and directories in t's
// temporary directory.
type env struct {
	t       *testing.T
	m       *Manager
	cfg     *config.Config
	opts    Options
	dbPath  string
	shims   *fakeShims
	mounts  *fakeMounter
	ns      *fakeNamespaces
	cgroups *fakeCgroups
	images  *fakeImages
	cni     *fakeCNI
	hs      *fakeHandlers
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		t:       t,
		cfg:     &config.Config{Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), CgroupDriver: "cgroupfs", Image: config.Image{PauseImage: "pause"}},
		dbPath:  filepath.Join(dir, "root", "meta.db"),
		shims:   &fakeShims{bySock: map[string]*fakeShim{}},
		mounts:  &fakeMounter{mounts: map[string]int{}},
		ns:      &fakeNamespaces{},
		cgroups: &fakeCgroups{},
		images:  &fakeImages{dir: filepath.Join(dir, "layers"), leases: map[string]string{}},
		cni:     &fakeCNI{attached: map[string]bool{}},
		hs: &fakeHandlers{byName: map[string]*oci.Handler{
			// The binaries do not exist: a runtime call fails at once.
			"runc":  {Runtime: &oci.Runtime{Name: "runc", Path: filepath.Join(dir, "bin", "runc")}, Info: &oci.Info{SpecVersion: "1.2.0"}},
			"runsc": {Runtime: &oci.Runtime{Name: "runsc", Path: filepath.Join(dir, "bin", "runsc")}, Info: &oci.Info{SpecVersion: "1.2.0"}},
			"crun":  {Runtime: &oci.Runtime{Name: "crun", Path: filepath.Join(dir, "bin", "crun")}, Info: &oci.Info{SpecVersion: "1.2.0"}},
		}},
	}
	e.start()
	t.Cleanup(func() { e.stop() })
	return e
}

// start opens the store and makes a manager, recovering what is stored.
func (e *env) start() {
	e.t.Helper()
	db, err := store.Open(e.dbPath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.opts = Options{Config: e.cfg, DB: db, Images: e.images, CNI: e.cni, Log: slog.New(slog.DiscardHandler), ShimBinary: "berth-shim"}
	m, err := newManager(context.Background(), e.opts, deps{handlers: e.hs, shims: e.shims, mounts: e.mounts, ns: e.ns, cgroups: e.cgroups})
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = m
}

// stop is berthd going away: shims keep running, connections close.
func (e *env) stop() {
	if e.m == nil {
		return
	}
	e.m.mu.Lock()
	sbs := make([]*sandbox, 0, len(e.m.sandboxes))
	for _, sb := range e.m.sandboxes {
		sbs = append(sbs, sb)
	}
	e.m.mu.Unlock()
	for _, sb := range sbs {
		sb.mu.Lock()
		c := sb.shim
		sb.shim = nil
		sb.mu.Unlock()
		if c != nil {
			_ = c.Close()
		}
	}
	_ = e.opts.DB.Close()
	e.m = nil
}

// restart is berthd restarting.
func (e *env) restart() {
	e.stop()
	e.start()
}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: "",
		Labels:       map[string]string{"app": name},
		PortMappings: []*runtimeapi.PortMapping{{HostPort: 8080, ContainerPort: 80}},
		// A PID namespace per container, as the kubelet asks unless the
		// pod shares one: no sandbox container with runc.
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "app"},
		Labels:   map[string]string{"ctr": name},
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512}},
	}
}

func (e *env) runPod(name string) string {
	e.t.Helper()
	id, err := e.m.RunPodSandbox(context.Background(), podConfig(name), "")
	if err != nil {
		e.t.Fatalf("RunPodSandbox: %v", err)
	}
	return id
}

func (e *env) createCtr(podID, name string) string {
	e.t.Helper()
	id, err := e.m.CreateContainer(context.Background(), podID, ctrConfig(name))
	if err != nil {
		e.t.Fatalf("CreateContainer: %v", err)
	}
	return id
}

// bundleSpec reads the OCI spec berth wrote for container id.
func (e *env) bundleSpec(id string) *specs.Spec {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.m.ctrBundle(id), "config.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		e.t.Fatal(err)
	}
	return &s
}

func (e *env) shimOf(podID string) *fakeShim {
	e.t.Helper()
	e.shims.mu.Lock()
	defer e.shims.mu.Unlock()
	s := e.shims.bySock[e.m.shimSocket(podID)]
	if s == nil {
		e.t.Fatalf("no shim for pod %s", podID)
	}
	return s
}

// records counts the stored records of bucket.
func (e *env) records(bucket string) int {
	e.t.Helper()
	var n int
	err := e.opts.DB.View(func(tx *store.Tx) error {
		var err error
		var recs []map[string]any
		recs, err = store.All[map[string]any](tx, bucket)
		n = len(recs)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// clean reports what is left of pods and containers: records, names,
// leases, mounts, attachments and directories.
func (e *env) leftovers() []string {
	e.t.Helper()
	var out []string
	if n := e.records(bucketSandboxes); n > 0 {
		out = append(out, fmt.Sprintf("%d pod records", n))
	}
	if n := e.records(bucketContainers); n > 0 {
		out = append(out, fmt.Sprintf("%d container records", n))
	}
	e.m.mu.Lock()
	if len(e.m.names) > 0 {
		out = append(out, fmt.Sprintf("names %v", e.m.names))
	}
	if len(e.m.sandboxes)+len(e.m.containers) > 0 {
		out = append(out, "objects in memory")
	}
	e.m.mu.Unlock()
	if n := e.images.count(); n > 0 {
		out = append(out, fmt.Sprintf("%d leases %v", n, e.images.leases))
	}
	if n := e.mounts.count(); n > 0 {
		out = append(out, fmt.Sprintf("mounts %v", e.mounts.mounts))
	}
	if n := e.cni.count(); n > 0 {
		out = append(out, fmt.Sprintf("%d attachments", n))
	}
	for _, d := range []string{e.m.podsDir(), e.m.ctrStateDir(), e.m.ctrRootDir(), e.m.netnsDir()} {
		if ents, _ := os.ReadDir(d); len(ents) > 0 {
			out = append(out, fmt.Sprintf("%d entries in %s", len(ents), d))
		}
	}
	return out
}

func (e *env) wantClean(what string) {
	e.t.Helper()
	if left := e.leftovers(); len(left) > 0 {
		e.t.Errorf("%s left %v", what, left)
	}
}

// eventually waits for cond, for at most 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
