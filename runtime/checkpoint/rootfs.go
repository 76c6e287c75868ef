package checkpoint

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// DiffOptions say where a container's writable layer is and what of it
// is not the container's own.
type DiffOptions struct {
	// Upper is the overlay's upper directory, Lowers its lower ones (top
	// first): a directory made opaque in Upper hides what the lowers had
	// there, which is listed as deleted.
	Upper  string
	Lowers []string
	// Skip are paths ("/etc/hosts") the runtime made as mount points for
	// the container's mounts: they come back with the mounts, not with
	// the layer (CRI-O leaves its bind mounts' targets out likewise).
	Skip []string
}

// WriteDiff writes the changes of the writable layer as a plain tar to
// dir/rootfs-diff.tar and the paths it deleted (overlay whiteouts, and
// what an opaque directory hides) to dir/deleted.files. The container is
// to be frozen meanwhile, so that the layer matches the CRIU images; the
// walk follows no symlink and opens only regular files, without blocking.
func WriteDiff(o DiffOptions, dir string) (err error) {
	f, err := os.OpenFile(filepath.Join(dir, RootfsDiff), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w, err := writeTar(f, o)
	if err != nil {
		return fmt.Errorf("writable layer: %w", err)
	}
	sort.Strings(w.deleted)
	data, err := json.Marshal(append([]string{}, w.deleted...))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, DeletedFiles), data, 0o600)
}

// WriteTree writes what is under dir (a pod's /dev/shm: a tmpfs with no
// lower layer) as a plain tar at dst, 0600, as WriteDiff writes a layer.
func WriteTree(dir, dst string) (err error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = writeTar(f, DiffOptions{Upper: dir})
	return err
}

// writeTar walks o.Upper into a tar on f.
func writeTar(f *os.File, o DiffOptions) (*diffWriter, error) {
	w := &diffWriter{tw: tar.NewWriter(f), o: o, links: map[uint64]string{}, skip: map[string]bool{}}
	for _, s := range o.Skip {
		w.skip[path.Clean("/"+s)] = true
	}
	if err := filepath.WalkDir(o.Upper, w.visit); err != nil {
		return nil, err
	}
	return w, w.tw.Close()
}

type diffWriter struct {
	tw      *tar.Writer
	o       DiffOptions
	links   map[uint64]string // inode -> first name, for hard links
	skip    map[string]bool
	deleted []string
}

func (w *diffWriter) visit(p string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(w.o.Upper, p)
	if err != nil || rel == "." {
		return err
	}
	abs := "/" + filepath.ToSlash(rel)
	if w.skip[abs] {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	fi, err := d.Info()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*unix.Stat_t)
	if !ok {
		st = &unix.Stat_t{}
		if err := unix.Lstat(p, st); err != nil {
			return err
		}
	}
	// An overlay whiteout: a 0:0 character device.
	if fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
		w.deleted = append(w.deleted, abs)
		return nil
	}
	if fi.IsDir() && opaque(p) {
		if err := w.hidden(p, rel, abs); err != nil {
			return err
		}
	}
	return w.add(p, filepath.ToSlash(rel), fi, st)
}

// opaque reports an overlay opaque directory (trusted.overlay.opaque=y).
func opaque(p string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// hidden lists as deleted what the lower layers hold in an opaque
// directory and the upper one does not: the merged view shows only the
// upper's entries there.
func (w *diffWriter) hidden(p, rel, abs string) error {
	own := map[string]bool{}
	entries, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range entries {
		own[e.Name()] = true
	}
	seen := map[string]bool{}
	for _, lower := range w.o.Lowers {
		root, err := os.OpenRoot(lower)
		if err != nil {
			return err
		}
		names, err := readDirNames(root, rel)
		_ = root.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			if !own[n] && !seen[n] {
				seen[n] = true
				w.deleted = append(w.deleted, path.Join(abs, n))
			}
		}
	}
	return nil
}

// readDirNames lists rel inside root; a missing directory (or a
// non-directory there) has nothing to hide.
func readDirNames(root *os.Root, rel string) ([]string, error) {
	d, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }()
	names, err := d.Readdirnames(-1)
	if errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	return names, err
}

func (w *diffWriter) add(p, rel string, fi fs.FileInfo, st *unix.Stat_t) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	hdr.Uname, hdr.Gname = "", ""
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		if first, ok := w.links[st.Ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return w.tw.WriteHeader(hdr)
		}
		w.links[st.Ino] = rel
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), p)
	defer func() { _ = f.Close() }()
	n, err := io.Copy(w.tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("%s changed size while written (%d of %d bytes)", strings.TrimPrefix(rel, "/"), n, hdr.Size)
	}
	return nil
}
