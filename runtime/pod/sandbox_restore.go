package pod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/archive"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/oci"
)

// RestorePodRequest is the CRI's RestorePodRequest, with the server's own
// refusals.
type RestorePodRequest struct {
	// Path is the pod checkpoint (CheckpointPod's output_path); nothing
	// of it changes.
	Path string
	// Config is the new pod's config; nil takes the checkpointed one.
	Config *runtimeapi.PodSandboxConfig
	// Handler names the runtime handler ("" the default); it must run
	// the runtime family the checkpoint was made with.
	Handler string
	// Options must be empty: berth has none.
	Options map[string]string
	// Containers are the restore-time configs, matched to the
	// checkpointed containers by metadata name; none takes the
	// checkpointed ones.
	Containers []*runtimeapi.ContainerConfig
	// Check refuses configs berth cannot honour (the server's
	// checkPodConfig and checkContainerConfig); it sees the configs
	// actually restored, the checkpointed ones too.
	Check func(*runtimeapi.PodSandboxConfig, []*runtimeapi.ContainerConfig) error
}

// RestoredContainer is one container RestorePod created.
type RestoredContainer struct{ Name, ID string }

// podRestore is a pod checkpoint read and matched to the request.
type podRestore struct {
	dump    *checkpoint.PodDump
	old     *runtimeapi.PodSandboxConfig // the checkpointed pod's config
	cfg     *runtimeapi.PodSandboxConfig // the new pod's
	handler *oci.Handler
	ctrs    []*runtimeapi.ContainerConfig // in dump.Containers' order
	srcs    []*restoreSource
}

// RestorePod creates a new pod from a pod checkpoint and, in it, every
// checkpointed container, CREATED (the CRI's RestorePod): the caller
// starts each, and StartContainer restores its processes (runc restore),
// as for a container restored alone. The pod's /dev/shm is restored
// before any container is created (its UTS names CRIU restores with each
// container). On error, the new pod and its containers are removed.
//
// A gVisor checkpoint (runsc) is one image of the whole sandbox: the new
// pod's sandbox container is restored from it (runsc restore) instead of
// started, and StartContainer of each container is its runsc restore,
// which joins the sandbox; its kernel resumes when the last has.
func (m *Manager) RestorePod(ctx context.Context, req RestorePodRequest) (_ string, _ []RestoredContainer, err error) {
	r, err := m.readPodRestore(req)
	if err != nil {
		return "", nil, err
	}
	var restore *sandboxRestore
	if r.dump.Kind() == checkpoint.ImagesGVisor {
		restore = &sandboxRestore{prepare: func(ctx context.Context, sb *sandbox) (string, error) {
			return m.prepareSandboxRestore(ctx, sb, r, req.Path)
		}}
	}
	podID, err := m.runPodSandbox(ctx, r.cfg, r.handler.Name, restore)
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			if rerr := m.RemovePodSandbox(context.WithoutCancel(ctx), podID); rerr != nil {
				logctx.From(ctx, m.log).Error("remove the pod of a failed restore", "id", podID, "err", rerr)
			}
		}
	}()
	sb, err := m.getSandbox(podID)
	if err != nil {
		return "", nil, err
	}
	if err := m.podCheckpointable(sb); err != nil {
		return "", nil, err
	}
	if restore == nil {
		if err := m.restorePodState(ctx, sb, r, req.Path); err != nil {
			return "", nil, err
		}
	}
	out := make([]RestoredContainer, 0, len(r.ctrs))
	for i, cfg := range r.ctrs {
		if restore != nil {
			// Each joins the restored sandbox at start; the image is
			// the sandbox's (runsc wants a path, and reads nothing from
			// it for a container that is not the sandbox's).
			r.srcs[i].sandboxImage = m.sandboxImageDir(podID)
		}
		id, err := m.createContainer(ctx, sb, cfg, r.srcs[i])
		if err != nil {
			return "", nil, fmt.Errorf("restore container %s: %w", cfg.GetMetadata().GetName(), err)
		}
		out = append(out, RestoredContainer{Name: cfg.GetMetadata().GetName(), ID: id})
	}
	logctx.From(ctx, m.log).Info("pod restored", "id", podID, "from", req.Path, "checkpointed", r.dump.ID, "containers", len(out), "images", r.dump.Kind())
	return podID, out, nil
}

// sandboxImageDir is where a gVisor pod being restored keeps its copy of
// the sandbox's image, until its sandbox container's restore has opened
// it.
func (m *Manager) sandboxImageDir(podID string) string {
	return filepath.Join(m.podDir(podID), "gvisor-restore")
}

// prepareSandboxRestore readies a new gVisor pod for its sandbox's
// restore: its /dev/shm back (the sandbox reopens the files it had open
// there when its kernel is restored) and the image copied into the pod's
// directory.
func (m *Manager) prepareSandboxRestore(ctx context.Context, sb *sandbox, r *podRestore, path string) (string, error) {
	dst := m.sandboxImageDir(sb.snapshot().ID)
	if err := PrivateDir(dst); err != nil {
		return "", err
	}
	if err := checkpoint.CopyGVisorImage(ctx, path, dst); err != nil {
		return "", errdefs.InvalidArgument("pod checkpoint %s: %v", path, err)
	}
	if err := m.restorePodState(ctx, sb, r, path); err != nil {
		return "", err
	}
	return dst, nil
}

// readPodRestore reads the checkpoint and matches the request to it,
// before anything is made.
func (m *Manager) readPodRestore(req RestorePodRequest) (*podRestore, error) {
	if req.Path == "" || !filepath.IsAbs(req.Path) {
		return nil, errdefs.InvalidArgument("checkpoint_path must be an absolute path, not %q", req.Path)
	}
	if len(req.Options) > 0 {
		return nil, errdefs.InvalidArgument("RestorePodRequest.options: berth takes no restore options (given %s)", optionKeys(req.Options))
	}
	h, err := m.handlers.Get(req.Handler)
	if err != nil {
		return nil, err
	}
	if why := handlerKind(h).PodCheckpointUnsupported(); why != "" {
		return nil, errdefs.Errorf(errdefs.ErrUnimplemented, "RestorePod: %s", why)
	}
	d, err := checkpoint.ReadPodDump(req.Path)
	if err != nil {
		return nil, errdefs.InvalidArgument("pod checkpoint %s: %v", req.Path, err)
	}
	r := &podRestore{dump: d, old: &runtimeapi.PodSandboxConfig{}, handler: h}
	if err := protojson.Unmarshal(d.Config, r.old); err != nil {
		return nil, errdefs.InvalidArgument("pod checkpoint %s: pod config: %v", req.Path, err)
	}
	k := handlerKind(r.handler)
	want := checkpoint.ImagesCRIU
	if k.Traits().SandboxCheckpoint {
		want = checkpoint.ImagesGVisor
	}
	if d.Kind() != want {
		return nil, errdefs.FailedPrecondition("pod checkpoint %s holds %s images (made on %s handler %s); handler %s runs %s, which restores %s images only",
			req.Path, d.Kind(), d.RuntimeKind, d.Handler, r.handler.Name, k, want)
	}
	if string(k) != d.RuntimeKind {
		return nil, errdefs.FailedPrecondition("the checkpoint was made on a %s handler (%s); handler %s runs %s", d.RuntimeKind, d.Handler, r.handler.Name, k)
	}
	// The checkpoint is input, whoever wrote it: the pod's and the
	// containers' configs (namespaces, privileges, host paths) are the
	// request's, as the CRI asks, never the checkpoint's.
	r.cfg = req.Config
	if r.cfg == nil {
		return nil, errdefs.InvalidArgument("RestorePodRequest.config is required: the restored pod's config is never taken from the checkpoint")
	}
	if err := compatiblePod(r.old, r.cfg); err != nil {
		return nil, err
	}
	if u, err := parseUserNS(r.cfg); err != nil {
		return nil, err
	} else if u != nil {
		return nil, errdefs.FailedPrecondition("pods with a user namespace (hostUsers: false) cannot be restored")
	}
	if err := m.matchContainers(r, req); err != nil {
		return nil, err
	}
	if req.Check != nil {
		if err := req.Check(r.cfg, r.ctrs); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// compatiblePod refuses a restore-time pod config the checkpointed
// processes cannot be put back into: other namespaces (runc has CRIU
// join the pod's, which must be of the same kinds), or another host name
// (CRIU sets the checkpointed one in the pod's UTS namespace again).
func compatiblePod(old, cfg *runtimeapi.PodSandboxConfig) error {
	a, b := old.GetLinux().GetSecurityContext().GetNamespaceOptions(), cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if a.GetNetwork() != b.GetNetwork() || a.GetPid() != b.GetPid() || a.GetIpc() != b.GetIpc() {
		return errdefs.FailedPrecondition("the pod's namespace options (network %s, pid %s, ipc %s) differ from the checkpointed pod's (%s, %s, %s)",
			b.GetNetwork(), b.GetPid(), b.GetIpc(), a.GetNetwork(), a.GetPid(), a.GetIpc())
	}
	if !hostNetwork(cfg) && cfg.GetHostname() != old.GetHostname() {
		return errdefs.FailedPrecondition("hostname %q: CRIU gives the restored processes the checkpointed pod's host name (its config named %q)", cfg.GetHostname(), old.GetHostname())
	}
	return nil
}

// restorePodState puts the checkpointed pod's /dev/shm into the new
// pod's, through berth's layer unpacker (the checkpoint is input). CRIU
// does not: /dev/shm is a bind mount from outside the containers, which
// runc has it leave alone.
func (m *Manager) restorePodState(ctx context.Context, sb *sandbox, r *podRestore, path string) error {
	if !r.dump.Shm {
		return nil
	}
	if err := restoreShm(ctx, path, filepath.Join(m.podDir(sb.snapshot().ID), "shm")); err != nil {
		return fmt.Errorf("restore the pod's /dev/shm: %w", err)
	}
	return nil
}

func restoreShm(ctx context.Context, path, shm string) error {
	root, err := os.OpenRoot(path)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	f, err := root.OpenFile(checkpoint.ShmTar, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", checkpoint.ShmTar)
	}
	_, err = archive.Apply(ctx, f, shm, archive.Options{})
	return err
}
