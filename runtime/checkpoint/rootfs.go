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
	"syscall"

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

// writeTar walks o.Upper into a tar on f. The walk goes from opened
// directory to opened directory (openat, readlinkat and fstat relative to
// the parent's descriptor: no path is resolved again, so a directory
// swapped for a symlink mid-walk leads nowhere), follows no symlink and
// stays on o.Upper's filesystem: a mount inside the tree is not part of
// it. Entries come in lexical order, each directory before its content.
func writeTar(f *os.File, o DiffOptions) (*diffWriter, error) {
	w := &diffWriter{tw: tar.NewWriter(f), o: o, links: map[uint64]string{}, skip: map[string]bool{}}
	for _, s := range o.Skip {
		w.skip[path.Clean("/"+s)] = true
	}
	fd, err := unix.Open(o.Upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: o.Upper, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: o.Upper, Err: err}
	}
	w.dev = st.Dev
	names, err := readNames(fd)
	if err == nil {
		err = w.dir(fd, "", names, 0)
	}
	_ = unix.Close(fd)
	if err != nil {
		return nil, err
	}
	return w, w.tw.Close()
}

// maxDepth bounds the directories held open at once by a walk (a path
// deeper than this is longer than PATH_MAX anyway).
const maxDepth = 2048

type diffWriter struct {
	tw      *tar.Writer
	o       DiffOptions
	dev     uint64            // the tree's filesystem
	links   map[uint64]string // inode -> first name, for hard links
	skip    map[string]bool
	deleted []string
}

// readNames lists the open directory fd, sorted; fd stays open.
func readNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(dup)
	d := os.NewFile(uintptr(dup), "")
	defer func() { _ = d.Close() }()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// dir writes the entries names of the open directory dirfd, which is rel
// in the tree ("" for its root).
func (w *diffWriter) dir(dirfd int, rel string, names []string, depth int) error {
	if depth >= maxDepth {
		return fmt.Errorf("%s: deeper than %d directories", rel, maxDepth)
	}
	for _, name := range names {
		if err := w.entry(dirfd, name, path.Join(rel, name), depth); err != nil {
			return err
		}
	}
	return nil
}

// entry writes name of the directory dirfd, rel in the tree, and what is
// below it if it is a directory.
func (w *diffWriter) entry(dirfd int, name, rel string, depth int) error {
	abs := "/" + rel
	if w.skip[abs] {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "lstat", Path: rel, Err: err}
	}
	if st.Dev != w.dev {
		return nil // a mount point: another filesystem, not the tree's
	}
	mode := st.Mode & unix.S_IFMT
	// An overlay whiteout: a 0:0 character device.
	if mode == unix.S_IFCHR && st.Rdev == 0 {
		w.deleted = append(w.deleted, abs)
		return nil
	}
	// What is opened is checked to be what was stat'ed: the tree may change
	// meanwhile. Directories and regular files are opened to be read, the
	// rest only as a path (O_PATH: no device opened, no FIFO waited on).
	flags := unix.O_PATH
	switch mode {
	case unix.S_IFDIR:
		flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NONBLOCK
	case unix.S_IFREG:
		flags = unix.O_RDONLY | unix.O_NONBLOCK
	}
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	opened, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || opened.Dev != st.Dev || opened.Ino != st.Ino || opened.Mode&unix.S_IFMT != mode {
		return fmt.Errorf("%s changed while written", rel)
	}
	if mode != unix.S_IFDIR {
		return w.add(fd, f, rel, fi, opened)
	}
	names, err := readNames(fd)
	if err != nil {
		return &fs.PathError{Op: "readdirent", Path: rel, Err: err}
	}
	if opaque(fd) {
		if err := w.hidden(names, rel, abs); err != nil {
			return err
		}
	}
	if err := w.add(fd, f, rel, fi, opened); err != nil {
		return err
	}
	return w.dir(fd, rel, names, depth+1)
}

// opaque reports an overlay opaque directory (trusted.overlay.opaque=y),
// the open directory fd.
func opaque(fd int) bool {
	buf := make([]byte, 8)
	n, err := unix.Fgetxattr(fd, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// hidden lists as deleted what the lower layers hold in an opaque
// directory and the upper one does not: the merged view shows only the
// upper's entries there: names, of the directory rel.
func (w *diffWriter) hidden(names []string, rel, abs string) error {
	own := map[string]bool{}
	for _, n := range names {
		own[n] = true
	}
	seen := map[string]bool{}
	for _, lower := range w.o.Lowers {
		root, err := os.OpenRoot(lower)
		if err != nil {
			return err
		}
		lnames, err := readDirNames(root, rel)
		_ = root.Close()
		if err != nil {
			return err
		}
		for _, n := range lnames {
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

// add writes the header of rel, and its content if it is a regular file:
// fd (f) is rel opened, fi and st its fstat.
func (w *diffWriter) add(fd int, f *os.File, rel string, fi fs.FileInfo, st *syscall.Stat_t) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = readlink(fd); err != nil {
			return &fs.PathError{Op: "readlink", Path: rel, Err: err}
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
	n, err := io.Copy(w.tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("%s changed size while written (%d of %d bytes)", rel, n, hdr.Size)
	}
	return nil
}

// readlink reads the target of the symlink opened (O_PATH) as fd.
func readlink(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
