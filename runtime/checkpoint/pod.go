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
//	pod.json               PodDump: the pod's config, handler, runtime
//	                       family, image kind and containers
//	shm.tar                the pod's /dev/shm, when it has its own
//	containers/<name>/     one container, in the single-container layout
//	                       (config.dump, spec.dump, checkpoint/, ...)
//	gvisor/                gVisor pods only: runsc's image of the whole
//	                       sandbox (checkpoint.img, pages_meta.img,
//	                       pages.img)
//
// so that each container's directory is what a restore of one container
// reads (a Source), as an OCI checkpoint image's layer is. pod.json's
// "images" says which of the two holds the processes: "criu" (each
// container's checkpoint/, runc) or "gvisor" (gvisor/, with only the
// metadata in each container's directory); a restore refuses a pod
// checkpoint of the other kind than its handler's.
const (
	PodDumpFile   = "pod.json"
	ShmTar        = "shm.tar"
	ContainersDir = "containers"
	// GVisorDir holds runsc's image of a gVisor pod's sandbox.
	GVisorDir = "gvisor"
	// PodFormat is the version of the layout; a restore refuses others.
	PodFormat = 1
)

// The kinds of process images a pod checkpoint holds (PodDump.Images).
const (
	// ImagesCRIU: one CRIU image directory per container (runc). Pod
	// checkpoints written before PodDump.Images existed are of this kind.
	ImagesCRIU = "criu"
	// ImagesGVisor: one runsc image of the whole sandbox, in GVisorDir.
	ImagesGVisor = "gvisor"
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
	// Images is the kind of process images (ImagesCRIU, ImagesGVisor);
	// "" is ImagesCRIU. Kind() reads it.
	Images string `json:"images,omitempty"`
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

// Kind is the kind of process images the checkpoint holds.
func (d *PodDump) Kind() string {
	if d.Images == "" {
		return ImagesCRIU
	}
	return d.Images
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
	// The marker and the runtime family agree: only runsc writes gVisor
	// images, and runsc pods only those.
	switch k := d.Kind(); {
	case k != ImagesCRIU && k != ImagesGVisor:
		return nil, fmt.Errorf("%s: unknown process images %q (%s or %s)", PodDumpFile, k, ImagesCRIU, ImagesGVisor)
	case (k == ImagesGVisor) != (d.RuntimeKind == "runsc"):
		return nil, fmt.Errorf("%s: %s images from a %q handler: no runtime writes those", PodDumpFile, k, d.RuntimeKind)
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
