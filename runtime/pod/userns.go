package pod

import (
	"math"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
)

// userNS is a pod's user namespace: its mappings (container to host).
type userNS struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// rootUID and rootGID are the host ids of root in the pod.
func (u *userNS) rootUID() int { return int(u.UIDs[0].HostID) }
func (u *userNS) rootGID() int { return int(u.GIDs[0].HostID) }

// parseUserNS reads a pod's user namespace request: nil for the node's
// (mode NODE, or no request: older kubelets send none). As the kubelet
// asks and containerd and CRI-O check: one uid and one gid range, each
// mapping root, none mapping the host's root, and no namespace of the
// node's besides.
func parseUserNS(cfg *runtimeapi.PodSandboxConfig) (*userNS, error) {
	const field = "NamespaceOption.userns_options"
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	opt := ns.GetUsernsOptions()
	switch opt.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(opt.GetUids())+len(opt.GetGids()) > 0 {
			return nil, errdefs.InvalidArgument("%s: mode NODE takes no uid or gid mappings", field)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
		if opt == nil {
			return nil, nil
		}
	default:
		return nil, errdefs.InvalidArgument("%s: mode %s is not supported: a pod's user namespace is POD or NODE", field, opt.GetMode())
	}
	for _, kind := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()}} {
		if kind.mode == runtimeapi.NamespaceMode_NODE {
			return nil, errdefs.InvalidArgument("%s: a pod in a user namespace cannot share the node's %s namespace", field, kind.name)
		}
	}
	uids, err := idMappings(field+".uids", opt.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := idMappings(field+".gids", opt.GetGids())
	if err != nil {
		return nil, err
	}
	return &userNS{UIDs: uids, GIDs: gids}, nil
}

// checkUserNSHandler refuses a user namespace on a handler whose runtime
// lacks user namespaces or idmapped mounts (what `crictl info` says).
func checkUserNSHandler(h *oci.Handler) error {
	if !handlerFeatures(h).UserNamespaces {
		return errdefs.FailedPrecondition("NamespaceOption.userns_options: handler %q (%s) has no user namespaces with idmapped mounts", h.Name, h.Path)
	}
	return nil
}

// userNS is the pod's user namespace, nil for the node's (checked when
// the pod ran).
func (sb *sandbox) userNS() *userNS {
	u, _ := parseUserNS(sb.cfg)
	return u
}

func idMappings(field string, in []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(in) != 1 {
		return nil, errdefs.InvalidArgument("%s: want exactly one mapping, got %d", field, len(in))
	}
	m := in[0]
	switch {
	case m.GetContainerId() != 0:
		return nil, errdefs.InvalidArgument("%s: the mapping must start at container id 0 (root), not %d", field, m.GetContainerId())
	case m.GetLength() == 0:
		return nil, errdefs.InvalidArgument("%s: empty mapping", field)
	case m.GetHostId() == 0:
		return nil, errdefs.InvalidArgument("%s: the pod's root would be the host's root", field)
	case uint64(m.GetHostId())+uint64(m.GetLength()) > math.MaxUint32:
		return nil, errdefs.InvalidArgument("%s: host ids %d+%d overflow", field, m.GetHostId(), m.GetLength())
	}
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// checkContainerUserNS refuses a container whose user namespace request
// differs from its pod's: a container cannot leave its pod's.
func checkContainerUserNS(pod *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig) error {
	want := pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	got := ctr.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if got == nil || proto.Equal(got, want) {
		return nil
	}
	// An empty request and NODE are the same request.
	if want.GetMode() == runtimeapi.NamespaceMode_NODE && got.GetMode() == runtimeapi.NamespaceMode_NODE && len(got.GetUids())+len(got.GetGids()) == 0 {
		return nil
	}
	return errdefs.InvalidArgument("LinuxContainerSecurityContext.namespace_options.userns_options: differs from the pod's (%v vs %v): a container shares its pod's user namespace", got, want)
}

// pinUserNamespaces makes a pod's user namespace and, owned by it, the
// pod's network, IPC and UTS namespaces, all pinned, with the loopback up.
func (m *Manager) pinUserNamespaces(sb *sandbox, u *userNS) error {
	id := sb.rec.ID
	owned := map[pinns.Kind]string{
		pinns.IPC: m.pinnedNS(id, pinns.IPC),
		pinns.UTS: m.pinnedNS(id, pinns.UTS),
		pinns.Net: sb.rec.NetNS,
	}
	if err := os.MkdirAll(m.netnsDir(), 0o700); err != nil {
		return err
	}
	if err := m.ns.PinUser(pinns.UserNS{Path: m.pinnedNS(id, pinns.User), UIDs: u.UIDs, GIDs: u.GIDs, Owned: owned}); err != nil {
		return err
	}
	return m.ns.LoopbackUp(sb.rec.NetNS)
}
