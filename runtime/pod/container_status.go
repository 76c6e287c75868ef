package pod

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/spec"
)

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
	imageSpec, imageRef, imageID := m.statusImage(c)
	rec := c.snapshot()
	st := &runtimeapi.ContainerStatus{
		Id:          rec.ID,
		Metadata:    c.cfg.GetMetadata(),
		State:       criContainerState(rec.State),
		CreatedAt:   rec.CreatedAt,
		StartedAt:   rec.StartedAt,
		FinishedAt:  rec.FinishedAt,
		ExitCode:    rec.ExitCode,
		Image:       imageSpec,
		ImageRef:    imageRef,
		ImageId:     imageID,
		Reason:      rec.Reason,
		Message:     rec.Message,
		Labels:      c.cfg.GetLabels(),
		Annotations: c.cfg.GetAnnotations(),
		Mounts:      statusMounts(c.cfg.GetMounts(), rec.VolumeRefs),
		LogPath:     rec.LogPath,
		User:        &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: rec.UID, Gid: rec.GID, SupplementalGroups: rec.Groups}},
		StopSignal:  effectiveStopSignal(rec.StopSignal, c.cfg.GetStopSignal()),
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

// ListContainers lists containers matching filter.
func (m *Manager) ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	m.eachListedContainer(f, func(c *container, rec containerRecord) {
		out = append(out, m.listItem(c, rec))
	})
	return out
}

// eachListedContainer calls fn with each container matching f, and its
// record.
func (m *Manager) eachListedContainer(f *runtimeapi.ContainerFilter, fn func(*container, containerRecord)) {
	m.mu.Lock()
	cs := make([]*container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		rec := c.snapshot()
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !strings.HasPrefix(rec.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != criContainerState(rec.State) {
			continue
		}
		if !matchLabels(c.cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		fn(c, rec)
	}
}

// listItem is the container as ListContainers lists it; of its record,
// only State and the image's names change during its life (listWire
// relies on it).
func (m *Manager) listItem(c *container, rec containerRecord) *runtimeapi.Container {
	imageSpec, imageRef, imageID := m.statusImage(c)
	return &runtimeapi.Container{
		Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: c.cfg.GetMetadata(),
		Image: imageSpec, ImageRef: imageRef, ImageId: imageID,
		State: criContainerState(rec.State), CreatedAt: rec.CreatedAt, Labels: c.cfg.GetLabels(), Annotations: c.cfg.GetAnnotations(),
	}
}

// effectiveStopSignal is the signal StopContainer sends, as the CRI names
// it: the one recorded at create (the request's, else the image's
// STOPSIGNAL, else SIGTERM); a record without one falls back to the
// request's, then SIGTERM, as containerd reports.
func effectiveStopSignal(recorded int, requested runtimeapi.Signal) runtimeapi.Signal {
	if s, ok := spec.CRISignal(recorded); ok {
		return s
	}
	if requested != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return requested
	}
	return runtimeapi.Signal_SIGNAL_SIGTERM
}
