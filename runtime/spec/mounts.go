package spec

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// baseMounts are the filesystems every container gets.
func baseMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

func addMounts(rt Target, s *specs.Spec, p *Pod, cfg *runtimeapi.ContainerConfig, volumes map[string]string, privileged bool) error {
	mounts := baseMounts()
	if privileged {
		for i := range mounts {
			if mounts[i].Destination == "/sys" || mounts[i].Destination == "/sys/fs/cgroup" {
				mounts[i].Options = slices.DeleteFunc(mounts[i].Options, func(o string) bool { return o == "ro" })
				mounts[i].Options = append(mounts[i].Options, "rw")
			}
		}
	}
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		taken[path.Clean(m.ContainerPath)] = true
	}
	ro := cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	bind := func(src, dst string, readonly bool, extra ...string) {
		if src == "" || taken[dst] {
			return
		}
		opts := append([]string{"rbind", "rprivate"}, extra...)
		if readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	bind(p.Hostname, "/etc/hostname", ro)
	bind(p.Hosts, "/etc/hosts", ro)
	bind(p.ResolvConf, "/etc/resolv.conf", ro)
	if namespaceOptions(p, cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()).GetIpc() == runtimeapi.NamespaceMode_NODE {
		bind("/dev/shm", "/dev/shm", false)
	} else {
		bind(p.Shm, "/dev/shm", false, "nosuid", "nodev", "noexec")
	}

	propagation := ""
	for _, m := range cfg.GetMounts() {
		dst := path.Clean(m.ContainerPath)
		if !path.IsAbs(dst) {
			return errdefs.InvalidArgument("mount destination %q is not absolute", m.ContainerPath)
		}
		if m.GetImage().GetImage() != "" {
			src, ok := volumes[dst]
			if !ok {
				return errdefs.InvalidArgument("image volume %s is not mounted", dst)
			}
			if err := imageVolumeMappings(p, dst, m); err != nil {
				return err
			}
			mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == dst })
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			continue
		}
		if m.HostPath == "" {
			return errdefs.InvalidArgument("mount %s has no host path", dst)
		}
		src, err := filepath.EvalSymlinks(m.HostPath)
		if os.IsNotExist(err) {
			// As the kubelet's other runtimes do: a missing host path
			// becomes an empty directory.
			if err := os.MkdirAll(m.HostPath, 0o755); err != nil { //nolint:gosec // the kubelet's DirectoryOrCreate mode (0755) for a missing host path
				return fmt.Errorf("create mount source %s: %w", m.HostPath, err)
			}
			src, err = filepath.EvalSymlinks(m.HostPath)
		}
		if err != nil {
			return errdefs.InvalidArgument("mount source %s: %v", m.HostPath, err)
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
			propagation = "rshared"
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if propagation == "" {
				propagation = "rslave"
			}
		default:
			opts = append(opts, "rprivate")
		}
		switch {
		case m.RecursiveReadOnly:
			if !m.Readonly {
				return errdefs.InvalidArgument("mount %s: recursive read-only needs read-only", dst)
			}
			if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				// Mounts propagated in later could not be made read-only.
				return errdefs.InvalidArgument("mount %s: recursive read-only needs private propagation", dst)
			}
			if !rt.RRO {
				return errdefs.InvalidArgument("mount %s: RROUnsupported: runtime %s has no recursive read-only mounts", dst, rt.Kind)
			}
			opts = append(opts, "rro")
		case m.Readonly:
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		opts = append(opts, m.MountOptions...)
		uids, gids, err := mountIDMappings(p, dst, m)
		if err != nil {
			return err
		}
		mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == dst })
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts, UIDMappings: uids, GIDMappings: gids})
	}
	// Parents before children.
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(mounts[i].Destination, "/") < strings.Count(mounts[j].Destination, "/")
	})
	s.Mounts = mounts
	if propagation != "" {
		s.Linux.RootfsPropagation = propagation
	}
	return nil
}

// mountIDMappings are the mappings of an idmapped volume (the kubelet
// asks for them in pods with a user namespace): files owned by host id
// h+n appear owned by n in the pod.
func mountIDMappings(p *Pod, dst string, m *runtimeapi.Mount) (uids, gids []specs.LinuxIDMapping, err error) {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return nil, nil, nil
	}
	if p.UserNS == "" {
		return nil, nil, errdefs.InvalidArgument("mount %s: Mount.uid_mappings and gid_mappings (an idmapped mount) need a pod with a user namespace", dst)
	}
	if len(m.GetUidMappings()) == 0 || len(m.GetGidMappings()) == 0 {
		return nil, nil, errdefs.InvalidArgument("mount %s: Mount.uid_mappings and gid_mappings must be given together", dst)
	}
	conv := func(in []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
		out := make([]specs.LinuxIDMapping, len(in))
		for i, x := range in {
			out[i] = specs.LinuxIDMapping{ContainerID: x.GetContainerId(), HostID: x.GetHostId(), Size: x.GetLength()}
		}
		return out
	}
	for _, x := range append(slices.Clone(m.GetUidMappings()), m.GetGidMappings()...) {
		if x.GetLength() == 0 || uint64(x.GetHostId())+uint64(x.GetLength()) > 1<<32-1 || uint64(x.GetContainerId())+uint64(x.GetLength()) > 1<<32-1 {
			return nil, nil, errdefs.InvalidArgument("mount %s: invalid id mapping %d:%d:%d", dst, x.GetContainerId(), x.GetHostId(), x.GetLength())
		}
	}
	return conv(m.GetUidMappings()), conv(m.GetGidMappings()), nil
}

// imageVolumeMappings accepts the mappings of an image volume only as the
// pod's own: berth mounts the image idmapped into the pod's user
// namespace already; any other mapping could not be honoured.
func imageVolumeMappings(p *Pod, dst string, m *runtimeapi.Mount) error {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return nil
	}
	uids, gids, err := mountIDMappings(p, dst, m)
	if err != nil {
		return err
	}
	if !slices.Equal(uids, p.UIDs) || !slices.Equal(gids, p.GIDs) {
		return errdefs.InvalidArgument("image volume %s: Mount.uid_mappings and gid_mappings must be the pod's: berth maps image volumes into the pod's user namespace", dst)
	}
	return nil
}
