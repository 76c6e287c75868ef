package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// EmptyDir checks that p is an existing, empty directory, as CheckpointPod
// requires its output_path to be.
func EmptyDir(p string) error {
	root, err := os.OpenRoot(p)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	return emptyRoot(root)
}

func emptyRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	names, err := d.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty (it holds %s)", root.Name(), names[0])
	}
	return nil
}

// Publish moves what stage (berth's own directory) holds into out, an
// existing empty directory someone else owns (the kubelet's). Each entry
// is renamed relative to descriptors of both directories, so nothing out's
// owner swaps in is followed; across filesystems it is copied through an
// os.Root on out instead. On error, what was put into out is removed
// again; out itself stays, as the CRI asks.
func Publish(stage, out string) (err error) {
	outRoot, err := os.OpenRoot(out)
	if err != nil {
		return err
	}
	defer func() { _ = outRoot.Close() }()
	if err := emptyRoot(outRoot); err != nil {
		return err
	}
	outDir, err := outRoot.Open(".")
	if err != nil {
		return err
	}
	defer func() { _ = outDir.Close() }()
	stageDir, err := os.Open(stage) //nolint:gosec // berth's own staging directory
	if err != nil {
		return err
	}
	defer func() { _ = stageDir.Close() }()
	names, err := stageDir.Readdirnames(-1)
	if err != nil {
		return err
	}
	var placed []string
	defer func() {
		if err != nil {
			for _, n := range placed {
				_ = outRoot.RemoveAll(n)
			}
		}
	}()
	for _, n := range names {
		err := unix.Renameat2(int(stageDir.Fd()), n, int(outDir.Fd()), n, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EXDEV) {
			err = copyTree(filepath.Join(stage, n), outRoot, n)
		}
		if err != nil {
			return fmt.Errorf("put %s into %s: %w", n, out, err)
		}
		placed = append(placed, n)
	}
	return nil
}

// copyTree copies src (berth's: directories and regular files) to name in
// root, keeping modes; a partial copy is removed.
func copyTree(src string, root *os.Root, name string) (err error) {
	defer func() {
		if err != nil {
			_ = root.RemoveAll(name)
		}
	}()
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(name, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return root.Mkdir(dst, fi.Mode().Perm())
		case !fi.Mode().IsRegular():
			return nil
		}
		in, err := os.Open(p) //nolint:gosec // berth's own staging directory
		if err != nil {
			return err
		}
		defer func() { _ = in.Close() }()
		out, err := root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	})
}
