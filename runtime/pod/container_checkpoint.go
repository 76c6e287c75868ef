package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
)

// CheckpointContainer writes a running container's checkpoint archive
// (see runtime/checkpoint for its layout) to location and leaves the
// container running, as the kubelet's forensic checkpointing expects.
// timeout (seconds, 0 for none) bounds the whole call.
func (m *Manager) CheckpointContainer(ctx context.Context, id, location string, timeout int64) error {
	if location == "" || !filepath.IsAbs(location) {
		return errdefs.InvalidArgument("checkpoint location must be an absolute path, not %q", location)
	}
	if timeout < 0 {
		return errdefs.InvalidArgument("timeout must not be negative")
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		defer cancel()
	}
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	// Stop, remove and update wait: the container is frozen meanwhile.
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if rec.State != stateRunning {
		return errdefs.FailedPrecondition("container %s is %s: only running containers can be checkpointed", rec.ID, rec.State)
	}
	sb, err := m.getSandbox(rec.SandboxID)
	if err != nil {
		return err
	}
	if err := m.checkpointable(sb); err != nil {
		return err
	}
	client, err := sb.client()
	if err != nil {
		return err
	}
	// Beside the writable layer, on disk: the images hold every memory
	// page of the container, which the state directory's tmpfs would hold
	// in memory twice.
	stage, err := os.MkdirTemp(filepath.Join(m.ctrRootDir(), rec.ID), "checkpoint-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(stage) }()
	images := filepath.Join(stage, checkpoint.ImagesDir)
	if err := PrivateDir(images); err != nil {
		return err
	}
	rootfs := filepath.Join(m.ctrBundle(rec.ID), "rootfs")
	req := &shimv1.CheckpointRequest{
		Id: rec.ID, ImagePath: images, WorkPath: stage,
		UpperDir: filepath.Join(m.ctrRootDir(), rec.ID, "upper"), LowerDirs: overlayLowers(rootfs),
	}
	if d, ok := ctx.Deadline(); ok {
		req.TimeoutNs = int64(time.Until(d))
	}
	if _, err := client.Checkpoint(ctx, req); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", rec.ID, err)
	}
	if err := m.writeCheckpointMetadata(ctx, c, sb, stage); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint of container %s: %v", rec.ID, err)
	}
	if err := checkpoint.WriteArchive(stage, location); err != nil {
		return fmt.Errorf("write checkpoint archive: %w", err)
	}
	logctx.From(ctx, m.log).Info("container checkpointed", "id", rec.ID, "location", location)
	return nil
}

// checkpointable refuses what berth cannot checkpoint and restore.
func (m *Manager) checkpointable(sb *sandbox) error {
	if why := sb.handler.Traits(); !why.Checkpoint {
		return errdefs.Errorf(errdefs.ErrUnimplemented, "checkpoint/restore: %s", sb.handler.Kind.CheckpointUnsupported())
	}
	if m.idmapFor(sb) != nil {
		// CRIU would have to dump and restore the pod's user namespace
		// mappings and idmapped layers, which runc does not set up for it.
		return errdefs.FailedPrecondition("containers of pods with a user namespace (hostUsers: false) cannot be checkpointed or restored")
	}
	if _, err := exec.LookPath("criu"); err != nil {
		return errdefs.FailedPrecondition("checkpoint/restore needs CRIU (criu in PATH; test/scripts/deps.sh installs it): %v", err)
	}
	return nil
}

// writeCheckpointMetadata adds what berthd knows to the shim's images and
// layer diff: config.dump, spec.dump, status.dump, the CRI config and the
// log.
func (m *Manager) writeCheckpointMetadata(ctx context.Context, c *container, sb *sandbox, stage string) error {
	rec := c.snapshot()
	write := func(name string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(stage, name), data, 0o600)
	}
	err := write(checkpoint.ConfigDump, checkpoint.ContainerConfig{
		ID: rec.ID, Name: rec.Name, RootfsImage: rec.ImageName, RootfsImageRef: rec.ImageRef,
		RootfsImageName: rec.ImageName, OCIRuntime: sb.rec.Handler,
		CreatedTime: time.Unix(0, rec.CreatedAt), CheckpointedAt: time.Now(),
	})
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(m.ctrBundle(rec.ID), "config.json"))
	if err != nil {
		return err
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	pmd := sb.cfg.GetMetadata()
	for k, v := range map[string]string{
		checkpoint.AnnotationContainerName: c.cfg.GetMetadata().GetName(), checkpoint.AnnotationSandboxName: pmd.GetName(),
		checkpoint.AnnotationSandboxNamespace: pmd.GetNamespace(), checkpoint.AnnotationSandboxUID: pmd.GetUid(),
		checkpoint.AnnotationSandboxID: rec.SandboxID, checkpoint.AnnotationImageName: rec.ImageName,
		checkpoint.AnnotationManager: "berth",
	} {
		s.Annotations[k] = v
	}
	if err := write(checkpoint.SpecDump, &s); err != nil {
		return err
	}
	st, _, err := m.ContainerStatus(ctx, rec.ID, false)
	if err != nil {
		return err
	}
	if err := write(checkpoint.StatusDump, st); err != nil {
		return err
	}
	cfg, err := protojson.Marshal(c.cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, checkpoint.CRIConfig), cfg, 0o600); err != nil {
		return err
	}
	if rec.LogPath != "" {
		return copyRegular(rec.LogPath, filepath.Join(stage, checkpoint.ContainerLog))
	}
	return nil
}

// copyRegular copies the regular file src (a symlink or a FIFO there is
// skipped: the log directory is the kubelet's, not berth's) to dst.
func copyRegular(src, dst string) (err error) {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // no log (yet): nothing to keep
	}
	in := os.NewFile(uintptr(fd), src)
	defer func() { _ = in.Close() }()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}

// overlayLowers are the lower directories (top first) of the overlay
// mounted at rootfs, read from the mount table; none when it is not one.
func overlayLowers(rootfs string) []string {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(rootfs))
	if err != nil || len(infos) == 0 {
		return nil
	}
	for _, opt := range strings.Split(infos[len(infos)-1].VFSOptions, ",") {
		if v, ok := strings.CutPrefix(opt, "lowerdir="); ok {
			return strings.Split(v, ":")
		}
	}
	return nil
}
