package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
)

// A container whose image is a checkpoint is restored: it is created from
// the checkpointed container's CRI config, on its image, with its writable
// layer's changes, and StartContainer brings its processes back from the
// CRIU images instead of starting them afresh. A checkpoint is, as CRI-O
// takes it, an absolute path to an archive, or an image whose manifest
// carries org.criu.checkpoint.container.name (its one layer holds the
// archive's files); berth also takes an absolute path to a directory
// holding them (a container's directory in a pod checkpoint).

// restoreSource is the checkpoint a CreateContainer restores from.
type restoreSource struct {
	src    checkpoint.Source
	config checkpoint.ContainerConfig
	// release lets go of the checkpoint image's layer (nil for a path).
	release func()
	// sandboxImage, for a container of a gVisor pod checkpoint, is the
	// sandbox's image (in the new pod's directory): its processes and
	// files come from there, its directory adds only the log.
	sandboxImage string
}

// done releases what the source holds; nil-safe.
func (r *restoreSource) done() {
	if r != nil && r.release != nil {
		r.release()
	}
}

// checkpointSource finds the checkpoint ref names, or nil when it names
// none (an ordinary image).
func (m *Manager) checkpointSource(ref string) (*restoreSource, error) {
	if filepath.IsAbs(ref) {
		if checkpoint.IsArchive(ref) {
			return &restoreSource{src: checkpoint.ArchiveSource(ref)}, nil
		}
		if fi, err := os.Stat(ref); err == nil && fi.IsDir() && checkpoint.DirSource(ref).IsCheckpoint() {
			return &restoreSource{src: checkpoint.DirSource(ref)}, nil
		}
		return nil, nil
	}
	img, err := m.images.Get(ref)
	if err != nil {
		return nil, nil //nolint:nilerr // not an image here: CreateContainer says so
	}
	if _, ok := checkpoint.ImageContainerName(img.Annotations); !ok {
		return nil, nil
	}
	if !m.cfg.Security.RestoreCheckpointImages {
		// Anyone who may create a pod names its image: CRIU would restore
		// as root the process state a tenant wrote.
		return nil, errdefs.FailedPrecondition("image %s is a checkpoint, and restoring from checkpoint images is off (security.restore_checkpoint_images): CRIU restores their process state as root; enable it only where they come from trusted sources", ref)
	}
	if len(img.Chain) != 1 {
		return nil, errdefs.InvalidArgument("checkpoint image %s has %d layers: a checkpoint image holds the archive's files in one", ref, len(img.Chain))
	}
	// Held while the container is created from it, so that a removal of
	// the image meanwhile does not take the files away. A berthd crash
	// before the release leaves the lease (and the layer) behind.
	owner := "checkpoint-" + newID()
	dirs, err := m.images.Lease(owner, img.ID)
	if err != nil {
		return nil, err
	}
	r := &restoreSource{src: checkpoint.DirSource(dirs[0]), release: func() { _ = m.images.Release(owner) }}
	if !r.src.IsCheckpoint() {
		r.done()
		return nil, errdefs.InvalidArgument("image %s is marked as a checkpoint but holds no %s and %s", ref, checkpoint.ConfigDump, checkpoint.SpecDump)
	}
	return r, nil
}

// readCheckpoint reads the source's config.dump and the checkpointed
// container's CRI config: berth's cri-config.json, or for another
// engine's checkpoint what its spec.dump says.
func (r *restoreSource) readCheckpoint() (*runtimeapi.ContainerConfig, error) {
	var spec specs.Spec
	var orig *runtimeapi.ContainerConfig
	err := r.src.Walk(func(e *checkpoint.Entry) error {
		var target any
		switch e.Name {
		case checkpoint.ConfigDump:
			target = &r.config
		case checkpoint.SpecDump:
			target = &spec
		case checkpoint.CRIConfig:
			data, err := e.Read()
			if err != nil {
				return err
			}
			orig = &runtimeapi.ContainerConfig{}
			return protojson.Unmarshal(data, orig)
		default:
			return nil
		}
		data, err := e.Read()
		if err != nil {
			return err
		}
		return json.Unmarshal(data, target)
	})
	if err != nil {
		return nil, errdefs.InvalidArgument("checkpoint %s: %v", r.src, err)
	}
	if orig == nil {
		orig = configFromSpec(&spec)
	}
	return orig, nil
}

// restoreConfig returns the config to create when cfg's image is a
// checkpoint, and the checkpoint; otherwise cfg and nil. The checkpointed
// container's process is taken (command, arguments, environment, working
// directory: it comes back as it was), with the request's metadata,
// labels, log path, mounts, devices, resources and security context; the
// annotations are the old ones with the request's on top. The caller calls done on the
// source once the container is created (or not).
func (m *Manager) restoreConfig(sb *sandbox, cfg *runtimeapi.ContainerConfig) (_ *runtimeapi.ContainerConfig, _ *restoreSource, err error) {
	src, err := m.checkpointSource(cfg.GetImage().GetImage())
	if err != nil || src == nil {
		return cfg, nil, err
	}
	defer func() {
		if err != nil {
			src.done()
		}
	}()
	if err := m.checkpointable(sb); err != nil {
		return nil, nil, err
	}
	orig, err := src.readCheckpoint()
	if err != nil {
		return nil, nil, err
	}
	out := proto.Clone(orig).(*runtimeapi.ContainerConfig)
	image, err := m.restoreImage(&src.config)
	if err != nil {
		return nil, nil, err
	}
	out.Metadata = cfg.GetMetadata()
	out.Image = &runtimeapi.ImageSpec{Image: image}
	out.Labels = cfg.GetLabels()
	out.LogPath = cfg.GetLogPath()
	out.Annotations = map[string]string{}
	for _, a := range []map[string]string{orig.GetAnnotations(), cfg.GetAnnotations()} {
		for k, v := range a {
			out.Annotations[k] = v
		}
	}
	if err := restoreMounts(orig, cfg); err != nil {
		return nil, nil, err
	}
	if err := restoreDevices(orig, cfg); err != nil {
		return nil, nil, err
	}
	// The archive (whoever wrote it: a checkpoint image is a tenant's)
	// grants nothing: host paths, devices, resources and the security
	// context are the request's alone.
	out.Mounts = cfg.GetMounts()
	out.Devices = cfg.GetDevices()
	out.CDIDevices = cfg.GetCDIDevices()
	out.Linux = cfg.GetLinux()
	return out, src, nil
}

// restoreDevices: every device of the checkpointed container must be
// requested again at the same place; the archive's own host paths are
// never used.
func restoreDevices(orig, cfg *runtimeapi.ContainerConfig) error {
	have := map[string]bool{}
	for _, d := range cfg.GetDevices() {
		have[filepath.Clean(d.GetContainerPath())] = true
	}
	for _, d := range cfg.GetCDIDevices() {
		have["cdi:"+d.GetName()] = true
	}
	var missing []string
	for _, d := range orig.GetDevices() {
		if p := filepath.Clean(d.GetContainerPath()); !have[p] {
			missing = append(missing, p)
		}
	}
	for _, d := range orig.GetCDIDevices() {
		if !have["cdi:"+d.GetName()] {
			missing = append(missing, d.GetName())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return errdefs.InvalidArgument("restoring needs the checkpointed container's devices %s in the container config", strings.Join(missing, ", "))
	}
	return nil
}

// restoreImage finds the checkpointed container's image on this node: by
// digest first (the image it ran, not whatever its tag names now), then
// by name. It is not pulled: the kubelet pulled the checkpoint, not the
// image under it.
func (m *Manager) restoreImage(c *checkpoint.ContainerConfig) (string, error) {
	for _, ref := range []string{c.RootfsImageRef, c.RootfsImageName, c.RootfsImage} {
		if ref == "" {
			continue
		}
		if _, err := m.images.Get(ref); err == nil {
			return ref, nil
		}
	}
	return "", errdefs.FailedPrecondition("the checkpointed container's image %s (%s) is not on this node: pull it before restoring", c.RootfsImageName, c.RootfsImageRef)
}

// restoreMounts: every mount of the checkpointed container must be given
// again, at the same place (CRIU puts the processes back over the same
// mount tree; as CRI-O, berth does not reuse host paths from an archive
// that the request does not name).
func restoreMounts(orig, cfg *runtimeapi.ContainerConfig) error {
	have := map[string]bool{}
	for _, mt := range cfg.GetMounts() {
		have[filepath.Clean(mt.GetContainerPath())] = true
	}
	var missing []string
	for _, mt := range orig.GetMounts() {
		if p := filepath.Clean(mt.GetContainerPath()); !have[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return errdefs.InvalidArgument("restoring needs the checkpointed container's mounts at %s in the container config", strings.Join(missing, ", "))
	}
	return nil
}

// configFromSpec is the CRI config of a container from its OCI spec, for
// archives that carry no CRI config (CRI-O's, containerd's).
func configFromSpec(s *specs.Spec) *runtimeapi.ContainerConfig {
	out := &runtimeapi.ContainerConfig{}
	if p := s.Process; p != nil {
		out.Command, out.Envs, out.WorkingDir = p.Args, nil, p.Cwd
		for _, e := range p.Env {
			k, v, _ := strings.Cut(e, "=")
			out.Envs = append(out.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
		}
	}
	var annotations map[string]string
	if raw := s.Annotations["io.kubernetes.cri-o.Annotations"]; raw != "" && json.Unmarshal([]byte(raw), &annotations) == nil {
		out.Annotations = annotations
	}
	return out
}

// unpack puts the archive's CRIU images beside the new container's
// writable layer and its layer changes into the (not yet mounted) upper
// directory, and continues its log: before the shim opens it.
func (r *restoreSource) unpack(ctx context.Context, sb *sandbox, cfg *runtimeapi.ContainerConfig, rw string, lowers []string) error {
	if r == nil {
		return nil
	}
	if r.sandboxImage != "" {
		return r.unpackLog(ctx, sb, cfg)
	}
	upper := filepath.Join(rw, "upper")
	for _, d := range []string{rw, r.images(rw), r.work(rw)} {
		if err := PrivateDir(d); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(upper, 0o755); err != nil { //nolint:gosec // the container's /, as mountRootfs makes it
		return err
	}
	t := checkpoint.Targets{Images: r.images(rw), Upper: upper, Lowers: lowers}
	if dir, p := sb.cfg.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		t.Log = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(t.Log), 0o755); err != nil { //nolint:gosec // the kubelet's pod log dir, 0755 as the kubelet makes it
			return err
		}
	}
	if err := checkpoint.Unpack(ctx, r.src, t); err != nil {
		return fmt.Errorf("restore from %s: %w", r.src, err)
	}
	return nil
}

// unpackLog continues a gVisor container's log from its checkpoint.
func (r *restoreSource) unpackLog(ctx context.Context, sb *sandbox, cfg *runtimeapi.ContainerConfig) error {
	dir, p := sb.cfg.GetLogDirectory(), cfg.GetLogPath()
	if dir == "" || p == "" {
		return nil
	}
	log := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil { //nolint:gosec // the kubelet's pod log dir, 0755 as the kubelet makes it
		return err
	}
	if err := checkpoint.UnpackLog(ctx, r.src, log); err != nil {
		return fmt.Errorf("restore from %s: %w", r.src, err)
	}
	return nil
}

func (r *restoreSource) images(rw string) string {
	return filepath.Join(rw, "restore", checkpoint.ImagesDir)
}
func (r *restoreSource) work(rw string) string { return filepath.Join(rw, "restore") }

// shimOptions makes the shim restore the container at Start; nil for a
// container that is not restored.
func (r *restoreSource) shimOptions(rw string) *shimv1.RestoreOptions {
	if r == nil {
		return nil
	}
	if r.sandboxImage != "" {
		return &shimv1.RestoreOptions{ImagePath: r.sandboxImage}
	}
	return &shimv1.RestoreOptions{ImagePath: r.images(rw), WorkPath: r.work(rw)}
}
