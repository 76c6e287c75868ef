package pod

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
