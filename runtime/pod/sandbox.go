package pod

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
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
	// Resized: the pod-level resources of the last
	// UpdatePodSandboxResources; nil before one (and in older records),
	// when they are the config's (sandbox_update.go).
	Resized *podResources `json:"resized,omitempty"`
}

// sandbox is a pod in memory.
type sandbox struct {
	// op serialises lifecycle operations on the pod.
	op sync.Mutex

	mu      sync.Mutex // guards rec and shim
	rec     sandboxRecord
	cfg     *runtimeapi.PodSandboxConfig
	handler *oci.Handler
	shim    shimClient
	// pauseExited is closed when the sandbox container's exit is known.
	pauseExited chan struct{}
	// stopping is set while StopPodSandbox ends the pod on purpose.
	stopping bool
	// removed is set when RemovePodSandbox is done: a call that waited for
	// the pod's lock finds nothing left to do.
	removed   bool
	pauseOnce sync.Once
	// sandboxSysctls are the sysctls the sandbox container's runtime sets
	// (see planSysctls); needed only while it is created.
	sandboxSysctls map[string]string
	// wire is the pod's ListPodSandbox item, encoded (list_wire.go).
	wire wireItem[string]
}

func (sb *sandbox) snapshot() sandboxRecord {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	r := sb.rec
	r.IPs = append([]string(nil), sb.rec.IPs...)
	return r
}

func (sb *sandbox) client() (shimClient, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.shim == nil {
		return nil, errdefs.Unavailable("shim of pod %s is gone", sb.rec.ID)
	}
	return sb.shim, nil
}

func (sb *sandbox) markPauseExited() { sb.pauseOnce.Do(func() { close(sb.pauseExited) }) }

func (sb *sandbox) isRemoved() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.removed
}

func (m *Manager) saveSandbox(sb *sandbox) error {
	rec := sb.snapshot()
	return m.db.Group(func(tx *store.Tx) error { return tx.Put(bucketSandboxes, rec.ID, rec) })
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
	if !h.Traits().PinnedPods {
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
// shares the node's) and sets its sysctls in them; made enters the ones
// pinUserNamespaces made instead.
func (m *Manager) pinNamespaces(sb *sandbox, sysctls map[pinns.Kind]map[string]string, made bool) error {
	id := sb.rec.ID
	pin := m.ns.Pin
	if made {
		pin = m.ns.Enter
	}
	if !hostIPC(sb.cfg) {
		if err := pin(m.pinnedNS(id, pinns.IPC), pinns.IPC, func() error {
			return pinns.WriteSysctls(sysctls[pinns.IPC])
		}); err != nil {
			return err
		}
	}
	if !hostNetwork(sb.cfg) {
		hostname := sb.cfg.GetHostname()
		if err := pin(m.pinnedNS(id, pinns.UTS), pinns.UTS, func() error {
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

// podRuntime is the handler's runtime as this pod's shim runs it: gVisor
// serves a host-network pod from the host's network stack; with the
// systemd cgroup driver the runtime makes each container's cgroup as a
// scope through systemd (runc, crun and runsc share the flag, and read
// cgroupsPath as slice:prefix:name then).
func podRuntime(h *oci.Handler, cfg *runtimeapi.PodSandboxConfig, cgroupDriver string) *oci.Runtime {
	rt := *h.Runtime
	if args := rt.Traits().HostNetworkArgs; len(args) > 0 && hostNetwork(cfg) {
		rt.Args = append(slices.Clone(rt.Args), args...)
	}
	if cgroupDriver == "systemd" {
		rt.Args = append(slices.Clone(rt.Args), "--systemd-cgroup")
	}
	return &rt
}

func (m *Manager) networkPod(sb *sandbox) network.Pod {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	md := sb.cfg.GetMetadata()
	p := network.Pod{ID: sb.rec.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), NetNS: sb.rec.NetNS, Network: sb.rec.Network,
		Annotations: sb.cfg.GetAnnotations()}
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
	u := sb.userNS()
	pinned := rec.Pinned || u != nil
	if !hostIPC(sb.cfg) {
		p.Shm = filepath.Join(dir, "shm")
		if pinned {
			p.IPCNS = m.pinnedNS(rec.ID, pinns.IPC)
		}
	}
	if pinned && !hostNetwork(sb.cfg) {
		p.UTSNS = m.pinnedNS(rec.ID, pinns.UTS)
	}
	if u != nil {
		p.UserNS, p.UIDs, p.GIDs = m.pinnedNS(rec.ID, pinns.User), u.UIDs, u.GIDs
	}
	p.Sysctls = sb.sandboxSysctls
	return p
}
