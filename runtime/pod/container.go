package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/spec"
	"github.com/berthrt/berth/runtime/store"
)

// containerRecord is a container as stored.
type containerRecord struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandboxID"`
	Name      string `json:"name"`
	Config    []byte `json:"config"` // ContainerConfig, protobuf
	// ImageName is the image as requested, ImageRef its digest reference
	// (or ID), ImageID the config digest.
	ImageName  string  `json:"imageName"`
	ImageRef   string  `json:"imageRef"`
	ImageID    string  `json:"imageID"`
	State      string  `json:"state"`
	CreatedAt  int64   `json:"createdAt"`
	StartedAt  int64   `json:"startedAt,omitempty"`
	FinishedAt int64   `json:"finishedAt,omitempty"`
	ExitCode   int32   `json:"exitCode,omitempty"`
	OOMKilled  bool    `json:"oomKilled,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Message    string  `json:"message,omitempty"`
	Pid        int     `json:"pid,omitempty"`
	LogPath    string  `json:"logPath,omitempty"`
	StopSignal int     `json:"stopSignal"`
	UID        int64   `json:"uid"`
	GID        int64   `json:"gid"`
	Groups     []int64 `json:"groups,omitempty"`
	// Resources as last set (UpdateContainerResources changes them).
	Resources []byte `json:"resources,omitempty"` // LinuxContainerResources, protobuf
	// VolumeRefs are the image IDs of image volumes, by container path.
	VolumeRefs map[string]string `json:"volumeRefs,omitempty"`
}

// container is a container in memory.
type container struct {
	op sync.Mutex // serialises lifecycle operations

	mu  sync.Mutex // guards rec
	rec containerRecord
	cfg *runtimeapi.ContainerConfig
	// process is the OCI process of the container, the template of its
	// ExecSync processes.
	process *specs.Process
	exited  chan struct{}
	once    sync.Once
	// removed is set once RemoveContainer is done (guarded by mu).
	removed bool
}

func (c *container) isRemoved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

func (c *container) snapshot() containerRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

func (c *container) markExited() { c.once.Do(func() { close(c.exited) }) }

func (m *Manager) saveContainer(c *container) error {
	rec := c.snapshot()
	return m.db.Update(func(tx *store.Tx) error { return tx.Put(bucketContainers, rec.ID, rec) })
}

func (m *Manager) ctrBundle(id string) string { return filepath.Join(m.ctrStateDir(), id) }

// CreateContainer creates a container in a ready pod: the image's layers
// under an overlay rootfs, the OCI spec, and the container in the shim.
func (m *Manager) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (_ string, err error) {
	sb, err := m.getSandbox(podID)
	if err != nil {
		return "", err
	}
	sbRec := sb.snapshot()
	if sbRec.State != stateReady {
		return "", errdefs.FailedPrecondition("pod sandbox %s is not ready", sbRec.ID)
	}
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
	client, err := sb.client()
	if err != nil {
		return "", err
	}
	id := newID()
	pmd := sb.cfg.GetMetadata()
	name := strings.Join([]string{md.GetName(), pmd.GetName(), pmd.GetNamespace(), pmd.GetUid(), strconv.FormatUint(uint64(md.GetAttempt()), 10)}, "_")
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
	imageRef := img.ID
	if len(img.RepoDigests) > 0 {
		imageRef = img.RepoDigests[0]
	}
	c := &container{
		rec: containerRecord{ID: id, SandboxID: sbRec.ID, Name: name, Config: rawCfg, ImageName: imageName,
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
	u.add(func() { _ = removeDir(bundle); _ = removeDir(rw) })
	if err := mountRootfs(lowers, rw, rootfs); err != nil {
		return "", err
	}
	volumes, volumeRefs, releaseVolumes, err := m.mountImageVolumes(id, bundle, cfg)
	if err != nil {
		return "", err
	}
	u.add(releaseVolumes)
	in := spec.Container{ID: id, Config: cfg, Image: imgCfg, ImageName: imageName, Rootfs: rootfs, ImageVolumes: volumes}
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := m.getContainer(ns.GetTargetId())
		if err != nil {
			return "", fmt.Errorf("target container of the PID namespace: %w", err)
		}
		in.TargetPid = target.snapshot().Pid
	}
	s, user, err := spec.ForContainer(specRuntime(sb.handler), m.host, m.specPod(sb, m.podDir(sbRec.ID)), in)
	if err != nil {
		return "", err
	}
	if err := writeSpec(bundle, s); err != nil {
		return "", err
	}
	logPath := ""
	if dir, p := sb.cfg.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		logPath = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return "", err
		}
	}
	st, err := client.Create(ctx, &shimv1.CreateRequest{
		Id: id, Bundle: bundle, LogPath: logPath, Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		MemoryCgroup: spec.MemoryCgroupDir(m.host, s.Linux.CgroupsPath),
	})
	if err != nil {
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

// StartContainer starts a created container.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if rec.State != stateCreated {
		return errdefs.FailedPrecondition("container %s is %s, not created", rec.ID, rec.State)
	}
	client, err := m.podShim(rec.SandboxID)
	if err != nil {
		return err
	}
	st, err := client.Start(ctx, &shimv1.IDRequest{Id: rec.ID})
	if err != nil {
		// The kubelet sees a container that could not start as exited.
		c.mu.Lock()
		c.rec.State, c.rec.ExitCode, c.rec.Reason, c.rec.Message = stateExited, 128, "StartError", err.Error()
		c.rec.FinishedAt = nowNano()
		c.mu.Unlock()
		c.markExited()
		_ = m.saveContainer(c)
		return fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	c.mu.Lock()
	if c.rec.State == stateCreated {
		// An exit reported meanwhile has the last word.
		c.rec.State = stateRunning
		c.rec.StartedAt = st.StartedAt
	}
	c.mu.Unlock()
	logctx.From(ctx, m.log).Info("container started", "id", rec.ID)
	defer m.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, rec.ID, rec.SandboxID)
	return m.saveContainer(c)
}

// StopContainer stops a running container: its stop signal, up to timeout
// seconds, then SIGKILL (at once for timeout 0).
func (m *Manager) StopContainer(ctx context.Context, id string, timeout int64) error {
	c, err := m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil // idempotent, as the kubelet expects
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return nil
	}
	return m.stopContainer(ctx, c, time.Duration(timeout)*time.Second)
}

func (m *Manager) stopContainer(ctx context.Context, c *container, timeout time.Duration) error {
	rec := c.snapshot()
	if rec.State != stateRunning {
		return nil
	}
	sb, err := m.getSandbox(rec.SandboxID)
	if err != nil {
		return err
	}
	client, err := sb.client()
	if err != nil {
		return err
	}
	// gVisor's init is not the pod's PID 1 on the host: SIGKILL goes to
	// every process of the container.
	all := sb.handler.Kind() == "runsc"
	if timeout > 0 {
		if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(rec.StopSignal)}); err != nil && !isNotFound(err) {
			return fmt.Errorf("signal container %s: %w", rec.ID, err)
		}
		if m.waitExit(ctx, c, client, timeout) {
			return nil
		}
		logctx.From(ctx, m.log).Info("container ignored its stop signal; killing", "id", rec.ID, "signal", rec.StopSignal, "timeout", timeout)
	}
	if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(unix.SIGKILL), All: all}); err != nil && !isNotFound(err) {
		return fmt.Errorf("kill container %s: %w", rec.ID, err)
	}
	if !m.waitExit(ctx, c, client, time.Minute) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errdefs.Unavailable("container %s did not exit after SIGKILL", rec.ID)
	}
	return nil
}

// waitExit waits for the container's exit event, asking the shim now and
// then in case an event was lost.
func (m *Manager) waitExit(ctx context.Context, c *container, client shimv1.ShimServiceClient, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-c.exited:
			return true
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-poll.C:
			if st, err := client.State(ctx, &shimv1.IDRequest{Id: c.rec.ID}); err == nil && st.Status == shimv1.Status_STATUS_STOPPED {
				m.recordExit(c, st)
			}
		}
	}
}

// recordExit stores a container's exit as the shim reported it.
func (m *Manager) recordExit(c *container, st *shimv1.ContainerState) {
	c.mu.Lock()
	if c.rec.State == stateExited {
		c.mu.Unlock()
		c.markExited()
		return
	}
	c.rec.State = stateExited
	c.rec.ExitCode = st.ExitCode
	c.rec.OOMKilled = st.OomKilled
	c.rec.FinishedAt = st.FinishedAt
	if c.rec.StartedAt == 0 {
		c.rec.StartedAt = st.StartedAt
	}
	if c.rec.FinishedAt == 0 {
		c.rec.FinishedAt = nowNano()
	}
	switch {
	case st.OomKilled:
		c.rec.Reason = "OOMKilled"
	case st.ExitCode == 0:
		c.rec.Reason = "Completed"
	default:
		c.rec.Reason = "Error"
	}
	if st.Message != "" {
		c.rec.Message = st.Message
	}
	c.mu.Unlock()
	c.markExited()
	if err := m.saveContainer(c); err != nil {
		m.log.Error("record container exit", "id", c.rec.ID, "err", err)
	}
	m.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.rec.ID, c.rec.SandboxID)
	m.log.Info("container exited", "id", st.Id, "code", st.ExitCode, "oom", st.OomKilled)
}

// RemoveContainer removes a container, stopping it first; a missing one
// is not an error.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return nil
	}
	return m.removeContainer(ctx, c)
}

func (m *Manager) removeContainer(ctx context.Context, c *container) error {
	if err := m.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	rec := c.snapshot()
	if sb, err := m.getSandbox(rec.SandboxID); err == nil {
		if client, err := sb.client(); err == nil {
			if _, err := client.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true}); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete container %s: %w", rec.ID, err)
			}
		} else {
			m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
		}
	}
	if err := removeDir(m.ctrBundle(rec.ID)); err != nil {
		return err
	}
	if err := removeDir(filepath.Join(m.ctrRootDir(), rec.ID)); err != nil {
		return err
	}
	if err := m.images.Release(rec.ID); err != nil {
		return err
	}
	if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(bucketContainers, rec.ID) }); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.containers, rec.ID)
	m.mu.Unlock()
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
	m.release(rec.Name, rec.ID)
	m.forgetStats(rec.ID)
	c.markExited()
	m.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, rec.ID, rec.SandboxID)
	logctx.From(ctx, m.log).Info("container removed", "id", rec.ID)
	return nil
}

func criContainerState(s string) runtimeapi.ContainerState {
	switch s {
	case stateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case stateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case stateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports a container; verbose adds its pid and OCI spec.
func (m *Manager) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	rec := c.snapshot()
	st := &runtimeapi.ContainerStatus{
		Id:          rec.ID,
		Metadata:    c.cfg.GetMetadata(),
		State:       criContainerState(rec.State),
		CreatedAt:   rec.CreatedAt,
		StartedAt:   rec.StartedAt,
		FinishedAt:  rec.FinishedAt,
		ExitCode:    rec.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: rec.ImageName, Annotations: c.cfg.GetImage().GetAnnotations()},
		ImageRef:    rec.ImageRef,
		ImageId:     rec.ImageID,
		Reason:      rec.Reason,
		Message:     rec.Message,
		Labels:      c.cfg.GetLabels(),
		Annotations: c.cfg.GetAnnotations(),
		Mounts:      statusMounts(c.cfg.GetMounts(), rec.VolumeRefs),
		LogPath:     rec.LogPath,
		User:        &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: rec.UID, Gid: rec.GID, SupplementalGroups: rec.Groups}},
		StopSignal:  c.cfg.GetStopSignal(),
	}
	if len(rec.Resources) > 0 {
		r := &runtimeapi.LinuxContainerResources{}
		if proto.Unmarshal(rec.Resources, r) == nil {
			st.Resources = &runtimeapi.ContainerResources{Linux: r}
		}
	}
	if !verbose {
		return st, nil, nil
	}
	info := map[string]any{"sandboxID": rec.SandboxID, "pid": rec.Pid, "bundle": m.ctrBundle(rec.ID)}
	if raw, err := os.ReadFile(filepath.Join(m.ctrBundle(rec.ID), "config.json")); err == nil {
		info["runtimeSpec"] = json.RawMessage(raw)
	}
	data, err := json.Marshal(info)
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": string(data)}, nil
}

// ListContainers lists containers matching filter.
func (m *Manager) ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	m.mu.Lock()
	cs := make([]*container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range cs {
		rec := c.snapshot()
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !strings.HasPrefix(rec.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		state := criContainerState(rec.State)
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		if !matchLabels(c.cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: c.cfg.GetMetadata(),
			Image: &runtimeapi.ImageSpec{Image: rec.ImageName}, ImageRef: rec.ImageRef, ImageId: rec.ImageID,
			State: state, CreatedAt: rec.CreatedAt, Labels: c.cfg.GetLabels(), Annotations: c.cfg.GetAnnotations(),
		})
	}
	return out
}

// ExecSync runs cmd in a running container and returns its output and
// exit code; a timeout kills it and is DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, code int32, err error) {
	if len(cmd) == 0 {
		return nil, nil, 0, errdefs.InvalidArgument("exec needs a command")
	}
	c, client, err := m.runningContainer(id)
	if err != nil {
		return nil, nil, 0, err
	}
	raw, err := execProcess(c, cmd, false, nil)
	if err != nil {
		return nil, nil, 0, err
	}
	resp, err := client.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: c.rec.ID, Process: raw, TimeoutNs: int64(timeout), MaxOutput: 8 << 20})
	if err != nil {
		return nil, nil, 0, err
	}
	if resp.TimedOut {
		return resp.Stdout, resp.Stderr, resp.ExitCode, fmt.Errorf("command %q timed out after %s: %w", strings.Join(cmd, " "), timeout, errdefs.ErrDeadlineExceeded)
	}
	return resp.Stdout, resp.Stderr, resp.ExitCode, nil
}

// statusMounts reports the mounts with each image volume's image ID.
func statusMounts(mounts []*runtimeapi.Mount, refs map[string]string) []*runtimeapi.Mount {
	if len(refs) == 0 {
		return mounts
	}
	out := make([]*runtimeapi.Mount, len(mounts))
	for i, mnt := range mounts {
		if ref, ok := refs[filepath.Clean(mnt.ContainerPath)]; ok && mnt.GetImage() != nil {
			mnt = proto.Clone(mnt).(*runtimeapi.Mount)
			mnt.Image.ImageRef = ref
		}
		out[i] = mnt
	}
	return out
}

// ReopenContainerLog makes the shim reopen a running container's log file
// (the kubelet renamed it to rotate it).
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, client, err := m.runningContainer(id)
	if err != nil {
		return err
	}
	if c.snapshot().LogPath == "" {
		return errdefs.FailedPrecondition("container %s has no log file", id)
	}
	_, err = client.ReopenLog(ctx, &shimv1.IDRequest{Id: c.rec.ID})
	return err
}

// UpdateContainerResources changes a container's cgroup limits live,
// through its handler, and records them.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return errdefs.InvalidArgument("linux resources are required")
	}
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if rec.State != stateCreated && rec.State != stateRunning {
		return errdefs.FailedPrecondition("container %s is %s", rec.ID, rec.State)
	}
	client, err := m.podShim(rec.SandboxID)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(spec.Resources(m.host, r, nil))
	if err != nil {
		return err
	}
	if _, err := client.Update(ctx, &shimv1.UpdateRequest{Id: rec.ID, Resources: raw}); err != nil {
		return fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	saved, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Resources = saved
	c.mu.Unlock()
	logctx.From(ctx, m.log).Info("container resources updated", "id", rec.ID)
	return m.saveContainer(c)
}
