package pod

import (
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/store"
)

// containerRecord is a container as stored.
type containerRecord struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandboxID"`
	Name      string `json:"name"`
	Config    []byte `json:"config"` // ContainerConfig, protobuf
	// ImageName is the image's name as status reports it (container_image.go:
	// records of earlier versions may hold the image ID the kubelet gave),
	// ImageRef its digest reference (or ID), ImageID the config digest.
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
	// wire is the container's ListContainers item, encoded
	// (list_wire.go).
	wire wireItem[containerWireKey]
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
	return m.db.Group(func(tx *store.Tx) error { return tx.Put(bucketContainers, rec.ID, rec) })
}

func (m *Manager) ctrBundle(id string) string { return filepath.Join(m.ctrStateDir(), id) }
