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
//
// On a runtime that checkpoints whole sandboxes (gVisor), id is the
// sandbox container and ImagePath receives the image of the whole
// sandbox (its kernel, every container's processes and in-sandbox
// files); --leave-running resumes it afterwards. WorkPath is unused
// (runsc ignores it) and runsc has no --file-locks: its kernel saves
// locks with the rest. TCP connections go on in the running sandbox and
// are reset in a restored one (gVisor's default without
// --allow-connected-on-save): the restored pod has another address.
func (r *Runtime) Checkpoint(ctx context.Context, id string, o CheckpointOpts) *exec.Cmd {
	if r.Traits().SandboxCheckpoint {
		return r.cmd(ctx, o.LogFile, "checkpoint", "--image-path", o.ImagePath, "--leave-running", id)
	}
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
//
// On gVisor the restore of the sandbox container makes the sandbox from
// the bundle and hands it the image (ImagePath); the restore of each
// other container joins it (runsc needs an ImagePath there too, and
// reads nothing from it), and the sandbox's kernel comes back once the
// last container the image holds has joined. Containers are matched to
// the image's by io.kubernetes.cri.container-name (the sandbox container
// has none: it is the root). The stdio given to a container's restore are
// its own, as at `start`. WorkPath is unused.
func (r *Runtime) Restore(ctx context.Context, id string, o RestoreOpts) *exec.Cmd {
	if r.Traits().SandboxCheckpoint {
		return r.cmd(ctx, o.LogFile, "restore", "--detach", "--bundle", o.Bundle, "--pid-file", o.PidFile,
			"--image-path", o.ImagePath, id)
	}
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
// can: with CRIU, container by container (runc), or the whole sandbox at
// once (gVisor's runsc checkpoint and restore).
func (k Kind) PodCheckpointUnsupported() string {
	if k.Traits().SandboxCheckpoint {
		return ""
	}
	return k.CheckpointUnsupported()
}
