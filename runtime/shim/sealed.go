package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A shim's direct exec helper is the shim binary itself, and runs inside
// containers: a process there can reach it through /proc/<pid>/exe or a
// "#!/proc/self/exe" script. So shims run from a sealed in-memory copy of
// berth-shim (as runc does since CVE-2019-5736): nothing can write to it,
// and the file on disk is never open in a container. One copy serves
// every shim this berthd starts (the pages are shared).

// sealedFD is where a shim finds the sealed copy it was started from.
const sealedFD = 4

// sealedSeals forbid every change to the copy, and further seals.
const sealedSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

var sealed struct {
	mu   sync.Mutex
	path string
	id   fileID
	f    *os.File
}

// fileID tells a binary replaced on disk (an upgrade) from the one copied.
type fileID struct {
	dev, ino uint64
	size     int64
	mtim     unix.Timespec
}

// sealedBinary returns the sealed copy of path, made anew when the file
// changed.
func sealedBinary(path string) (*os.File, error) {
	sealed.mu.Lock()
	defer sealed.mu.Unlock()
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = src.Close() }()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return nil, err
	}
	id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim}
	if sealed.f != nil && sealed.path == path && sealed.id == id {
		return sealed.f, nil
	}
	f, err := sealedCopy(src)
	if err != nil {
		return nil, fmt.Errorf("sealed copy of %s: %w", path, err)
	}
	// The old copy stays open: a Spawn may be passing it right now.
	sealed.path, sealed.id, sealed.f = path, id, f
	return f, nil
}

// sealedCopy copies src into a sealed memfd.
func sealedCopy(src io.Reader) (*os.File, error) {
	fd, err := unix.MemfdCreate("berth-shim", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // kernels before 6.3 know no MFD_EXEC
		fd, err = unix.MemfdCreate("berth-shim", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "berth-shim")
	if _, err := io.Copy(f, src); err != nil {
		_ = f.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, sealedSeals); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}
