package oci

import (
	"context"
	"os/exec"
)

// CheckpointUnsupported says why a runtime of kind k cannot checkpoint or
// restore one container; "" when it can (Traits.Checkpoint).
func (k Kind) CheckpointUnsupported() string {
	switch {
	case k.Traits().Checkpoint:
		return ""
	case k == KindCrun:
		// Debian 12's crun 1.8.1 is built without CRIU ("unknown command
		// checkpoint"); a crun built with it lists +CRIU in --version, but
		// its images and options are not runc's, which berth's archive and
		// restore path are written against.
		return "crun: berth checkpoints with runc's checkpoint/restore and CRIU only; run the pod on a runc handler"
	case k == KindRunsc:
		// gVisor saves a whole sandbox (runsc checkpoint of the pod's
		// sandbox container), never one container of it.
		return "runsc: gVisor checkpoints whole sandboxes, not single containers"
	default:
		return string(k) + ": the runtime's checkpoint support is unknown to berth; run the pod on a runc handler"
	}
}

// CheckpointOpts are the options of `checkpoint`.
type CheckpointOpts struct {
	ImagePath, WorkPath, LogFile string
}

// Checkpoint builds `checkpoint --leave-running`: CRIU dumps the
// container's processes into ImagePath (its dump.log and stats-dump into
// WorkPath) and lets them run on. --file-locks as CRI-O passes it: a
// process holding a lock is dumped with it instead of failing. No
// --tcp-established (neither containerd nor CRI-O sets it for the CRI):
// a restore in a new pod has another address, where an established
// connection cannot come back.
func (r *Runtime) Checkpoint(ctx context.Context, id string, o CheckpointOpts) *exec.Cmd {
	return r.cmd(ctx, o.LogFile, "checkpoint", "--image-path", o.ImagePath, "--work-path", o.WorkPath,
		"--leave-running", "--file-locks", id)
}

// RestoreOpts are the options of `restore`.
type RestoreOpts struct {
	Bundle, PidFile, ImagePath, WorkPath, LogFile string
}

// Restore builds a detached `restore`: the container is created from the
// bundle and its processes from the CRIU images; the runtime exits and
// leaves the restored init to the caller (a subreaper). The container's
// stdio are the command's: runc hands them to the restored process where
// its dumped stdio were pipes.
func (r *Runtime) Restore(ctx context.Context, id string, o RestoreOpts) *exec.Cmd {
	return r.cmd(ctx, o.LogFile, "restore", "--detach", "--bundle", o.Bundle, "--pid-file", o.PidFile,
		"--image-path", o.ImagePath, "--work-path", o.WorkPath, "--file-locks", id)
}

// Pause builds `pause` (the cgroup freezer).
func (r *Runtime) Pause(ctx context.Context, id, logFile string) *exec.Cmd {
	return r.cmd(ctx, logFile, "pause", id)
}

// Resume builds `resume`.
func (r *Runtime) Resume(ctx context.Context, id, logFile string) *exec.Cmd {
	return r.cmd(ctx, logFile, "resume", id)
}

// PodCheckpointUnsupported says why berth cannot checkpoint or restore a
// whole pod (CheckpointPod, RestorePod) on a runtime of kind k; "" when it
// can.
func (k Kind) PodCheckpointUnsupported() string {
	if k == KindRunsc {
		// gVisor can: `runsc checkpoint` of the sandbox container saves
		// every container of the sandbox in one image, and a restore is
		// `runsc create` + `runsc restore` of the sandbox container, then
		// of each container (matched by io.kubernetes.cri.container-name).
		// berth's shim starts a pod's sandbox container with the pod and
		// has no restore path for runsc containers yet.
		return "runsc: berth does not drive gVisor's sandbox checkpoint and restore (runsc checkpoint of the sandbox container; runsc restore of it and of each container) yet; checkpoint pods on a runc handler"
	}
	return k.CheckpointUnsupported()
}
