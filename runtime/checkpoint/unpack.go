package checkpoint

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/archive"
)

// Targets are where Unpack puts an archive's parts for a restore.
type Targets struct {
	// Images receives checkpoint/ (the CRIU images); it must exist.
	Images string
	// Upper is the new container's overlay upper directory, not mounted
	// yet: rootfs-diff.tar is unpacked into it and deleted.files become
	// whiteouts, so the new rootfs is the old one. Lowers are the image's
	// layers (top first), where a hard link to an image file is found.
	Upper  string
	Lowers []string
	// Log, when set, receives container.log: the restored container's
	// log goes on from the checkpointed one's, as with CRI-O and
	// containerd.
	Log string
}

// Unpack reads the checkpoint src into t. Everything is written through
// berth's layer unpacker (runtime/archive: an os.Root on the target, no
// symlink or ".." leaves it, nothing but regular files and directories
// opened), and the CRIU images must be flat regular files: the checkpoint
// is input, whoever wrote it. Nothing of src changes.
func Unpack(ctx context.Context, src Source, t Targets) error {
	images, err := os.OpenRoot(t.Images)
	if err != nil {
		return err
	}
	defer func() { _ = images.Close() }()
	var deleted []string
	opts := archive.Options{Parents: func() ([]string, error) { return t.Lowers, nil }}
	err = src.Walk(func(e *Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch dir, base := path.Split(e.Name); {
		case dir == ImagesDir+"/":
			return copyInto(images, base, e.Reader())
		case e.Name == RootfsDiff:
			if _, err := archive.Apply(ctx, e.Reader(), t.Upper, opts); err != nil {
				return fmt.Errorf("%s: %w", RootfsDiff, err)
			}
		case e.Name == DeletedFiles:
			data, err := e.Read()
			if err != nil {
				return err
			}
			if err := json.Unmarshal(data, &deleted); err != nil {
				return fmt.Errorf("%s: %w", DeletedFiles, err)
			}
		case e.Name == ContainerLog && t.Log != "":
			return copyLog(t.Log, e.Reader())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := os.Stat(path.Join(t.Images, "inventory.img")); err != nil {
		return fmt.Errorf("the archive holds no CRIU images (%s/inventory.img): %w", ImagesDir, err)
	}
	return whiteouts(ctx, t.Upper, deleted, opts)
}

// copyInto writes a CRIU image file, a plain name, into images.
func copyInto(images *os.Root, name string, r io.Reader) (err error) {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("checkpoint image %q: not a plain file name", name)
	}
	f, err := images.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(f, r)
	return err
}

// copyLog appends the old log to the new one, which nothing has written
// yet; a symlink there is refused, as the shim refuses it.
func copyLog(p string, r io.Reader) (err error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o640) //nolint:gosec // the CRI log, group-readable for log collectors as the shim makes it
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("container log %s is not a regular file", p)
	}
	_, err = io.Copy(f, r)
	return err
}

// whiteouts hides the deleted paths from the new rootfs: an OCI layer of
// ".wh." entries through the same unpacker, which makes them overlay
// whiteouts in the upper directory.
func whiteouts(ctx context.Context, upper string, deleted []string, opts archive.Options) error {
	if len(deleted) == 0 {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range deleted {
		clean := strings.TrimPrefix(path.Clean("/"+d), "/")
		if clean == "" {
			continue
		}
		dir, base := path.Split(clean)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o600}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := archive.Apply(ctx, &buf, upper, opts); err != nil {
		return fmt.Errorf("%s: %w", DeletedFiles, err)
	}
	return nil
}
