package checkpoint

import (
	"archive/tar"
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

// WriteArchive tars the regular files and directories of dir (names
// relative to it, as containerd and CRI-O write them) into location,
// which appears whole or not at all (written beside it, then renamed).
// It is 0600: it holds every memory page of the container's processes.
func WriteArchive(dir, location string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(location), "."+filepath.Base(location)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	tw := tar.NewWriter(tmp)
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil // CRIU writes only files; nothing else belongs here
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := root.Open(rel)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), location)
}

// maxMetadata bounds each JSON file read from an archive into memory.
const maxMetadata = 16 << 20

// Entry is one file of an archive being read.
type Entry struct {
	// Name is cleaned and relative ("checkpoint/pages-1.img").
	Name string
	Size int64
	r    io.Reader
}

// Read returns the whole entry, refusing one over maxMetadata bytes.
func (e *Entry) Read() ([]byte, error) {
	if e.Size > maxMetadata {
		return nil, fmt.Errorf("%s: %d bytes is too large", e.Name, e.Size)
	}
	return io.ReadAll(io.LimitReader(e.r, maxMetadata))
}

// Reader is the entry's content.
func (e *Entry) Reader() io.Reader { return e.r }

// Walk calls fn for every regular file of the archive at p, in archive
// order. Names are cleaned; an entry that would leave the archive ("..",
// absolute) is an error. fn returning io.EOF stops the walk early.
func Walk(p string, fn func(*Entry) error) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read checkpoint archive %s: %w", p, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("checkpoint archive entry %q leaves the archive", hdr.Name)
		}
		if err := fn(&Entry{Name: name, Size: hdr.Size, r: tr}); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// IsArchive reports whether p names a file that looks like a checkpoint
// archive: a readable tar holding config.dump and spec.dump. An image
// reference is none (no such file), so CreateContainer tells the two
// apart as CRI-O does: by what is on disk.
func IsArchive(p string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return ArchiveSource(p).IsCheckpoint()
}
