package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Source is a checkpoint to restore one container from: an archive (the
// tar CheckpointContainer writes) or a directory holding the same files
// (a container's directory in a pod checkpoint, or the unpacked layer of
// an OCI checkpoint image). Both are read as input, whoever wrote them.
type Source struct {
	// Path is the archive or the directory.
	Path string
	dir  bool
	// base and rel, for DirSourceIn: Path is rel within base.
	base, rel string
}

// ArchiveSource is the archive at p.
func ArchiveSource(p string) Source { return Source{Path: p} }

// DirSource is the directory p.
func DirSource(p string) Source { return Source{Path: p, dir: true} }

// DirSourceIn is the directory rel of the directory base, rel being named
// by the checkpoint itself (a pod checkpoint's container directory, its
// gvisor/): it is opened within base, and none of its components may be
// a symlink (whose target, even within base, would be another part of
// the checkpoint than the one named).
func DirSourceIn(base, rel string) Source {
	return Source{Path: filepath.Join(base, rel), dir: true, base: base, rel: rel}
}

// openDir opens the directory of a directory source.
func (s Source) openDir() (*os.Root, error) {
	if s.base == "" {
		return os.OpenRoot(s.Path)
	}
	root, err := os.OpenRoot(s.base)
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }()
	cur := "."
	for _, part := range strings.Split(filepath.ToSlash(filepath.Clean(s.rel)), "/") {
		cur = path.Join(cur, part)
		fi, err := root.Lstat(cur)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s: not a directory (%s)", filepath.Join(s.base, cur), fi.Mode().Type())
		}
	}
	// Swapped for a link since: still nothing outside base.
	return root.OpenRoot(s.rel)
}

func (s Source) String() string { return s.Path }

// Walk calls fn for every regular file of the checkpoint, as Walk does for
// an archive. In a directory, nothing is followed out of it (an os.Root),
// symlinks and other non-regular files are skipped, and a file is opened
// without blocking (a FIFO put there makes no reader wait).
func (s Source) Walk(fn func(*Entry) error) error {
	if !s.dir {
		return Walk(s.Path, fn)
	}
	root, err := s.openDir()
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil // replaced since it was listed
		}
		return fn(&Entry{Name: filepath.ToSlash(rel), Size: fi.Size(), r: io.LimitReader(f, fi.Size())})
	})
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read checkpoint %s: %w", s.Path, err)
	}
	return nil
}

// IsCheckpoint reports whether the source holds config.dump and
// spec.dump, which every engine's checkpoint has.
func (s Source) IsCheckpoint() bool {
	if s.dir {
		root, err := s.openDir()
		if err != nil {
			return false
		}
		defer func() { _ = root.Close() }()
		for _, name := range []string{ConfigDump, SpecDump} {
			if fi, err := root.Lstat(name); err != nil || !fi.Mode().IsRegular() {
				return false
			}
		}
		return true
	}
	var config, spec bool
	err := s.Walk(func(e *Entry) error {
		switch e.Name {
		case ConfigDump:
			config = true
		case SpecDump:
			spec = true
		}
		if config && spec {
			return io.EOF
		}
		return nil
	})
	return err == nil && config && spec
}
