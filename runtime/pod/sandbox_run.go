package pod

import (
	"context"
	"fmt"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/pinns"
	"github.com/berthrt/berth/runtime/shim"
	"github.com/berthrt/berth/runtime/spec"
)

// ensureImage returns the image ref names, pulling it when missing.
func (m *Manager) ensureImage(ctx context.Context, ref string) (*image.Image, error) {
	img, err := m.images.Get(ref)
	if errdefs.IsNotFound(err) {
		return m.images.Pull(ctx, ref, nil)
	}
	return img, err
}

// RunPodSandbox creates and starts a pod: its network namespace wired by
// CNI, its shim, and its sandbox container. The network is set up while
// the sandbox container is created.
func (m *Manager) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handlerName string) (string, error) {
	return m.runPodSandbox(ctx, cfg, handlerName, nil)
}

// sandboxRestore makes runPodSandbox restore the pod's sandbox container
// from a gVisor image instead of starting it (RestorePod on runsc).
type sandboxRestore struct {
	// prepare runs once the new pod's directory and /dev/shm exist,
	// before its shim and sandbox container: it restores /dev/shm and
	// puts the sandbox's image in the pod's directory, whose path it
	// returns.
	prepare func(ctx context.Context, sb *sandbox) (string, error)
}

func (m *Manager) runPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handlerName string, restore *sandboxRestore) (_ string, err error) {
	if cfg == nil {
		return "", errdefs.InvalidArgument("config is required")
	}
	// Refused before anything is made: a pod without a sandbox container
	// has no spec of its own where the request would be seen.
	if err := spec.CheckSandboxSecurity(m.host, cfg); err != nil {
		return "", err
	}
	if err := spec.CheckCgroupParent(m.host, cfg); err != nil {
		return "", err
	}
	log := logctx.From(ctx, m.log)
	md := cfg.GetMetadata()
	if md.GetName() == "" {
		return "", errdefs.InvalidArgument("sandbox metadata.name is required")
	}
	h, err := m.handlers.Get(handlerName)
	if err != nil {
		return "", err
	}
	sizing, err := m.planPodSizing(h, cfg, cfg.GetLinux().GetOverhead(), cfg.GetLinux().GetResources())
	if err != nil {
		return "", err
	}
	id := newID()
	name := sandboxName(md)
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	if err := m.reserveName(&u, name, id); err != nil {
		return "", err
	}

	rawCfg, err := proto.Marshal(cfg)
	if err != nil {
		return "", err
	}
	sb := &sandbox{
		rec:         sandboxRecord{ID: id, Name: name, Config: rawCfg, Handler: h.Name, State: stateCreating, CreatedAt: nowNano()},
		cfg:         cfg,
		handler:     h,
		pauseExited: make(chan struct{}),
	}
	// Checked for every pod: not every runtime refuses a node-wide sysctl.
	sysctls, err := podSysctls(cfg)
	if err != nil {
		return "", err
	}
	userns, err := parseUserNS(cfg)
	if err != nil {
		return "", err
	}
	if userns != nil {
		if err := checkUserNSHandler(h); err != nil {
			return "", err
		}
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
	} else {
		sb.rec.Pinned = true
	}
	plan, err := m.planSysctls(h, cfg, sb.rec.Pinned || userns != nil, userns, sysctls)
	if err != nil {
		return "", err
	}
	sb.sandboxSysctls = plan.sandbox
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
	u.add(func() { _ = m.removeDir(dir) })
	if err := writePodFiles(dir, cfg, userns); err != nil {
		return "", err
	}
	if !hostIPC(cfg) {
		if err := m.mountShm(filepath.Join(dir, "shm"), userns); err != nil {
			return "", err
		}
	}
	var restoreImage string
	if restore != nil {
		if sb.rec.Pinned {
			return "", errdefs.FailedPrecondition("handler %s runs pods without a sandbox container: it cannot restore a sandbox image", h.Name)
		}
		if restoreImage, err = restore.prepare(ctx, sb); err != nil {
			return "", err
		}
	}

	// Network, in parallel with the shim and the sandbox container.
	netDone := make(chan struct{})
	var netErr error
	if sb.rec.NetNS != "" {
		if userns != nil {
			// Its network, IPC and UTS namespaces are made inside it.
			u.add(func() { _ = m.ns.RemoveNetNS(sb.rec.NetNS) })
			if err := m.pinUserNamespaces(sb, userns); err != nil {
				return "", err
			}
		} else {
			if err := m.ns.NewNetNS(sb.rec.NetNS); err != nil {
				return "", err
			}
			u.add(func() { _ = m.ns.RemoveNetNS(sb.rec.NetNS) })
		}
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
			// After ADD: per-interface sysctls need the interfaces (and
			// a plugin may set some itself).
			if len(plan.net) > 0 {
				netErr = m.ns.Enter(np.NetNS, pinns.Net, func() error { return pinns.WriteSysctls(plan.net) })
			}
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

	if sb.rec.Pinned || userns != nil {
		// Undone with the pod's directory.
		if err := m.pinNamespaces(sb, plan.pinned, userns != nil); err != nil {
			return "", err
		}
	}

	// Sized before anything runs in it (sandbox_resources.go).
	if err := m.sizeNewPod(sb, sizing, &u); err != nil {
		return "", err
	}
	// After the sandbox container's delete (undone first): its scope made
	// the pod's slice.
	u.add(func() { _ = m.removePodSlice(ctx, sb) })
	client, err := m.shims.Spawn(ctx, shim.SpawnOptions{
		Binary: m.shimBin, PodID: id, StateDir: dir, Socket: m.shimSocket(id), Runtime: podRuntime(h, cfg, m.host.CgroupDriver), LogLevel: m.logLevel,
	})
	if err != nil {
		return "", err
	}
	sb.shim = client
	u.add(func() { m.stopShim(sb) })

	if restoreImage != "" {
		// gVisor's restore takes the pod's addresses from its network
		// namespace as it finds it then: CNI has to be done.
		if <-netDone; netErr != nil {
			return "", fmt.Errorf("pod network: %w", netErr)
		}
	}
	if !sb.rec.Pinned {
		pid, err := m.startSandboxContainer(ctx, sb, &u, pauseImg, pauseCfg, restoreImage)
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
	// NRI plugins see the pod set up, before anyone can list it.
	unblock, err := m.nriRunPod(ctx, sb, &u)
	defer unblock()
	if err != nil {
		return "", err
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
	go m.watchShim(sb) //nolint:gosec // the watcher follows the shim for the pod's life, not this request's
	m.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id, id)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id, id)
	log.Info("pod sandbox running", "id", id, "name", name, "handler", h.Name, "ips", sb.rec.IPs, "sandboxContainer", !sb.rec.Pinned)
	return id, nil
}

// startSandboxContainer creates and starts the pod's sandbox container
// through its shim and returns its pid; u collects the undo steps.
// With restoreImage, the shim restores it from that gVisor image at start.
func (m *Manager) startSandboxContainer(ctx context.Context, sb *sandbox, u *undo, pauseImg *image.Image, pauseCfg *v1.ConfigFile, restoreImage string) (int, error) {
	id, h, client, dir := sb.rec.ID, sb.handler, sb.shim, m.podDir(sb.rec.ID)
	bundle := filepath.Join(dir, "pause")
	lowers, err := m.images.Lease(id, pauseImg.ID)
	if err != nil {
		return 0, err
	}
	u.add(func() { _ = m.images.Release(id) })
	rw := filepath.Join(m.ctrRootDir(), id)
	// Before the mount: a failed mount leaves rw made.
	u.add(func() { _ = m.removeDir(rw) })
	if err := m.mountRootfs(lowers, rw, filepath.Join(bundle, "rootfs"), m.idmapFor(sb)); err != nil {
		return 0, err
	}
	s, err := spec.Sandbox(specTarget(h), m.host, m.specPod(sb, dir), pauseCfg, filepath.Join(bundle, "rootfs"))
	if err != nil {
		return 0, err
	}
	if err := m.sizeSandboxSpec(sb, s); err != nil {
		return 0, err
	}
	if err := writeSpec(bundle, s); err != nil {
		return 0, err
	}
	if u := sb.userNS(); u != nil {
		for _, d := range []string{dir, bundle} {
			if err := podTraversable(d, u.rootUID()); err != nil {
				return 0, err
			}
		}
	}
	memCg := spec.MemoryCgroupDir(m.host, s.Linux.CgroupsPath)
	creq := &shimv1.CreateRequest{Id: id, Bundle: bundle, MemoryCgroup: memCg}
	if restoreImage != "" {
		creq.Restore = &shimv1.RestoreOptions{ImagePath: restoreImage}
	}
	st, err := client.Create(ctx, creq)
	if err != nil {
		return 0, fmt.Errorf("create sandbox container: %w", err)
	}
	u.add(func() { _, _ = client.Delete(context.WithoutCancel(ctx), &shimv1.DeleteRequest{Id: id, Force: true}) })
	started, err := client.Start(ctx, &shimv1.IDRequest{Id: id})
	if err != nil {
		if restoreImage != "" {
			return 0, fmt.Errorf("restore sandbox container: %w", err)
		}
		return 0, fmt.Errorf("start sandbox container: %w", err)
	}
	if restoreImage != "" {
		// A restored container has its pid once restored.
		return int(started.Pid), nil
	}
	return int(st.Pid), nil
}
