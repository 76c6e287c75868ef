package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A pod checkpoint (the CRI's CheckpointPod) is a directory the caller
// provides; the CRI leaves its layout to the runtime. berth's is
//
//	pod.json               PodDump: the pod's config, handler and
//	                       containers
//	shm.tar                the pod's /dev/shm, when it has its own
//	containers/<name>/     one container, in the single-container layout
//	                       (config.dump, spec.dump, checkpoint/, ...)
//
// so that each container's directory is what a restore of one container
// reads (a Source), as an OCI checkpoint image's layer is.
const (
	PodDumpFile   = "pod.json"
	ShmTar        = "shm.tar"
	ContainersDir = "containers"
	// PodFormat is the version of the layout; a restore refuses others.
	PodFormat = 1
)

// PodDump is pod.json.
type PodDump struct {
	Format int `json:"format"`
	// Engine is who wrote it ("berth").
	Engine string `json:"engine"`
	// ID is the checkpointed pod's id.
	ID string `json:"id"`
	// Config is its PodSandboxConfig (protobuf JSON).
	Config json.RawMessage `json:"config"`
	// Handler is its RuntimeClass handler, RuntimeKind that handler's
	// runtime family ("runc"): a restore needs one of the same family.
	Handler     string `json:"handler"`
	RuntimeKind string `json:"runtimeKind"`
	// Shm says shm.tar holds the pod's /dev/shm.
	Shm            bool           `json:"shm,omitempty"`
	Containers     []PodContainer `json:"containers"`
	CheckpointedAt time.Time      `json:"checkpointedTime"`
}

// PodContainer is one container of a pod checkpoint.
type PodContainer struct {
	// Name is its CRI metadata name, which a restore matches.
	Name string `json:"name"`
	// ID was its id in the checkpointed pod.
	ID string `json:"id"`
}

// Dir is the container's directory, relative to the pod checkpoint.
func (c PodContainer) Dir() string { return path.Join(ContainersDir, c.Name) }

// ValidName refuses a container name that cannot be a directory name of
// the checkpoint (CRI names are free text; Kubernetes' are DNS labels).
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("container name %q cannot name a directory of the checkpoint", name)
	}
	return nil
}

// ReadPodDump reads and checks dir/pod.json: a known format, unique
// container names that are plain names.
func ReadPodDump(dir string) (*PodDump, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }()
	f, err := root.OpenFile(PodDumpFile, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", PodDumpFile)
	}
	e := Entry{Name: PodDumpFile, Size: fi.Size(), r: f}
	data, err := e.Read()
	if err != nil {
		return nil, err
	}
	var d PodDump
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", PodDumpFile, err)
	}
	if d.Format != PodFormat {
		return nil, fmt.Errorf("%s: format %d, berth reads %d", PodDumpFile, d.Format, PodFormat)
	}
	if len(d.Containers) == 0 {
		return nil, fmt.Errorf("%s lists no container", PodDumpFile)
	}
	seen := map[string]bool{}
	for _, c := range d.Containers {
		if err := ValidName(c.Name); err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s lists container %q twice", PodDumpFile, c.Name)
		}
		seen[c.Name] = true
	}
	return &d, nil
}

// WritePodDump writes dir/pod.json.
func WritePodDump(dir string, d *PodDump) error {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PodDumpFile), data, 0o600)
}
