package network

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/pinns"
)

// NewNetNS creates a network namespace pinned at path, with its loopback
// interface up (so no loopback plugin needs to run) and sysctls (net.*)
// set.
func NewNetNS(path string, sysctls map[string]string) error {
	return pinns.Pin(path, pinns.Net, func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		return pinns.WriteSysctls(sysctls)
	})
}

// RemoveNetNS unpins and removes the namespace at path; a missing one is
// not an error.
func RemoveNetNS(path string) error { return pinns.Remove(path) }

// loopbackUp sets IFF_UP on "lo" in the calling thread's namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	var req [unix.IFNAMSIZ + 24]byte
	copy(req[:], "lo")
	if err := ioctl(fd, unix.SIOCGIFFLAGS, &req); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	flags := *(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ]))
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = flags | unix.IFF_UP
	if err := ioctl(fd, unix.SIOCSIFFLAGS, &req); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

func ioctl(fd int, req uint, arg *[unix.IFNAMSIZ + 24]byte) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(arg)))
	if e != 0 {
		return e
	}
	return nil
}
