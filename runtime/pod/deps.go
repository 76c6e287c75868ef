package pod

import (
	"context"
	"fmt"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/cdi"
	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
	"github.com/berthrt/berth/runtime/shim"
	"github.com/berthrt/berth/runtime/systemd"
)

// What the manager drives outside its own process, each behind a small
// interface so that unit tests run every CRI verb against fakes, without
// root (see fakes_test.go). New wires the real ones.

// handlerSet is the configured handlers (*oci.Handlers).
type handlerSet interface {
	Get(name string) (*oci.Handler, error)
	All() []*oci.Handler
	Default() string
}

// shimClient is a connection to one pod's shim (*shim.Client).
type shimClient interface {
	shimv1.ShimServiceClient
	Close() error
	Done() <-chan struct{}
}

// shimLauncher starts pods' shims and reconnects to running ones.
type shimLauncher interface {
	Spawn(ctx context.Context, o shim.SpawnOptions) (shimClient, error)
	Connect(ctx context.Context, socket string) (shimClient, error)
}

// mounter is mount(2), umount(2) and the mount table.
type mounter interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	// MountPoints lists every mount point of berthd's mount namespace.
	MountPoints() ([]string, error)
	// IDMapped binds src at dst read-only, idmapped through the user
	// namespace pinned at userns.
	IDMapped(src, dst, userns string) error
}

// namespaces pins a pod's namespaces: the network namespace and, for a
// pod without a sandbox container, its IPC and UTS namespaces; for a pod
// with a user namespace, that one and all three inside it.
type namespaces interface {
	Pin(path string, kind pinns.Kind, setup func() error) error
	PinUser(u pinns.UserNS) error
	// Enter runs fn on a thread in the pinned namespace.
	Enter(path string, kind pinns.Kind, fn func() error) error
	// NewNetNS pins a new network namespace with its loopback up.
	NewNetNS(path string) error
	// LoopbackUp sets the loopback up in a pinned network namespace.
	LoopbackUp(path string) error
	RemoveNetNS(path string) error
}

// podCgroups sizes and removes the cgroup berth made for a pod
// (cgroups.Reader).
type podCgroups interface {
	Size(dir string, res *specs.LinuxResources) error
	Remove(dir string) error
}

// podSlices stops the slices berth named for pods, and tells systemd the
// limits of containers' scopes, with the systemd cgroup driver
// (*systemd.Manager).
type podSlices interface {
	StopSlice(ctx context.Context, name string) error
	SyncScope(ctx context.Context, scope, dir string) error
}

// cdiInjector injects the CDI devices containers request (*cdi.Registry).
type cdiInjector interface {
	Inject(s *specs.Spec, devices []string) error
}

// deps are the manager's seams; a nil field is the real thing.
type deps struct {
	handlers handlerSet
	shims    shimLauncher
	mounts   mounter
	ns       namespaces
	cgroups  podCgroups
	slices   podSlices
	cdi      cdiInjector
	nri      NRI
}

type realShims struct{}

// Spawn and Connect return a nil interface, not a nil *shim.Client, on
// error.
func (realShims) Spawn(ctx context.Context, o shim.SpawnOptions) (shimClient, error) {
	c, err := shim.Spawn(ctx, o)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (realShims) Connect(ctx context.Context, socket string) (shimClient, error) {
	c, err := shim.Connect(ctx, socket)
	if err != nil {
		return nil, err
	}
	return c, nil
}

type realMounter struct{}

func (realMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (realMounter) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

func (realMounter) MountPoints() ([]string, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(infos))
	for i, mi := range infos {
		out[i] = mi.Mountpoint
	}
	return out, nil
}

func (realMounter) IDMapped(src, dst, userns string) error {
	ns, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open user namespace: %w", err)
	}
	defer func() { _ = unix.Close(ns) }()
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	defer func() { _ = unix.Close(tree) }()
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(ns)} //nolint:gosec // a descriptor is never negative here
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("idmap %s: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount idmapped %s: %w", src, err)
	}
	return nil
}

type realNamespaces struct{}

func (realNamespaces) Pin(path string, kind pinns.Kind, setup func() error) error {
	return pinns.Pin(path, kind, setup)
}

func (realNamespaces) PinUser(u pinns.UserNS) error { return pinns.PinUser(u) }

func (realNamespaces) Enter(path string, kind pinns.Kind, fn func() error) error {
	return pinns.Enter(path, kind, fn)
}

func (realNamespaces) NewNetNS(path string) error { return network.NewNetNS(path) }

func (realNamespaces) LoopbackUp(path string) error {
	return pinns.Enter(path, pinns.Net, network.LoopbackUp)
}

func (realNamespaces) RemoveNetNS(path string) error { return network.RemoveNetNS(path) }

// withDefaults fills what d leaves nil with the real implementations.
func (d deps) withDefaults(opts Options, cg cgroups.Reader) deps {
	if d.handlers == nil {
		d.handlers = opts.Handlers
	}
	if d.shims == nil {
		d.shims = realShims{}
	}
	if d.mounts == nil {
		d.mounts = realMounter{}
	}
	if d.ns == nil {
		d.ns = realNamespaces{}
	}
	if d.cgroups == nil {
		d.cgroups = cg
	}
	if d.slices == nil {
		d.slices = &systemd.Manager{}
	}
	if d.cdi == nil {
		d.cdi = cdi.New(opts.Config.CDI, opts.Log.With("component", "cdi"))
	}
	if d.nri == nil {
		d.nri = opts.NRI
	}
	if d.nri == nil {
		d.nri = noNRI{}
	}
	return d
}
