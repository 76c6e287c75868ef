// Package archive unpacks image layer tarballs into overlayfs lower
// directories. Every write goes through an os.Root opened on the layer
// directory, and paths are resolved with the layer directory as "/", so
// neither "..", absolute names, symlinks nor hardlinks can reach outside.
// Nothing but regular files and directories is ever opened: a FIFO would
// block the unpack, a device's driver acts on open.
package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	maxSymlinks    = 255
)

// ErrUnsafe marks layer entries that try to leave the layer directory in a
// way that cannot be contained, such as a path through a non-directory.
var ErrUnsafe = errors.New("unsafe layer entry")

// Options tunes Apply.
type Options struct {
	// Parents returns the unpacked directories of the lower layers, nearest
	// first. A hardlink to a file that the layer itself does not hold is
	// resolved there (the file is copied up, as overlayfs would). It is
	// called only then, so that it may wait for lower layers to finish.
	Parents func() ([]string, error)
}

// Stats is what an unpacked layer occupies on disk.
type Stats struct {
	Bytes  int64 // allocated bytes (st_blocks * 512)
	Inodes int64
}

// Apply extracts the uncompressed tar stream r into dir, which must exist.
// Whiteouts become overlayfs whiteouts (0:0 character devices) and opaque
// markers become the trusted.overlay.opaque xattr. Requires root for
// ownership, device nodes and trusted xattrs.
func Apply(ctx context.Context, r io.Reader, dir string, opts Options) (Stats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, err
	}
	defer func() { _ = root.Close() }()
	a := &applier{ctx: ctx, root: root, opts: opts, buf: make([]byte, 128<<10), seen: map[string]bool{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("read layer: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return a.stats, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	// Drain trailing padding so that a digest computed over the stream is
	// over all of it.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return a.stats, err
	}
	return a.stats, a.finishDirs()
}

type applier struct {
	ctx   context.Context
	root  *os.Root
	opts  Options
	buf   []byte
	stats Stats
	dirs  []dirTimes
	seen  map[string]bool // paths already counted in stats
}

type dirTimes struct {
	path         string
	atime, mtime time.Time
}

func (a *applier) entry(hdr *tar.Header, body io.Reader) error {
	rel := cleanName(hdr.Name)
	if rel == "." {
		// The layer's own root directory: take its metadata, not its place.
		if hdr.Typeflag == tar.TypeDir {
			return a.setMeta(".", hdr)
		}
		return nil
	}
	parent, base := path.Split(rel)
	parent, err := a.resolve(strings.TrimSuffix(parent, "/"))
	if err != nil {
		return err
	}
	if err := a.mkdirAll(parent); err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		return a.setOpaque(parent)
	case strings.HasPrefix(base, whiteoutPrefix):
		return a.whiteout(path.Join(parent, strings.TrimPrefix(base, whiteoutPrefix)))
	}
	target := path.Join(parent, base)

	if fi, err := a.root.Lstat(target); err == nil {
		if fi.IsDir() && hdr.Typeflag == tar.TypeDir {
			return a.setMeta(target, hdr)
		}
		if err := a.root.RemoveAll(target); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := a.root.Mkdir(target, 0o700); err != nil {
			return err
		}
	case tar.TypeReg, tar.TypeGNUSparse: // tar.Reader turns TypeRegA into TypeReg or TypeDir
		if err := a.writeFile(target, hdr, body); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := a.root.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		return a.hardlink(target, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := a.atParent(target, func(fd int, name string) error { return unix.Mknodat(fd, name, mode, dev) }); err != nil {
			return err
		}
	default:
		// Global PAX headers and other metadata-only entries.
		return nil
	}
	return a.setMeta(target, hdr)
}

// cleanName makes a tar name relative to the layer root: absolute names and
// leading ".." are clamped at the root, as if the root were "/".
func cleanName(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// resolve follows symlinks in rel with the layer directory as "/" and
// returns a symlink-free relative path. Components that do not exist yet
// are kept as they are (mkdirAll creates them).
func (a *applier) resolve(rel string) (string, error) {
	if rel == "" || rel == "." {
		return ".", nil
	}
	pending := strings.Split(rel, "/")
	var done []string
	links := 0
	for len(pending) > 0 {
		comp := pending[0]
		pending = pending[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cand := path.Join(append(slices.Clone(done), comp)...)
		fi, err := a.root.Lstat(cand)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			done = append(done, comp)
			continue
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("%w: too many symlinks in %q", ErrUnsafe, rel)
			}
			dest, err := a.root.Readlink(cand)
			if err != nil {
				return "", err
			}
			if path.IsAbs(dest) {
				done = done[:0]
			}
			pending = append(strings.Split(dest, "/"), pending...)
		case !fi.IsDir():
			return "", fmt.Errorf("%w: %q is not a directory", ErrUnsafe, cand)
		default:
			done = append(done, comp)
		}
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// mkdirAll creates the missing directories of the resolved path rel.
func (a *applier) mkdirAll(rel string) error {
	if rel == "." {
		return nil
	}
	cur := ""
	for _, comp := range strings.Split(rel, "/") {
		cur = path.Join(cur, comp)
		err := a.root.Mkdir(cur, 0o755)
		if err == nil {
			a.count(cur)
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err := a.root.Lstat(cur); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: %q is not a directory", ErrUnsafe, cur)
		}
	}
	return nil
}

func (a *applier) writeFile(target string, hdr *tar.Header, body io.Reader) error {
	f, err := a.root.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if isSparse(hdr) {
		err = a.writeSparse(f, body, hdr.Size)
	} else {
		_, err = io.CopyBuffer(f, io.LimitReader(body, hdr.Size), a.buf)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isSparse reports whether hdr is a sparse file, in the old GNU format or
// in GNU's PAX formats.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// sparseBlock is the granularity of the holes in sparse files.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// writeSparse writes the size bytes of a sparse entry, leaving a hole
// wherever a block is zero. Go's tar reader expands the holes into zeros
// and keeps the sparse map to itself; written out, the zeros would let a
// few bytes of layer fill the disk. Reading them still takes time, which
// the pull's progress timeout bounds through ctx.
func (a *applier) writeSparse(f *os.File, r io.Reader, size int64) error {
	for off := int64(0); off < size; {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, a.buf[:min(int64(len(a.buf)), size-off)])
		if err != nil {
			return err
		}
		if err := writeData(f, a.buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return f.Truncate(size)
}

// writeData writes the blocks of b that are not all zero, b being the
// file's content at off.
func writeData(f *os.File, b []byte, off int64) error {
	for start := 0; start < len(b); {
		end := start
		for end < len(b) && !isZero(b[end:min(end+sparseBlock, len(b))]) {
			end = min(end+sparseBlock, len(b))
		}
		if end == start {
			start = min(start+sparseBlock, len(b))
			continue
		}
		if _, err := f.WriteAt(b[start:end], off+int64(start)); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

func (a *applier) hardlink(target, linkname string) error {
	rel := cleanName(linkname)
	if rel == "." {
		return fmt.Errorf("%w: hardlink to the layer root", ErrUnsafe)
	}
	// link(2) does not follow a final symlink: resolve the parent only.
	dir, base := path.Split(rel)
	dir, err := a.resolve(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	src := path.Join(dir, base)
	err = a.root.Link(src, target)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The file lives in a lower layer: copy it up.
	var parents []string
	if a.opts.Parents != nil {
		if parents, err = a.opts.Parents(); err != nil {
			return err
		}
	}
	for _, dir := range parents {
		err := a.copyUp(dir, src, target)
		if errors.Is(err, errWhiteout) {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return fmt.Errorf("%w: hardlink target %q not found", ErrUnsafe, linkname)
}

// errWhiteout ends the search of lower layers: the file was deleted in the
// nearest one that names it.
var errWhiteout = errors.New("whited out")

// copyUp recreates src of the lower layer dir as target, as overlayfs's
// copy-up would: a regular file's content and extended attributes are
// copied, a symlink, FIFO or device node is made anew.
func (a *applier) copyUp(dir, src, target string) error {
	proot, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = proot.Close() }()
	fi, err := proot.Lstat(src)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch fi.Mode().Type() {
	case 0:
		return a.copyRegular(proot, src, target, st)
	case fs.ModeSymlink:
		err = a.copySymlink(proot, src, target)
	case fs.ModeNamedPipe, fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		if isWhiteout(st) {
			return errWhiteout
		}
		err = a.atParent(target, func(fd int, name string) error { return unix.Mknodat(fd, name, st.Mode, int(st.Rdev)) })
	default:
		return fmt.Errorf("%w: hardlink to lower %v %q", ErrUnsafe, fi.Mode().Type(), src)
	}
	if err != nil {
		return err
	}
	if err := a.root.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSymlink {
		// After chown, which clears setuid/setgid; mknod's mode had the umask.
		if err := a.root.Chmod(target, fi.Mode()); err != nil {
			return err
		}
	}
	return a.finishCopy(target, st)
}

func isWhiteout(st *syscall.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 }

func (a *applier) copySymlink(proot *os.Root, src, target string) error {
	dest, err := proot.Readlink(src)
	if err != nil {
		return err
	}
	return a.root.Symlink(dest, target)
}

// copyRegular copies the lower regular file src, whose Lstat is lst, with
// its owner, mode and extended attributes (set last: chown clears
// security.capability).
func (a *applier) copyRegular(proot *os.Root, src, target string, lst *syscall.Stat_t) error {
	in, err := openFile(proot, src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != lst.Ino || st.Dev != lst.Dev {
		return fmt.Errorf("%w: lower file %q changed while copied", ErrUnsafe, src)
	}
	out, err := a.root.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(out, in, a.buf)
	if err == nil {
		err = out.Chown(int(st.Uid), int(st.Gid))
	}
	if err == nil {
		err = out.Chmod(fileMode(st.Mode))
	}
	if err == nil {
		err = copyXattrs(int(in.Fd()), int(out.Fd()))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return a.finishCopy(target, lst)
}

// fileMode converts a stat mode's permission bits to an os.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// finishCopy gives a copied-up file the lower file's times.
func (a *applier) finishCopy(target string, st *syscall.Stat_t) error {
	if err := a.setTimes(target, time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())); err != nil {
		return err
	}
	a.count(target)
	return nil
}

// openFile opens rel under root for reading, without following a final
// symlink or waiting on a FIFO; callers open only what Lstat showed to be
// a regular file, and check what they got.
func openFile(root *os.Root, rel string) (*os.File, error) {
	parent, base := path.Split(rel)
	d, err := openDir(root, parent)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }()
	fd, err := unix.Openat(int(d.Fd()), base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// openDir opens the directory rel under root; O_DIRECTORY fails on
// anything else before it is opened.
func openDir(root *os.Root, rel string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	return root.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY, 0)
}

// copyXattrs copies the extended attributes of one file to another, but
// trusted.* ones (overlayfs's).
func copyXattrs(from, to int) error {
	names, err := xattrNames(from)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, "trusted.") {
			continue
		}
		val, err := xattr(from, name)
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(to, name, val, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func xattrNames(fd int) ([]string, error) {
	n, err := unix.Flistxattr(fd, nil)
	if err != nil || n == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, n)
	if n, err = unix.Flistxattr(fd, buf); err != nil {
		return nil, err
	}
	return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 }), nil
}

func xattr(fd int, name string) ([]byte, error) {
	n, err := unix.Fgetxattr(fd, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	n, err = unix.Fgetxattr(fd, name, buf)
	return buf[:max(n, 0)], err
}

func (a *applier) whiteout(target string) error {
	if err := a.root.RemoveAll(target); err != nil {
		return err
	}
	if err := a.atParent(target, func(fd int, name string) error {
		return unix.Mknodat(fd, name, unix.S_IFCHR, 0)
	}); err != nil {
		return err
	}
	a.count(target)
	return nil
}

func (a *applier) setOpaque(dir string) error {
	f, err := openDir(a.root, dir)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return unix.Fsetxattr(int(f.Fd()), "trusted.overlay.opaque", []byte("y"), 0)
}

// atParent calls fn with an fd of target's parent directory and its base
// name, for the *at system calls that os.Root does not offer.
func (a *applier) atParent(target string, fn func(fd int, name string) error) error {
	parent, base := path.Split(target)
	d, err := openDir(a.root, parent)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return fn(int(d.Fd()), base)
}

func (a *applier) setMeta(target string, hdr *tar.Header) error {
	if err := a.root.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	symlink := hdr.Typeflag == tar.TypeSymlink
	if !symlink {
		// After chown: chown clears setuid/setgid bits.
		if err := a.root.Chmod(target, hdr.FileInfo().Mode()); err != nil {
			return err
		}
	}
	// After chown too: it clears security.capability.
	if err := a.xattrs(target, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		a.dirs = append(a.dirs, dirTimes{target, hdr.AccessTime, hdr.ModTime})
		a.count(target)
		return nil
	}
	a.count(target)
	return a.setTimes(target, hdr.AccessTime, hdr.ModTime)
}

// xattrs applies the entry's extended attributes to a regular file or a
// directory (the only entries that carry them).
func (a *applier) xattrs(target string, hdr *tar.Header) error {
	if !hasXattrs(hdr) {
		return nil
	}
	var f *os.File
	var err error
	switch hdr.Typeflag {
	case tar.TypeDir:
		f, err = openDir(a.root, target)
	case tar.TypeReg, tar.TypeGNUSparse: // tar.Reader turns TypeRegA into TypeReg or TypeDir
		f, err = openFile(a.root, target)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return setXattrs(int(f.Fd()), hdr)
}

func (a *applier) setTimes(target string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return a.atParent(target, func(fd int, name string) error {
		if name == "" {
			name = "."
		}
		return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// finishDirs sets directory times last: creating their entries changed them.
func (a *applier) finishDirs() error {
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if _, err := a.root.Lstat(d.path); errors.Is(err, fs.ErrNotExist) {
			continue // removed by a later entry
		}
		if err := a.setTimes(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// count adds target's allocation to the stats once per path.
func (a *applier) count(target string) {
	if a.seen[target] {
		return
	}
	fi, err := a.root.Lstat(target)
	if err != nil {
		return
	}
	a.seen[target] = true
	a.stats.Inodes++
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		a.stats.Bytes += st.Blocks * 512
	}
}

const xattrPrefix = "SCHILY.xattr."

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			return true
		}
	}
	return false
}

// setXattrs applies the layer's extended attributes, except trusted.* ones:
// those steer overlayfs and are berth's to set, not an image's.
func setXattrs(fd int, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || strings.HasPrefix(name, "trusted.") {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}
