package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
	"github.com/berthrt/berth/runtime/shim"
	"github.com/berthrt/berth/runtime/spec"
	"github.com/berthrt/berth/runtime/store"
)

// sandboxRecord is a pod as stored.
type sandboxRecord struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Config    []byte `json:"config"` // PodSandboxConfig, protobuf
	Handler   string `json:"handler"`
	State     string `json:"state"`
	CreatedAt int64  `json:"createdAt"`
	ImageID   string `json:"imageID"`
	// NetNS is the pinned network namespace; empty with host network.
	NetNS       string   `json:"netns,omitempty"`
	Network     string   `json:"network,omitempty"`
	IPs         []string `json:"ips,omitempty"`
	NetworkDown bool     `json:"networkDown,omitempty"`
	PausePid    int      `json:"pausePid,omitempty"`
	// Pinned: the pod has no sandbox container; its IPC and UTS
	// namespaces are pinned in its directory (see needsSandboxContainer).
	Pinned bool `json:"pinned,omitempty"`
}

// sandbox is a pod in memory.
type sandbox struct {
	// op serialises lifecycle operations on the pod.
	op sync.Mutex

	mu      sync.Mutex // guards rec and shim
	rec     sandboxRecord
	cfg     *runtimeapi.PodSandboxConfig
	handler *oci.Handler
	shim    *shim.Client
	// pauseExited is closed when the sandbox container's exit is known.
	pauseExited chan struct{}
	// stopping is set while StopPodSandbox ends the pod on purpose.
	stopping bool
	// removed is set when RemovePodSandbox is done: a call that waited for
	// the pod's lock finds nothing left to do.
	removed   bool
	pauseOnce sync.Once
}

func (sb *sandbox) snapshot() sandboxRecord {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	r := sb.rec
	r.IPs = append([]string(nil), sb.rec.IPs...)
	return r
}

func (sb *sandbox) client() (*shim.Client, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.shim == nil {
		return nil, errdefs.Unavailable("shim of pod %s is gone", sb.rec.ID)
	}
	return sb.shim, nil
}

func (sb *sandbox) markPauseExited() { sb.pauseOnce.Do(func() { close(sb.pauseExited) }) }

func (m *Manager) saveSandbox(sb *sandbox) error {
	rec := sb.snapshot()
	return m.db.Update(func(tx *store.Tx) error { return tx.Put(bucketSandboxes, rec.ID, rec) })
}

func sandboxName(md *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), strconv.FormatUint(uint64(md.GetAttempt()), 10)}, "_")
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

func hostIPC(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE
}

// needsSandboxContainer reports whether a pod gets a sandbox ("pause")
// container. Only where a process is needed: a sandboxing runtime (gVisor's
// sandbox is that container, and runtimes berth does not know may work the
// same way) and a PID namespace shared by the pod, whose init it is.
// Elsewhere the pod's namespaces are pinned: no process, no runtime call.
func needsSandboxContainer(h *oci.Handler, cfg *runtimeapi.PodSandboxConfig) bool {
	if k := h.Kind(); k != "runc" && k != "crun" {
		return true
	}
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_POD
}

// pinnedNS is where a pod without a sandbox container keeps its namespace
// of kind (IPC or UTS; the network's is NetNS, for every pod).
func (m *Manager) pinnedNS(id string, kind pinns.Kind) string {
	return filepath.Join(m.podDir(id), kind.String()+"ns")
}

// pinNamespaces pins a pod's IPC and UTS namespaces (each unless the pod
// shares the node's) and sets its sysctls in them.
func (m *Manager) pinNamespaces(sb *sandbox, sysctls map[pinns.Kind]map[string]string) error {
	id := sb.rec.ID
	if !hostIPC(sb.cfg) {
		if err := pinns.Pin(m.pinnedNS(id, pinns.IPC), pinns.IPC, func() error {
			return pinns.WriteSysctls(sysctls[pinns.IPC])
		}); err != nil {
			return err
		}
	}
	if !hostNetwork(sb.cfg) {
		hostname := sb.cfg.GetHostname()
		if err := pinns.Pin(m.pinnedNS(id, pinns.UTS), pinns.UTS, func() error {
			if hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return errdefs.InvalidArgument("hostname %q: %v", hostname, err)
				}
			}
			return pinns.WriteSysctls(sysctls[pinns.UTS])
		}); err != nil {
			return err
		}
	}
	return nil
}

// podSysctls splits a pod's sysctls by namespace and checks that the pod
// has each namespace of its own.
func podSysctls(cfg *runtimeapi.PodSandboxConfig) (map[pinns.Kind]map[string]string, error) {
	sysctls, err := pinns.Sysctls(cfg.GetLinux().GetSysctls())
	if err != nil {
		return nil, err
	}
	if (len(sysctls[pinns.Net]) > 0 || len(sysctls[pinns.UTS]) > 0) && hostNetwork(cfg) {
		return nil, errdefs.InvalidArgument("network and UTS sysctls need the pod's own network namespace, not the node's")
	}
	if len(sysctls[pinns.IPC]) > 0 && hostIPC(cfg) {
		return nil, errdefs.InvalidArgument("IPC sysctls need the pod's own IPC namespace, not the node's")
	}
	return sysctls, nil
}

// ensureImage returns the image ref names, pulling it when missing.
func (m *Manager) ensureImage(ctx context.Context, ref string) (*image.Image, error) {
	img, err := m.images.Get(ref)
	if errdefs.IsNotFound(err) {
		return m.images.Pull(ctx, ref, nil)
	}
	return img, err
}

// undo collects rollback steps of a half-done operation.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// RunPodSandbox creates and starts a pod: its network namespace wired by
// CNI, its shim, and its sandbox container. The network is set up while
// the sandbox container is created.
func (m *Manager) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handlerName string) (_ string, err error) {
	log := logctx.From(ctx, m.log)
	md := cfg.GetMetadata()
	if md.GetName() == "" {
		return "", errdefs.InvalidArgument("sandbox metadata.name is required")
	}
	h, err := m.handlers.Get(handlerName)
	if err != nil {
		return "", err
	}
	id := newID()
	name := sandboxName(md)
	if err := m.reserve(name, id); err != nil {
		return "", err
	}
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	u.add(func() { m.release(name, id) })

	rawCfg, err := proto.Marshal(cfg)
	if err != nil {
		return "", err
	}
	sb := &sandbox{
		rec:         sandboxRecord{ID: id, Name: name, Config: rawCfg, Handler: h.Handler, State: stateCreating, CreatedAt: nowNano()},
		cfg:         cfg,
		handler:     h,
		pauseExited: make(chan struct{}),
	}
	// Checked for every pod: not every runtime refuses a node-wide sysctl.
	sysctls, err := podSysctls(cfg)
	if err != nil {
		return "", err
	}
	var (
		pauseImg *image.Image
		pauseCfg *v1.ConfigFile
	)
	if needsSandboxContainer(h, cfg) {
		if pauseImg, err = m.ensureImage(ctx, m.cfg.Image.PauseImage); err != nil {
			return "", fmt.Errorf("pause image %s: %w", m.cfg.Image.PauseImage, err)
		}
		if pauseCfg, err = m.images.Config(pauseImg.ID); err != nil {
			return "", err
		}
		sb.rec.ImageID = pauseImg.ID
		sysctls = nil // set by the runtime, in the sandbox container
	} else {
		sb.rec.Pinned = true
	}
	dir := m.podDir(id)
	if !hostNetwork(cfg) {
		sb.rec.NetNS = filepath.Join(m.netnsDir(), id)
	}
	// Recorded first: a crash from here on is rolled back at restart.
	if err := m.saveSandbox(sb); err != nil {
		return "", err
	}
	u.add(func() { m.deleteRecord(bucketSandboxes, id) })
	if err := PrivateDir(dir); err != nil {
		return "", err
	}
	u.add(func() { _ = removeDir(dir) })
	if err := writePodFiles(dir, cfg); err != nil {
		return "", err
	}
	if !hostIPC(cfg) {
		if err := mountShm(filepath.Join(dir, "shm")); err != nil {
			return "", err
		}
	}

	// Network, in parallel with the shim and the sandbox container.
	netDone := make(chan struct{})
	var netErr error
	if sb.rec.NetNS != "" {
		if err := network.NewNetNS(sb.rec.NetNS, sysctls[pinns.Net]); err != nil {
			return "", err
		}
		u.add(func() { _ = network.RemoveNetNS(sb.rec.NetNS) })
		np := m.networkPod(sb)
		go func() {
			defer close(netDone)
			att, err := m.cni.Setup(ctx, np)
			if err != nil {
				netErr = err
				return
			}
			sb.mu.Lock()
			sb.rec.Network, sb.rec.IPs = att.Network, att.IPs
			sb.mu.Unlock()
		}()
		u.add(func() {
			// Setup cleans up after itself when it fails; a success is undone.
			if <-netDone; netErr == nil {
				_ = m.cni.Teardown(context.WithoutCancel(ctx), m.networkPod(sb))
			}
		})
	} else {
		close(netDone)
	}

	if sb.rec.Pinned {
		// Undone with the pod's directory.
		if err := m.pinNamespaces(sb, sysctls); err != nil {
			return "", err
		}
	}

	client, err := shim.Spawn(ctx, shim.SpawnOptions{
		Binary: m.shimBin, PodID: id, StateDir: dir, Socket: m.shimSocket(id), Runtime: podRuntime(h, cfg), LogLevel: m.logLevel,
	})
	if err != nil {
		return "", err
	}
	sb.shim = client
	u.add(func() { m.stopShim(sb) })

	if !sb.rec.Pinned {
		pid, err := m.startSandboxContainer(ctx, sb, &u, pauseImg, pauseCfg)
		if err != nil {
			return "", err
		}
		sb.mu.Lock()
		sb.rec.PausePid = pid
		sb.mu.Unlock()
	}
	if <-netDone; netErr != nil {
		return "", fmt.Errorf("pod network: %w", netErr)
	}

	sb.mu.Lock()
	sb.rec.State = stateReady
	sb.mu.Unlock()
	if err := m.saveSandbox(sb); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.sandboxes[id] = sb
	m.mu.Unlock()
	go m.watchShim(sb)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id, id)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id, id)
	log.Info("pod sandbox running", "id", id, "name", name, "handler", h.Handler, "ips", sb.rec.IPs, "sandboxContainer", !sb.rec.Pinned)
	return id, nil
}

// startSandboxContainer creates and starts the pod's sandbox container
// through its shim and returns its pid; u collects the undo steps.
func (m *Manager) startSandboxContainer(ctx context.Context, sb *sandbox, u *undo, pauseImg *image.Image, pauseCfg *v1.ConfigFile) (int, error) {
	id, h, client, dir := sb.rec.ID, sb.handler, sb.shim, m.podDir(sb.rec.ID)
	bundle := filepath.Join(dir, "pause")
	lowers, err := m.images.Lease(id, pauseImg.ID)
	if err != nil {
		return 0, err
	}
	u.add(func() { _ = m.images.Release(id) })
	rw := filepath.Join(m.ctrRootDir(), id)
	if err := mountRootfs(lowers, rw, filepath.Join(bundle, "rootfs")); err != nil {
		return 0, err
	}
	u.add(func() { _ = removeDir(rw) })
	s, err := spec.Sandbox(specRuntime(h), m.host, m.specPod(sb, dir), pauseCfg, filepath.Join(bundle, "rootfs"))
	if err != nil {
		return 0, err
	}
	if err := writeSpec(bundle, s); err != nil {
		return 0, err
	}
	memCg := spec.MemoryCgroupDir(m.host, s.Linux.CgroupsPath)
	st, err := client.Create(ctx, &shimv1.CreateRequest{Id: id, Bundle: bundle, MemoryCgroup: memCg})
	if err != nil {
		return 0, fmt.Errorf("create sandbox container: %w", err)
	}
	u.add(func() { _, _ = client.Delete(context.WithoutCancel(ctx), &shimv1.DeleteRequest{Id: id, Force: true}) })
	if _, err := client.Start(ctx, &shimv1.IDRequest{Id: id}); err != nil {
		return 0, fmt.Errorf("start sandbox container: %w", err)
	}
	return int(st.Pid), nil
}

// podRuntime is the handler's runtime as this pod's shim runs it: gVisor
// serves a host-network pod from the host's network stack.
func podRuntime(h *oci.Handler, cfg *runtimeapi.PodSandboxConfig) *oci.Runtime {
	rt := *h.Runtime
	if rt.Kind() == "runsc" && hostNetwork(cfg) {
		rt.Args = append(slices.Clone(rt.Args), "--network=host")
	}
	return &rt
}

func (m *Manager) networkPod(sb *sandbox) network.Pod {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	md := sb.cfg.GetMetadata()
	p := network.Pod{ID: sb.rec.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), NetNS: sb.rec.NetNS, Network: sb.rec.Network}
	for _, pm := range sb.cfg.GetPortMappings() {
		if pm.HostPort <= 0 {
			continue
		}
		p.Ports = append(p.Ports, network.PortMapping{
			HostPort: pm.HostPort, ContainerPort: pm.ContainerPort,
			Protocol: strings.ToLower(pm.Protocol.String()), HostIP: pm.HostIp,
		})
	}
	return p
}

func (m *Manager) specPod(sb *sandbox, dir string) *spec.Pod {
	rec := sb.snapshot()
	p := &spec.Pod{
		ID: rec.ID, Config: sb.cfg, NetNS: rec.NetNS, PausePid: rec.PausePid,
		Hostname: filepath.Join(dir, "hostname"), Hosts: filepath.Join(dir, "hosts"), ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
	if !hostIPC(sb.cfg) {
		p.Shm = filepath.Join(dir, "shm")
		if rec.Pinned {
			p.IPCNS = m.pinnedNS(rec.ID, pinns.IPC)
		}
	}
	if rec.Pinned && !hostNetwork(sb.cfg) {
		p.UTSNS = m.pinnedNS(rec.ID, pinns.UTS)
	}
	return p
}

func writeSpec(bundle string, s any) error {
	if err := PrivateDir(bundle); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600)
}

func (m *Manager) deleteRecord(bucket, id string) {
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(bucket, id) }); err != nil {
		m.log.Warn("delete record", "bucket", bucket, "id", id, "err", err)
	}
}

// stopShim asks the pod's shim to exit (it owns nothing by then) and
// closes the connection; a shim that will not go is killed.
func (m *Manager) stopShim(sb *sandbox) {
	sb.mu.Lock()
	c := sb.shim
	sb.shim = nil
	sb.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, &shimv1.Empty{})
	if _, serr := c.Shutdown(ctx, &shimv1.Empty{}); serr != nil && err == nil {
		m.log.Warn("shim refused to exit; killing it", "pod", sb.rec.ID, "err", serr)
		_ = unix.Kill(int(info.Pid), unix.SIGKILL)
	}
	_ = c.Close()
	_ = os.Remove(m.shimSocket(sb.rec.ID))
}

// StopPodSandbox stops every container of the pod and the sandbox, and
// tears the network down once. Stopping a stopped pod does nothing.
func (m *Manager) StopPodSandbox(ctx context.Context, id string) error {
	sb, err := m.getSandbox(id)
	if errdefs.IsNotFound(err) {
		// Everything of a pod that is not there is reclaimed already.
		return nil
	}
	if err != nil {
		return err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if sb.isRemoved() {
		return nil
	}
	return m.stopSandbox(ctx, sb)
}

func (sb *sandbox) isRemoved() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.removed
}

func (m *Manager) stopSandbox(ctx context.Context, sb *sandbox) error {
	for _, c := range m.podContainers(sb.rec.ID) {
		c.op.Lock()
		err := m.stopContainer(ctx, c, 0)
		c.op.Unlock()
		if err != nil {
			return err
		}
	}
	sb.mu.Lock()
	sb.stopping = true
	sb.mu.Unlock()
	rec := sb.snapshot()
	if client, err := sb.client(); err == nil && !rec.Pinned {
		select {
		case <-sb.pauseExited:
		default:
			if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(unix.SIGKILL), All: sb.handler.Kind() == "runsc"}); err != nil && !isNotFound(err) {
				return fmt.Errorf("stop sandbox container: %w", err)
			}
			select {
			case <-sb.pauseExited:
			case <-time.After(10 * time.Second):
				return errdefs.Unavailable("sandbox container of %s did not exit", rec.ID)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if rec.NetNS != "" && !rec.NetworkDown {
		if err := m.cni.Teardown(ctx, m.networkPod(sb)); err != nil {
			return err
		}
		if err := network.RemoveNetNS(rec.NetNS); err != nil {
			return err
		}
		sb.mu.Lock()
		sb.rec.NetworkDown = true
		sb.mu.Unlock()
	}
	if err := unmount(filepath.Join(m.podDir(rec.ID), "shm")); err != nil {
		return err
	}
	sb.mu.Lock()
	changed := sb.rec.State != stateNotReady
	sb.rec.State = stateNotReady
	sb.mu.Unlock()
	if changed {
		// The sandbox container outlived its kill: no exit event said so.
		defer m.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, rec.ID, rec.ID)
	}
	return m.saveSandbox(sb)
}

// isNotFound reports a missing object, from berth or from a shim.
func isNotFound(err error) bool {
	return errdefs.IsNotFound(err) || status.Code(err) == codes.NotFound
}

// RemovePodSandbox stops the pod if needed and frees all it holds. A
// missing pod is not an error.
func (m *Manager) RemovePodSandbox(ctx context.Context, id string) error {
	sb, err := m.getSandbox(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if sb.isRemoved() {
		return nil
	}
	if err := m.stopSandbox(ctx, sb); err != nil {
		return err
	}
	for _, c := range m.podContainers(sb.rec.ID) {
		c.op.Lock()
		err := m.removeContainer(ctx, c)
		c.op.Unlock()
		if err != nil {
			return err
		}
	}
	rec := sb.snapshot()
	if client, err := sb.client(); err == nil && !rec.Pinned {
		if _, err := client.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete sandbox container: %w", err)
		}
	} else if !rec.Pinned {
		m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
	}
	m.stopShim(sb)
	if err := removeDir(filepath.Join(m.ctrRootDir(), rec.ID)); err != nil {
		return err
	}
	if err := m.images.Release(rec.ID); err != nil {
		return err
	}
	if pod := (&spec.Pod{ID: rec.ID, Config: sb.cfg}); pod.OwnCgroup(m.host.CgroupDriver) {
		if err := m.cgroupReader().Remove(pod.CgroupParent(m.host.CgroupDriver)); err != nil {
			return fmt.Errorf("remove pod cgroup: %w", err)
		}
	}
	if err := removeDir(m.podDir(rec.ID)); err != nil {
		return err
	}
	if rec.NetNS != "" {
		if err := network.RemoveNetNS(rec.NetNS); err != nil {
			return err
		}
	}
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(bucketSandboxes, rec.ID) }); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.sandboxes, rec.ID)
	m.mu.Unlock()
	sb.mu.Lock()
	sb.removed = true
	sb.mu.Unlock()
	m.release(rec.Name, rec.ID)
	m.forgetStats(rec.ID)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, rec.ID, rec.ID)
	logctx.From(ctx, m.log).Info("pod sandbox removed", "id", rec.ID)
	return nil
}

// forceDeleteFromRuntime removes a container with the runtime binary
// directly, for pods whose shim is gone.
func (m *Manager) forceDeleteFromRuntime(ctx context.Context, h *oci.Handler, id string) {
	if out, err := h.Delete(ctx, id, true, "").CombinedOutput(); err != nil && !strings.Contains(string(out), "not exist") {
		m.log.Warn("runtime delete", "id", id, "err", err, "out", strings.TrimSpace(string(out)))
	}
}

// PodSandboxStatus reports a pod; verbose adds runtime details.
func (m *Manager) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error) {
	sb, err := m.getSandbox(id)
	if err != nil {
		return nil, nil, err
	}
	rec := sb.snapshot()
	st := &runtimeapi.PodSandboxStatus{
		Id:             rec.ID,
		Metadata:       sb.cfg.GetMetadata(),
		State:          criSandboxState(rec.State),
		CreatedAt:      rec.CreatedAt,
		Labels:         sb.cfg.GetLabels(),
		Annotations:    sb.cfg.GetAnnotations(),
		RuntimeHandler: rec.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: sb.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if st.Linux.Namespaces.Options == nil {
		st.Linux.Namespaces.Options = &runtimeapi.NamespaceOption{}
	}
	if !hostNetwork(sb.cfg) && len(rec.IPs) > 0 && rec.State == stateReady {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: rec.IPs[0]}
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	if !verbose {
		return st, nil, nil
	}
	info, err := json.Marshal(map[string]any{
		"pid": rec.PausePid, "netns": rec.NetNS, "network": rec.Network, "handler": rec.Handler,
		"runtime": sb.handler.Path, "image": rec.ImageID, "shimSocket": m.shimSocket(rec.ID),
	})
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": string(info)}, nil
}

func criSandboxState(s string) runtimeapi.PodSandboxState {
	if s == stateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// ListPodSandbox lists pods matching filter.
func (m *Manager) ListPodSandbox(ctx context.Context, f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	m.mu.Lock()
	sbs := make([]*sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		sbs = append(sbs, sb)
	}
	m.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, sb := range sbs {
		rec := sb.snapshot()
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		state := criSandboxState(rec.State)
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		if !matchLabels(sb.cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id: rec.ID, Metadata: sb.cfg.GetMetadata(), State: state, CreatedAt: rec.CreatedAt,
			Labels: sb.cfg.GetLabels(), Annotations: sb.cfg.GetAnnotations(), RuntimeHandler: rec.Handler,
		})
	}
	return out
}
