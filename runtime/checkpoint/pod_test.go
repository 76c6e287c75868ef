package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPublish: the staged checkpoint moves into the empty output
// directory; a directory that is not empty is refused and left alone.
func TestPublish(t *testing.T) {
	stage, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(stage, PodDumpFile), "{}")
	write(t, filepath.Join(stage, ContainersDir, "a", ConfigDump), "{}")
	if err := Publish(stage, out); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{PodDumpFile, filepath.Join(ContainersDir, "a", ConfigDump)} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("published checkpoint lacks %s: %v", p, err)
		}
	}
	if err := EmptyDir(out); err == nil {
		t.Error("EmptyDir of a written checkpoint: no error")
	}
	write(t, filepath.Join(stage, "more"), "x")
	if err := Publish(stage, out); err == nil {
		t.Error("Publish into a directory that is not empty succeeded")
	}
	if _, err := os.Stat(filepath.Join(out, "more")); err == nil {
		t.Error("a refused Publish wrote into the directory")
	}
}

// TestCopyTree: across filesystems, Publish copies through an os.Root
// on the output directory, modes kept.
func TestCopyTree(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "c", "checkpoint", "pages-1.img"), "pages")
	if err := os.Chmod(filepath.Join(src, "c", "checkpoint", "pages-1.img"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(out)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := copyTree(filepath.Join(src, "c"), root, "c"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(out, "c", "checkpoint", "pages-1.img"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("copied image: %v %v", fi, err)
	}
}

// TestDirSource: a checkpoint directory is read like an archive, without
// following a symlink out of it or reading what is not a regular file.
func TestDirSource(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	write(t, filepath.Join(dir, ConfigDump), "{}")
	write(t, filepath.Join(dir, SpecDump), "{}")
	write(t, filepath.Join(dir, ImagesDir, "inventory.img"), "criu")
	write(t, filepath.Join(outside, "secret"), "host file")
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, ContainerLog)); err != nil {
		t.Fatal(err)
	}
	src := DirSource(dir)
	if !src.IsCheckpoint() || DirSource(outside).IsCheckpoint() {
		t.Fatal("IsCheckpoint tells checkpoint directories from others wrongly")
	}
	var names []string
	err := src.Walk(func(e *Entry) error {
		names = append(names, e.Name)
		if e.Name == ContainerLog {
			t.Errorf("a symlink was read")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"checkpoint/inventory.img", ConfigDump, SpecDump}; !slices.Equal(names, want) {
		t.Errorf("walked %v, want %v", names, want)
	}
}

// TestReadPodDump refuses pod.json files a restore cannot trust.
func TestReadPodDump(t *testing.T) {
	for name, body := range map[string]string{
		"format":    `{"format": 2, "containers": [{"name": "a"}]}`,
		"no ctrs":   `{"format": 1}`,
		"twice":     `{"format": 1, "containers": [{"name": "a"}, {"name": "a"}]}`,
		"traversal": `{"format": 1, "containers": [{"name": ".."}]}`,
		"a path":    `{"format": 1, "containers": [{"name": "a/../../x"}]}`,
		"not json":  `{`,
		"good":      `{"format": 1, "containers": [{"name": "a"}, {"name": "b"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, PodDumpFile), body)
			_, err := ReadPodDump(dir)
			if (err == nil) != (name == "good") {
				t.Errorf("ReadPodDump: %v", err)
			}
		})
	}
}

// TestWriteTree: the pod's /dev/shm is written as a plain tar.
func TestWriteTree(t *testing.T) {
	shm, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(shm, "count"), "42")
	write(t, filepath.Join(shm, "sub", "seg"), "x")
	tarPath := filepath.Join(out, ShmTar)
	if err := WriteTree(shm, tarPath); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, tarPath)
	for _, want := range []string{"count", "sub/", "sub/seg"} {
		if !slices.Contains(names, want) {
			t.Errorf("shm tar lacks %s: %v", want, names)
		}
	}
	if fi, err := os.Stat(tarPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("shm tar: %v %v", fi, err)
	}
}

// TestPodDumpImages: pod.json's process-image marker must agree with the
// runtime family that wrote it, and a pod checkpoint written before the
// marker existed is CRIU's.
func TestPodDumpImages(t *testing.T) {
	for name, tc := range map[string]struct {
		kind, images string
		want         string // "" when refused
	}{
		"runc, no marker": {"runc", "", ImagesCRIU},
		"runc":            {"runc", ImagesCRIU, ImagesCRIU},
		"runsc":           {"runsc", ImagesGVisor, ImagesGVisor},
		"runsc as criu":   {"runsc", ImagesCRIU, ""},
		"runsc unmarked":  {"runsc", "", ""},
		"runc as gvisor":  {"runc", ImagesGVisor, ""},
		"unknown images":  {"runc", "zfs", ""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d := &PodDump{Format: PodFormat, RuntimeKind: tc.kind, Images: tc.images, Config: []byte("{}"), Containers: []PodContainer{{Name: "a"}}}
			if err := WritePodDump(dir, d); err != nil {
				t.Fatal(err)
			}
			got, err := ReadPodDump(dir)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("ReadPodDump accepted %s images from %s", tc.images, tc.kind)
			case tc.want != "" && err != nil:
				t.Errorf("ReadPodDump: %v", err)
			case tc.want != "" && got.Kind() != tc.want:
				t.Errorf("Kind() = %q, want %q", got.Kind(), tc.want)
			}
		})
	}
}

// TestCopyGVisorImage: only the flat regular files of gvisor/ are
// copied; without the state file among them, nothing is restored.
func TestCopyGVisorImage(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, GVisorDir, GVisorStateFile), "state")
	write(t, filepath.Join(src, GVisorDir, "pages.img"), "pages")
	if err := os.Symlink("/etc/hostname", filepath.Join(src, GVisorDir, "pages_meta.img")); err != nil {
		t.Fatal(err)
	}
	if err := CopyGVisorImage(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(dst)
	var got []string
	for _, n := range names {
		got = append(got, n.Name())
	}
	if !slices.Equal(got, []string{GVisorStateFile, "pages.img"}) {
		t.Errorf("copied %v", got)
	}
	if err := CopyGVisorImage(t.Context(), t.TempDir(), t.TempDir()); err == nil {
		t.Error("a checkpoint without a gVisor image was copied")
	}
}

// TestCheckpointDirsNotFollowed: a pod checkpoint's gvisor/ or container
// directory that is a symlink (to another pod's checkpoint, or within its
// own) is not read through.
func TestCheckpointDirsNotFollowed(t *testing.T) {
	other := t.TempDir()
	write(t, filepath.Join(other, GVisorDir, GVisorStateFile), "another pod's state")
	write(t, filepath.Join(other, "containers", "c", ConfigDump), "{}")
	write(t, filepath.Join(other, "containers", "c", SpecDump), "{}")
	for name, link := range map[string]string{
		"outside": other,
		"inside":  "own", // a directory of the same checkpoint
	} {
		src := t.TempDir()
		target := link
		if link == "own" {
			write(t, filepath.Join(src, "own", GVisorDir, GVisorStateFile), "state")
			write(t, filepath.Join(src, "own", "containers", "c", ConfigDump), "{}")
			write(t, filepath.Join(src, "own", "containers", "c", SpecDump), "{}")
			target = filepath.Join(src, "own")
		}
		if err := os.Symlink(filepath.Join(target, GVisorDir), filepath.Join(src, GVisorDir)); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(src, "containers"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(target, "containers", "c"), filepath.Join(src, "containers", "c")); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		if err := CopyGVisorImage(t.Context(), src, dst); err == nil {
			t.Errorf("%s: gvisor/ copied through a symlink", name)
		}
		if names, _ := os.ReadDir(dst); len(names) != 0 {
			t.Errorf("%s: %d files copied", name, len(names))
		}
		if DirSourceIn(src, "containers/c").IsCheckpoint() {
			t.Errorf("%s: a container directory read through a symlink", name)
		}
		if err := DirSourceIn(src, "containers/c").Walk(func(*Entry) error { return nil }); err == nil {
			t.Errorf("%s: a container directory walked through a symlink", name)
		}
	}
	// The real thing still reads.
	src := t.TempDir()
	write(t, filepath.Join(src, "containers", "c", ConfigDump), "{}")
	write(t, filepath.Join(src, "containers", "c", SpecDump), "{}")
	if !DirSourceIn(src, "containers/c").IsCheckpoint() {
		t.Error("a container directory is no checkpoint")
	}
}
