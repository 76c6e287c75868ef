package checkpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: overlay whiteouts are device nodes, opaque markers trusted xattrs")
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDiffRoundTrip: the layer's changes written at checkpoint (files,
// links, whiteouts, what an opaque directory hides; mount points left
// out) come back as the same upper directory at restore, with the CRIU
// images and the log.
func TestDiffRoundTrip(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower, upper, stage := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "stage")
	write(t, filepath.Join(lower, "gone"), "image file")
	write(t, filepath.Join(lower, "op", "old"), "hidden")
	write(t, filepath.Join(lower, "op", "new"), "replaced")
	write(t, filepath.Join(upper, "a", "b"), "changed")
	write(t, filepath.Join(upper, "op", "new"), "mine")
	write(t, filepath.Join(upper, "etc", "hosts"), "") // a mount point
	if err := os.Symlink("a/b", filepath.Join(upper, "l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(upper, "a", "b"), filepath.Join(upper, "h")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "op"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("no trusted xattrs here: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(stage, ImagesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(stage, ImagesDir, "inventory.img"), "criu")
	write(t, filepath.Join(stage, ContainerLog), "old line\n")
	write(t, filepath.Join(stage, ConfigDump), "{}")
	write(t, filepath.Join(stage, SpecDump), "{}")
	if err := WriteDiff(DiffOptions{Upper: upper, Lowers: []string{lower}, Skip: []string{"/etc/hosts"}}, stage); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(stage, DeletedFiles))
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	if err := json.Unmarshal(data, &deleted); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/gone", "/op/old"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	names := tarNames(t, filepath.Join(stage, RootfsDiff))
	for _, want := range []string{"a/", "a/b", "l", "h", "op/", "op/new", "etc/"} {
		if !slices.Contains(names, want) {
			t.Errorf("rootfs diff lacks %s: %v", want, names)
		}
	}
	if slices.Contains(names, "etc/hosts") || slices.Contains(names, "gone") {
		t.Errorf("rootfs diff holds a mount point or a whiteout: %v", names)
	}

	archive := filepath.Join(dir, "ckpt.tar")
	if err := WriteArchive(stage, archive); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v", fi, err)
	}
	upper2, images, log := filepath.Join(dir, "upper2"), filepath.Join(dir, "images"), filepath.Join(dir, "new.log")
	for _, d := range []string{upper2, images} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := Unpack(context.Background(), ArchiveSource(archive), Targets{Images: images, Upper: upper2, Lowers: []string{lower}, Log: log}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper2, "a", "b")); err != nil || string(b) != "changed" {
		t.Errorf("a/b: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(upper2, "l")); err != nil || l != "a/b" {
		t.Errorf("l: %q %v", l, err)
	}
	var st1, st2 unix.Stat_t
	if unix.Stat(filepath.Join(upper2, "a", "b"), &st1) != nil || unix.Stat(filepath.Join(upper2, "h"), &st2) != nil || st1.Ino != st2.Ino {
		t.Errorf("h is no hard link of a/b")
	}
	for _, w := range []string{"gone", "op/old"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper2, w), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s is no whiteout: %v %+v", w, err, st)
		}
	}
	if b, err := os.ReadFile(filepath.Join(images, "inventory.img")); err != nil || string(b) != "criu" {
		t.Errorf("images: %q %v", b, err)
	}
	if b, err := os.ReadFile(log); err != nil || string(b) != "old line\n" {
		t.Errorf("log: %q %v", b, err)
	}
	if !IsArchive(archive) || IsArchive(filepath.Join(stage, RootfsDiff)) || IsArchive("busybox:1.36") {
		t.Error("IsArchive tells archives from other files and image names wrongly")
	}
}

func tarNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return out
		}
		out = append(out, hdr.Name)
	}
}

// TestUnpackRefusesEscapes: an archive is input; its names do not leave
// the directories they are unpacked into.
func TestUnpackRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/abs", "checkpoint/../../evil"} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			dir := t.TempDir()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, n := range []string{ConfigDump, SpecDump, ImagesDir + "/inventory.img", name} {
				if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o600, Size: 2}); err != nil {
					t.Fatal(err)
				}
				_, _ = tw.Write([]byte("{}"))
			}
			_ = tw.Close()
			archive := filepath.Join(dir, "a.tar")
			if err := os.WriteFile(archive, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			images := filepath.Join(dir, "images")
			_ = os.Mkdir(images, 0o700)
			err := Unpack(context.Background(), ArchiveSource(archive), Targets{Images: images, Upper: filepath.Join(dir, "upper")})
			if err == nil {
				t.Errorf("entry %q unpacked", name)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Errorf("entry %q written outside", name)
			}
		})
	}
}
