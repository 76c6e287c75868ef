package pod

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// writePodFiles writes the files every container of the pod binds:
// hostname, hosts and resolv.conf; in a pod with a user namespace (u)
// they belong to the pod's root, as they do to the node's elsewhere.
func writePodFiles(dir string, cfg *runtimeapi.PodSandboxConfig, u *userNS) error {
	if err := writeRawPodFiles(dir, cfg); err != nil {
		return err
	}
	if u == nil {
		return nil
	}
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		if err := os.Lchown(filepath.Join(dir, name), u.rootUID(), u.rootGID()); err != nil {
			return err
		}
	}
	return nil
}

func writeRawPodFiles(dir string, cfg *runtimeapi.PodSandboxConfig) error {
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
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil { //nolint:gosec // hosts, resolv.conf, hostname: read by every container user
		return err
	}
	return os.Rename(tmp, path)
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
	if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // a directory, owner only: its x bit is the point
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	return nil
}

// SearchableDir makes dir, or sets the mode of an existing one, to 0711:
// root's, and others may only pass through to what is below, by name.
// The root of a pod with a user namespace is not the host's root: it
// passes through berth's state directory to its containers' bundles
// (see podTraversable), while every other bundle stays 0700 and nobody
// else can list a thing.
func SearchableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil { //nolint:gosec // search only, by design (above)
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil { //nolint:gosec // search only, by design (above)
		return fmt.Errorf("set mode of %s: %w", dir, err)
	}
	return nil
}

// podTraversable lets the root of a pod with a user namespace (host uid
// uid) through dir to a rootfs below, and nobody else but root: the
// runtime prepares the rootfs as that user. dir stays root's, 0700, with
// one POSIX ACL entry giving uid search permission (a group would let in
// every local member of a group the mapping happens to start at). Setuid
// files below are the pod's (idmapped), and no other local user reaches
// them.
func podTraversable(dir string, uid int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return err
	}
	if err := unix.Fsetxattr(fd, "system.posix_acl_access", searchACL(uint32(uid)), 0); err != nil { //nolint:gosec // a host uid of the pod's mapping, validated
		return fmt.Errorf("let the pod's root through %s (POSIX ACLs): %w", dir, err)
	}
	return nil
}

// searchACL is the access ACL "u::rwx,u:uid:x,g::-,m::x,o::-" in the
// kernel's xattr form (version 2, then tag, perm, id entries in order).
func searchACL(uid uint32) []byte {
	const undefined = 0xffffffff
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{
		{0x01, 7, undefined}, // user::rwx
		{0x02, 1, uid},       // user:uid:--x
		{0x04, 0, undefined}, // group::---
		{0x10, 1, undefined}, // mask::--x
		{0x20, 0, undefined}, // other::---
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

func writeSpec(bundle string, s any) error {
	if err := PrivateDir(bundle); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600)
}
