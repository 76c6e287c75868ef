package service

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
)

// Checkpoint dumps a running container with CRIU and writes its writable
// layer's changes, leaving it running. The shim does it, not berthd: it
// owns the container's processes, and the container stays frozen from
// before the dump until its layer is written (as CRI-O pauses around
// both), so that the files match the memory. Nothing of the shim's
// bookkeeping changes: the init keeps its pid, pidfd and namespaces.
func (s *Service) Checkpoint(ctx context.Context, req *shimv1.CheckpointRequest) (*shimv1.Empty, error) {
	return s.checkpoint(ctx, []*shimv1.CheckpointRequest{req}, req.TimeoutNs, "", "")
}

// CheckpointPod is Checkpoint for several containers as one cut (the
// CRI's CheckpointPod): all are frozen before the first dump and thawed
// after the last layer and the pod's /dev/shm are written, so that what
// they share (files in /dev/shm, the layers' files) is seen at one
// instant by every dump.
func (s *Service) CheckpointPod(ctx context.Context, req *shimv1.CheckpointPodRequest) (*shimv1.Empty, error) {
	if len(req.Containers) == 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "no container to checkpoint")
	}
	if (req.ShmDir == "") != (req.ShmTar == "") {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "shm_dir and shm_tar go together")
	}
	if s.opts.Runtime.Traits().SandboxCheckpoint {
		return s.checkpointSandbox(ctx, req)
	}
	return s.checkpoint(ctx, req.Containers, req.TimeoutNs, req.ShmDir, req.ShmTar)
}

// checkpointSandbox is CheckpointPod on gVisor, which saves the whole
// sandbox (its kernel: every container's processes, its own files, the
// pod's SysV objects) in one image: the request names the sandbox
// container first, with the image's path, then every other container of
// the pod, without paths. The sandbox is paused (`pause` of the sandbox
// container stops its whole kernel) before the save and until the pod's
// /dev/shm, which lives outside it, is written, so that both are one cut;
// then it is resumed, whatever happened.
func (s *Service) checkpointSandbox(ctx context.Context, req *shimv1.CheckpointPodRequest) (_ *shimv1.Empty, err error) {
	if len(req.Containers) == 0 || req.Containers[0].GetId() != s.opts.PodID {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "gVisor checkpoints the whole sandbox: name its sandbox container %s first", s.opts.PodID)
	}
	r := req.Containers[0]
	if r.ImagePath == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "image path is required")
	}
	named := map[string]bool{}
	for _, c := range req.Containers[1:] {
		if c.GetImagePath() != "" || c.GetWorkPath() != "" || c.GetId() == s.opts.PodID || named[c.GetId()] {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "gVisor saves the sandbox in one image: name each other container of the pod once, without paths")
		}
		named[c.GetId()] = true
	}
	if _, err := s.running(r.Id); err != nil {
		return nil, err
	}
	timeout := runtimeTimeout
	if req.TimeoutNs > 0 {
		timeout = time.Duration(req.TimeoutNs)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Resumed whatever pause answers: one cut short by the timeout may
	// have paused the sandbox all the same.
	defer func() {
		if rerr := s.resume(r.Id); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Pause(cctx, r.Id, logFile) }); err != nil {
		return nil, fmt.Errorf("pause the sandbox: %w", err)
	}
	if err := s.sandboxHolds(named); err != nil {
		return nil, err
	}
	if err := s.runRuntime(func(logFile string) *exec.Cmd {
		return s.opts.Runtime.Checkpoint(cctx, r.Id, oci.CheckpointOpts{ImagePath: r.ImagePath, LogFile: logFile})
	}); err != nil {
		if cctx.Err() != nil {
			return nil, errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint of sandbox %s did not finish in %s", r.Id, timeout)
		}
		return nil, fmt.Errorf("checkpoint sandbox %s: %w", r.Id, err)
	}
	if req.ShmDir != "" {
		if err := checkpoint.WriteTree(req.ShmDir, req.ShmTar); err != nil {
			return nil, fmt.Errorf("write the pod's /dev/shm: %w", err)
		}
	}
	if err := cctx.Err(); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint did not finish in %s", timeout)
	}
	s.opts.Log.Info("sandbox checkpointed", "id", r.Id, "images", r.ImagePath)
	return &shimv1.Empty{}, nil
}

func (s *Service) checkpoint(ctx context.Context, reqs []*shimv1.CheckpointRequest, timeoutNs int64, shmDir, shmTar string) (_ *shimv1.Empty, err error) {
	if why := s.opts.Runtime.Traits(); !why.Checkpoint {
		return nil, errdefs.Errorf(errdefs.ErrUnimplemented, "%s", s.opts.Runtime.Kind.CheckpointUnsupported())
	}
	ctrs := make([]*container, len(reqs))
	for i, req := range reqs {
		c, err := s.running(req.Id)
		if err != nil {
			return nil, err
		}
		if c.terminal {
			return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s has a terminal: CRIU cannot dump a terminal the shim holds", req.Id)
		}
		if req.ImagePath == "" || req.WorkPath == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "image and work paths are required")
		}
		ctrs[i] = c
	}
	timeout := runtimeTimeout
	if timeoutNs > 0 {
		timeout = time.Duration(timeoutNs)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var frozen []string
	defer func() {
		// Whatever happened (a dump cut short by the timeout too), the
		// containers run on: a fresh context, not the expired one.
		for _, id := range frozen {
			if rerr := s.resume(id); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	for _, req := range reqs {
		// Resumed whatever pause answers: one cut short by the timeout
		// may have frozen the container all the same.
		frozen = append(frozen, req.Id)
		if err := s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Pause(cctx, req.Id, logFile) }); err != nil {
			return nil, fmt.Errorf("freeze container %s: %w", req.Id, err)
		}
	}
	for i, req := range reqs {
		err := s.runRuntime(func(logFile string) *exec.Cmd {
			return s.opts.Runtime.Checkpoint(cctx, req.Id, oci.CheckpointOpts{ImagePath: req.ImagePath, WorkPath: req.WorkPath, LogFile: logFile})
		})
		if err != nil {
			if cctx.Err() != nil {
				return nil, errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint of container %s did not finish in %s", req.Id, timeout)
			}
			return nil, criuError(err, filepath.Join(req.WorkPath, checkpoint.DumpLog))
		}
		if req.UpperDir != "" {
			if err := checkpoint.WriteDiff(checkpoint.DiffOptions{Upper: req.UpperDir, Lowers: req.LowerDirs, Skip: mountPoints(ctrs[i].bundle)}, req.WorkPath); err != nil {
				return nil, fmt.Errorf("write the writable layer's changes of %s: %w", req.Id, err)
			}
		}
	}
	if shmDir != "" {
		if err := checkpoint.WriteTree(shmDir, shmTar); err != nil {
			return nil, fmt.Errorf("write the pod's /dev/shm: %w", err)
		}
	}
	if err := cctx.Err(); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint did not finish in %s", timeout)
	}
	for _, req := range reqs {
		s.opts.Log.Info("container checkpointed", "id", req.Id, "images", req.ImagePath)
	}
	return &shimv1.Empty{}, nil
}

// mountPoints are the destinations of the container's mounts: the
// runtime made them in the writable layer as mount points.
func mountPoints(bundle string) []string {
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil || json.Unmarshal(data, &spec) != nil {
		return nil
	}
	out := make([]string, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

// criuError adds CRIU's own reasons (its log's Error lines) to the
// runtime's message, which only names the log.
func criuError(err error, logPath string) error {
	f, ferr := os.Open(logPath)
	if ferr != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "Error (") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) == 0 {
		return err
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return fmt.Errorf("%w (CRIU: %s)", err, strings.Join(lines, "; "))
}

// resume resumes container id after its checkpoint, with a fresh context
// (the checkpoint's may have expired). A container left frozen is the
// call's error: the checkpoint was written, but the pod does not run on.
func (s *Service) resume(id string) error {
	ctx, cancel := runtimeCtx()
	defer cancel()
	if err := s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Resume(ctx, id, logFile) }); err != nil {
		s.opts.Log.Error("resume after checkpoint", "id", id, "err", err)
		return fmt.Errorf("resume %s after its checkpoint: %w", id, err)
	}
	return nil
}

// sandboxHolds checks, the sandbox paused, that its containers besides
// the sandbox container are those named, all running: gVisor saves every
// container it holds, and its restore waits for each one of the image.
func (s *Service) sandboxHolds(named map[string]bool) error {
	s.mu.Lock()
	var held []*container
	for id, c := range s.containers {
		if id != s.opts.PodID {
			held = append(held, c)
		}
	}
	s.mu.Unlock()
	for _, c := range held {
		if !named[c.id] {
			return errdefs.Errorf(errdefs.ErrFailedPrecondition, "the sandbox holds container %s, which the checkpoint does not name (created meanwhile?)", c.id)
		}
		if err := c.requireRunning(); err != nil {
			return err
		}
	}
	if len(held) != len(named) {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "the sandbox holds %d of the %d containers named", len(held), len(named))
	}
	return nil
}
