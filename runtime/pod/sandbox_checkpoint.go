package pod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/oci"
)

// CheckpointPod writes a checkpoint of the running containers ids of pod
// podID into out, an existing empty directory (the CRI's CheckpointPod;
// runtime/checkpoint pod.go has the layout). The pod's shim freezes every
// container before it dumps any and thaws them all before it answers, so
// the dumps and the pod's /dev/shm are one cut; the pod runs on. On
// error, out is left as it was. options must be empty: berth has none.
func (m *Manager) CheckpointPod(ctx context.Context, podID, out string, ids []string, options map[string]string) error {
	if err := checkPodCheckpointArgs(out, ids, options); err != nil {
		return err
	}
	sb, err := m.lockedSandbox(podID)
	if err != nil {
		return err
	}
	if sb == nil {
		return errdefs.NotFound("pod sandbox %q", podID)
	}
	defer sb.op.Unlock()
	rec := sb.snapshot()
	if rec.State != stateReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready: only a running pod can be checkpointed", rec.ID)
	}
	if why := handlerKind(sb.handler).PodCheckpointUnsupported(); why != "" {
		return errdefs.Errorf(errdefs.ErrUnimplemented, "CheckpointPod: %s", why)
	}
	gvisor := handlerKind(sb.handler).Traits().SandboxCheckpoint
	ctrs, err := m.podCheckpointContainers(rec.ID, ids)
	if err != nil {
		return err
	}
	if err := m.podCheckpointable(sb); err != nil {
		return err
	}
	for _, c := range ctrs {
		c.op.Lock()
		defer c.op.Unlock()
	}
	for _, c := range ctrs {
		if st := c.snapshot().State; st != stateRunning {
			return errdefs.FailedPrecondition("container %s is %s: every container of a pod checkpoint must be running", c.snapshot().ID, st)
		}
	}
	if gvisor {
		// gVisor saves the sandbox, every container in it, and restores
		// only all of them together.
		if err := wholeSandbox(m.podContainers(rec.ID), ctrs); err != nil {
			return err
		}
	} else if err := m.checkSysV(sb, len(ctrs)); err != nil {
		// (gVisor's kernel saves the pod's SysV objects once, with it.)
		return err
	}
	if err := checkpoint.EmptyDir(out); err != nil {
		return errdefs.FailedPrecondition("output_path must be an existing empty directory: %v", err)
	}
	client, err := sb.client()
	if err != nil {
		return err
	}
	// On disk beside the pod's own files, not in the caller's directory:
	// whatever fails, nothing of it is left there (Publish at the end).
	parent := filepath.Join(m.ctrRootDir(), rec.ID)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(parent, "checkpoint-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(stage) }()
	req := &shimv1.CheckpointPodRequest{}
	dump := &checkpoint.PodDump{Format: checkpoint.PodFormat, Engine: "berth", ID: rec.ID, Handler: rec.Handler,
		RuntimeKind: string(handlerKind(sb.handler)), Images: checkpoint.ImagesCRIU}
	if gvisor {
		// One image of the sandbox, taken through its sandbox container
		// (the pod's id); each container's directory holds its metadata.
		images := filepath.Join(stage, checkpoint.GVisorDir)
		if err := PrivateDir(images); err != nil {
			return err
		}
		req.Containers = []*shimv1.CheckpointRequest{{Id: rec.ID, ImagePath: images}}
		dump.Images = checkpoint.ImagesGVisor
	}
	for _, c := range ctrs {
		cr := c.snapshot()
		pc := checkpoint.PodContainer{Name: c.cfg.GetMetadata().GetName(), ID: cr.ID}
		dir := filepath.Join(stage, pc.Dir())
		dump.Containers = append(dump.Containers, pc)
		if gvisor {
			if err := PrivateDir(dir); err != nil {
				return err
			}
			// Named without an image: the shim checks, the sandbox
			// paused, that it holds these and no other (one created
			// meanwhile would be in gVisor's image, not in pod.json).
			req.Containers = append(req.Containers, &shimv1.CheckpointRequest{Id: cr.ID})
			continue
		}
		images := filepath.Join(dir, checkpoint.ImagesDir)
		if err := PrivateDir(images); err != nil {
			return err
		}
		rootfs := filepath.Join(m.ctrBundle(cr.ID), "rootfs")
		req.Containers = append(req.Containers, &shimv1.CheckpointRequest{
			Id: cr.ID, ImagePath: images, WorkPath: dir,
			UpperDir: filepath.Join(m.ctrRootDir(), cr.ID, "upper"), LowerDirs: overlayLowers(rootfs),
		})
	}
	if !hostIPC(sb.cfg) {
		req.ShmDir, req.ShmTar = filepath.Join(m.podDir(rec.ID), "shm"), filepath.Join(stage, checkpoint.ShmTar)
		dump.Shm = true
	}
	if d, ok := ctx.Deadline(); ok {
		req.TimeoutNs = int64(time.Until(d))
	}
	if _, err := client.CheckpointPod(ctx, req); err != nil {
		return fmt.Errorf("checkpoint pod %s: %w", rec.ID, err)
	}
	for i, c := range ctrs {
		if err := m.writeCheckpointMetadata(ctx, c, sb, filepath.Join(stage, dump.Containers[i].Dir())); err != nil {
			return err
		}
	}
	if err := m.writePodDump(sb, stage, dump); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return errdefs.Errorf(errdefs.ErrDeadlineExceeded, "checkpoint of pod %s: %v", rec.ID, err)
	}
	if err := checkpoint.Publish(stage, out); err != nil {
		return fmt.Errorf("write pod checkpoint: %w", err)
	}
	logctx.From(ctx, m.log).Info("pod checkpointed", "id", rec.ID, "containers", len(ctrs), "output", out)
	return nil
}

// podCheckpointable refuses a pod its handler cannot checkpoint whole:
// gVisor needs no CRIU, runc does (checkpointable).
func (m *Manager) podCheckpointable(sb *sandbox) error {
	if !handlerKind(sb.handler).Traits().SandboxCheckpoint {
		return m.checkpointable(sb)
	}
	if m.idmapFor(sb) != nil {
		return errdefs.FailedPrecondition("pods with a user namespace (hostUsers: false) cannot be checkpointed or restored")
	}
	if hostNetwork(sb.cfg) {
		// runsc runs them on the host's stack (--network=host), whose
		// connections it cannot save.
		return errdefs.FailedPrecondition("gVisor cannot checkpoint or restore a pod on the host's network")
	}
	args := sb.handler.Args
	for i, a := range args {
		if strings.TrimLeft(a, "-") == "overlay2=none" || strings.TrimLeft(a, "-") == "overlay2" && i+1 < len(args) && args[i+1] == "none" {
			// Files written in the containers then go to the host,
			// outside the sandbox's image: a restore would lose them.
			return errdefs.FailedPrecondition("handler %s runs runsc with %s: the containers' file changes are outside the sandbox's image; checkpoint pods on a handler with gVisor's overlay", sb.handler.Name, a)
		}
	}
	return nil
}

// wholeSandbox refuses a gVisor pod checkpoint that leaves out a
// container of the pod: runsc saves every container of the sandbox, and
// its restore waits for each of them, so a checkpoint of some would
// restore none.
func wholeSandbox(all, named []*container) error {
	var left []string
	for _, c := range all {
		if !slices.Contains(named, c) {
			left = append(left, c.snapshot().ID)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return errdefs.FailedPrecondition("gVisor checkpoints the whole sandbox: container_ids must name every container of the pod (it also holds %s; remove those not running first)", strings.Join(left, ", "))
	}
	return nil
}

// checkPodCheckpointArgs refuses what the CRI says a runtime must refuse
// before it checkpoints anything.
func checkPodCheckpointArgs(out string, ids []string, options map[string]string) error {
	if out == "" || !filepath.IsAbs(out) {
		return errdefs.InvalidArgument("output_path must be an absolute path, not %q", out)
	}
	if len(options) > 0 {
		return errdefs.InvalidArgument("CheckpointPodRequest.options: berth takes no checkpoint options (given %s)", optionKeys(options))
	}
	if len(ids) == 0 {
		return errdefs.InvalidArgument("container_ids must name the containers to checkpoint")
	}
	return nil
}

// optionKeys lists the keys of options, quoted and sorted, for a refusal.
func optionKeys(options map[string]string) string {
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, strconv.Quote(k))
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// podCheckpointContainers resolves ids to containers of the pod, sorted
// by id (the order their locks are taken in); each once, with a name
// that can name its directory and that no other one has (RestorePod
// matches containers by name).
func (m *Manager) podCheckpointContainers(podID string, ids []string) ([]*container, error) {
	var out []*container
	names := map[string]string{}
	for _, id := range ids {
		c, err := m.getContainer(id)
		if err != nil {
			return nil, err
		}
		rec := c.snapshot()
		if rec.SandboxID != podID {
			return nil, errdefs.InvalidArgument("container %s belongs to pod %s, not %s", rec.ID, rec.SandboxID, podID)
		}
		if slices.Contains(out, c) {
			return nil, errdefs.InvalidArgument("container_ids names %s twice", rec.ID)
		}
		name := c.cfg.GetMetadata().GetName()
		if err := checkpoint.ValidName(name); err != nil {
			return nil, errdefs.FailedPrecondition("container %s: %v", rec.ID, err)
		}
		if other, ok := names[name]; ok {
			return nil, errdefs.FailedPrecondition("containers %s and %s are both named %q: a restore matches containers by name", other, rec.ID, name)
		}
		names[name] = rec.ID
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].snapshot().ID < out[j].snapshot().ID })
	return out, nil
}

// handlerKind is h's runtime family, as configured or guessed from its
// binary's name.
func handlerKind(h *oci.Handler) oci.Kind {
	if h.Kind != "" {
		return h.Kind
	}
	k, _ := oci.ParseKind("", h.Path)
	return k
}

// writePodDump writes pod.json: the pod's config and handler. Its UTS
// names are not there: CRIU dumps them with each container and sets them
// again in the new pod's UTS namespace when it restores one.
func (m *Manager) writePodDump(sb *sandbox, stage string, d *checkpoint.PodDump) error {
	cfg, err := protojson.Marshal(sb.cfg)
	if err != nil {
		return err
	}
	d.Config = cfg
	d.CheckpointedAt = time.Now().UTC()
	return checkpoint.WritePodDump(stage, d)
}
