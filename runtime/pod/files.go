package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// writePodFiles writes the files every container of the pod binds:
// hostname, hosts and resolv.conf.
func writePodFiles(dir string, cfg *runtimeapi.PodSandboxConfig) error {
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostname := cfg.GetHostname()
	if hostNet || hostname == "" {
		if h, err := os.Hostname(); err == nil && (hostNet || hostname == "") {
			hostname = h
		}
	}
	if err := writeFile(filepath.Join(dir, "hostname"), hostname+"\n"); err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if hostNet {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	if err := writeFile(filepath.Join(dir, "hosts"), hosts); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "resolv.conf"), resolvConf(cfg.GetDnsConfig()))
}

// resolvConf renders the pod's DNS config; without one the node's file
// is used, as the kubelet's other runtimes do.
func resolvConf(dns *runtimeapi.DNSConfig) string {
	if len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0 {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			return string(b)
		}
		return ""
	}
	var b strings.Builder
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
	}
	return b.String()
}

func writeFile(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// mountShm mounts the pod's /dev/shm tmpfs at dir.
func mountShm(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount pod shm: %w", err)
	}
	return nil
}

// PrivateDir makes dir, or tightens the mode of an existing one, to 0700:
// only root may enter berth's directories (berthd's root and state
// included). Containers' writable layers and pods' /dev/shm live below
// them, and an overlay honours setuid bits: a local user who reached a
// root container's setuid file would be root. MkdirAll leaves the mode of
// an existing directory alone.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	return nil
}

// mountRootfs mounts an overlay of lower (top first) with a writable layer
// in rwDir at target. The upper directory's mode is the container's / (so
// 0755); rwDir and target's parent (the bundle) keep everyone else out.
func mountRootfs(lower []string, rwDir, target string) error {
	upper, work := filepath.Join(rwDir, "upper"), filepath.Join(rwDir, "work")
	for _, d := range []string{rwDir, work, filepath.Dir(target)} {
		if err := PrivateDir(d); err != nil {
			return err
		}
	}
	for _, d := range []string{upper, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("image has too many layers for one overlay mount (%d)", len(lower))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

// unmount detaches whatever is mounted at path; nothing mounted is fine.
func unmount(path string) error {
	for {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
		// Stacked mounts: repeat until none is left.
	}
}

// removeDir unmounts anything left under dir and removes it.
func removeDir(dir string) error {
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unmount(mounts[i]); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir, outermost first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
