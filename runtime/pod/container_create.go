package pod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/spec"
)

// CreateContainer creates a container in a ready pod: the image's layers
// under an overlay rootfs, the OCI spec, and the container in the shim.
func (m *Manager) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (_ string, err error) {
	if cfg == nil || podID == "" {
		return "", errdefs.InvalidArgument("pod sandbox ID and config are required")
	}
	sb, err := m.getSandbox(podID)
	if err != nil {
		return "", err
	}
	sbRec := sb.snapshot()
	if sbRec.State != stateReady {
		return "", errdefs.FailedPrecondition("pod sandbox %s is not ready", sbRec.ID)
	}
	// A checkpoint as the image: the checkpointed container's config,
	// restored at start (container_restore.go).
	cfg, restore, err := m.restoreConfig(sb, cfg)
	if err != nil {
		return "", err
	}
	defer restore.done()
	return m.createContainer(ctx, sb, cfg, restore)
}

// createContainer creates cfg in the pod sb; with restore, the container
// is restored from that checkpoint at start (RestorePod comes here too).
func (m *Manager) createContainer(ctx context.Context, sb *sandbox, cfg *runtimeapi.ContainerConfig, restore *restoreSource) (_ string, err error) {
	sbRec := sb.snapshot()
	md := cfg.GetMetadata()
	if md.GetName() == "" {
		return "", errdefs.InvalidArgument("container metadata.name is required")
	}
	imageName := cfg.GetImage().GetImage()
	if imageName == "" {
		return "", errdefs.InvalidArgument("container image is required")
	}
	img, err := m.images.Get(imageName)
	if err != nil {
		return "", fmt.Errorf("container image: %w", err)
	}
	imgCfg, err := m.images.Config(img.ID)
	if err != nil {
		return "", err
	}
	if err := checkContainerUserNS(sb.cfg, cfg); err != nil {
		return "", err
	}
	client, err := sb.client()
	if err != nil {
		return "", err
	}
	id := newID()
	pmd := sb.cfg.GetMetadata()
	name := strings.Join([]string{md.GetName(), pmd.GetName(), pmd.GetNamespace(), pmd.GetUid(), strconv.FormatUint(uint64(md.GetAttempt()), 10)}, "_")
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
	statusName, imageRef := imageNames(cfg.GetImage(), img)
	c := &container{
		rec: containerRecord{ID: id, SandboxID: sbRec.ID, Name: name, Config: rawCfg, ImageName: statusName,
			ImageRef: imageRef, ImageID: img.ID, State: stateCreating, CreatedAt: nowNano()},
		cfg:    cfg,
		exited: make(chan struct{}),
	}
	if err := m.saveContainer(c); err != nil {
		return "", err
	}
	u.add(func() { m.deleteRecord(bucketContainers, id) })

	lowers, err := m.images.Lease(id, img.ID)
	if err != nil {
		return "", err
	}
	u.add(func() { _ = m.images.Release(id) })
	bundle, rw := m.ctrBundle(id), filepath.Join(m.ctrRootDir(), id)
	rootfs := filepath.Join(bundle, "rootfs")
	u.add(func() { _ = m.removeDir(bundle); _ = m.removeDir(rw) })
	if err := restore.unpack(ctx, sb, cfg, rw, lowers); err != nil {
		return "", err
	}
	im := m.idmapFor(sb)
	if err := m.mountRootfs(lowers, rw, rootfs, im); err != nil {
		return "", err
	}
	volumes, volumeRefs, releaseVolumes, err := m.mountImageVolumes(id, bundle, cfg, im)
	if err != nil {
		return "", err
	}
	u.add(releaseVolumes)
	in := spec.Container{ID: id, Config: cfg, Image: imgCfg, ImageName: imageAnnotation(cfg.GetImage(), statusName), Rootfs: rootfs, ImageVolumes: volumes}
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := m.getContainer(ns.GetTargetId())
		if err != nil {
			return "", fmt.Errorf("target container of the PID namespace: %w", err)
		}
		tr := target.snapshot()
		if tr.SandboxID != sbRec.ID {
			// As containerd: a container joins only its own pod's processes.
			return "", errdefs.InvalidArgument("NamespaceOption.target_id %s is a container of another pod", tr.ID)
		}
		in.TargetPid = tr.Pid
	}
	s, user, err := spec.ForContainer(specTarget(sb.handler), m.host, m.specPod(sb, m.podDir(sbRec.ID)), in)
	if err != nil {
		return "", err
	}
	if err := m.relabel(m.specPod(sb, m.podDir(sbRec.ID)), cfg, s); err != nil {
		return "", err
	}
	if err := m.injectCDI(s, cfg); err != nil {
		return "", err
	}
	// NRI plugins adjust the spec last, as in containerd.
	unblock, err := m.nriCreateContainer(ctx, sb, c, s, &u)
	defer unblock()
	if err != nil {
		return "", err
	}
	if err := writeSpec(bundle, s); err != nil {
		return "", err
	}
	if im != nil {
		if err := podTraversable(bundle, im.uid); err != nil {
			return "", err
		}
	}
	logPath := ""
	if dir, p := sb.cfg.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		logPath = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil { //nolint:gosec // the kubelet's pod log dir, read by log collectors, 0755 as the kubelet makes it
			return "", err
		}
	}
	st, err := client.Create(ctx, &shimv1.CreateRequest{
		Id: id, Bundle: bundle, LogPath: logPath, Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		MemoryCgroup: spec.MemoryCgroupDir(m.host, s.Linux.CgroupsPath), Restore: restore.shimOptions(rw),
	})
	if err != nil {
		return "", err
	}
	if err := m.syncScope(ctx, sb, id); err != nil {
		_, _ = client.Delete(context.WithoutCancel(ctx), &shimv1.DeleteRequest{Id: id, Force: true})
		return "", err
	}

	c.process = s.Process
	c.mu.Lock()
	c.rec.State = stateCreated
	c.rec.Pid = int(st.Pid)
	c.rec.LogPath = logPath
	c.rec.StopSignal = stopSignal(cfg, imgCfg.Config.StopSignal)
	c.rec.UID, c.rec.GID = int64(user.UID), int64(user.GID)
	for _, g := range user.AdditionalGids {
		c.rec.Groups = append(c.rec.Groups, int64(g))
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		c.rec.Resources, _ = proto.Marshal(r)
	}
	c.rec.VolumeRefs = volumeRefs
	c.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		_, _ = client.Delete(context.WithoutCancel(ctx), &shimv1.DeleteRequest{Id: id, Force: true})
		return "", err
	}
	m.mu.Lock()
	m.containers[id] = c
	m.mu.Unlock()
	m.nriContainerCreated(ctx, sb, c, s)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id, sbRec.ID)
	logctx.From(ctx, m.log).Info("container created", "id", id, "name", name, "pod", sbRec.ID, "image", imageName)
	return id, nil
}

// stopSignal is the CRI stop signal, else the image's STOPSIGNAL, else
// SIGTERM.
func stopSignal(cfg *runtimeapi.ContainerConfig, imageSignal string) int {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		if n, ok := spec.ParseSignal(strings.TrimPrefix(s.String(), "SIGNAL_")); ok {
			return n
		}
	}
	if n, ok := spec.ParseSignal(imageSignal); ok {
		return n
	}
	return int(unix.SIGTERM)
}
