package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/systemd"
)

// finding is one prerequisite's outcome.
type finding struct {
	name, detail, fix string
	ok                bool
}

// check reports every prerequisite with a fix for each one missing, and
// fails if any is.
func check(cfg *config.Config, w io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var fs []finding
	add := func(f finding) { fs = append(fs, f) }

	mode := host.Cgroups()
	hybrid := host.HybridControllers()
	for _, h := range oci.NewHandlers(ctx, cfg).All() {
		name := "runtime " + h.Name
		if h.ProbeErr != nil {
			bin := filepath.Base(h.Path)
			add(finding{name: name, detail: h.ProbeErr.Error(), fix: fmt.Sprintf("install %s (apt-get install %s) or fix [runtimes.%s] path", bin, bin, h.Name)})
			continue
		}
		detail := fmt.Sprintf("%s %s, OCI spec %s", h.Path, h.Info.Version, h.Info.SpecVersion)
		if h.Traits().RefusesHybridCgroups && mode == host.CgroupHybrid && len(hybrid) > 0 {
			add(finding{name: name, detail: detail + "; crun refuses hybrid cgroups while the cgroup2 tree holds " + fmt.Sprint(hybrid),
				fix: "give each a v1 hierarchy, e.g. mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"})
			continue
		}
		add(finding{name: name, detail: detail, ok: true})
	}

	// CNI: plugins and a configuration (berthd writes a default one).
	files, _ := libcni.ConfFiles(cfg.CNI.ConfDir, []string{".conf", ".conflist", ".json"})
	needed := []string{"bridge", "host-local", "portmap", "bandwidth"}
	var list *libcni.NetworkConfigList
	checkSubnets := len(files) == 0 // berthd's own network, or the one loaded below
	if len(files) > 0 {
		slices.Sort(files)
		needed = nil
		var err error
		if list, err = network.LoadConfList(files[0]); err != nil {
			add(finding{name: "cni config", detail: err.Error(), fix: "fix or remove " + files[0]})
		} else {
			checkSubnets = true
			add(finding{name: "cni config", detail: files[0], ok: true})
			for _, p := range list.Plugins {
				needed = append(needed, p.Network.Type)
			}
		}
	} else {
		add(finding{name: "cni config", detail: "none in " + cfg.CNI.ConfDir + "; berthd will write " + cfg.CNI.DefaultSubnet + " bridge network", ok: true})
	}
	for _, p := range needed {
		if path := findIn(cfg.CNI.BinDirs, p); path != "" {
			add(finding{name: "cni plugin " + p, detail: path, ok: true})
		} else {
			add(finding{name: "cni plugin " + p, detail: "not in " + fmt.Sprint(cfg.CNI.BinDirs), fix: "apt-get install containernetworking-plugins"})
		}
	}
	if checkSubnets {
		nets, err := network.HostNets()
		fs = append(fs, subnetFindings(cfg, list, nets, err)...)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		add(finding{name: "iptables", detail: "not found (the bridge and portmap plugins need it)", fix: "apt-get install iptables"})
	} else {
		add(finding{name: "iptables", detail: "found", ok: true})
	}

	add(finding{name: "cgroups", detail: string(mode) + ", driver " + cfg.CgroupDriver, ok: mode != host.CgroupUnknown, fix: "mount cgroups at /sys/fs/cgroup"})
	if cfg.CgroupDriver == "systemd" {
		add(systemdFinding(ctx))
	}
	if host.Overlayfs() {
		add(finding{name: "overlayfs", detail: "supported", ok: true})
	} else if host.OverlayfsModule() {
		add(finding{name: "overlayfs", detail: "module loads at the first mount", ok: true})
	} else {
		add(finding{name: "overlayfs", detail: "not in /proc/filesystems", fix: "modprobe overlay"})
	}
	floor := host.OOMScoreAdjFloor()
	add(finding{name: "oom_score_adj floor", detail: fmt.Sprintf("%d (lower values requested by pods are raised to it)", floor), ok: true})
	for _, d := range []string{cfg.Root, cfg.State} {
		if err := writable(d); err != nil {
			add(finding{name: "writable " + d, detail: err.Error(), fix: "run berthd as root with " + d + " on a writable filesystem"})
		} else {
			add(finding{name: "writable " + d, detail: "ok", ok: true})
		}
	}

	failed := 0
	for _, f := range fs {
		status := "ok  "
		if !f.ok {
			status = "FAIL"
			failed++
		}
		_, _ = fmt.Fprintf(w, "%s %-24s %s\n", status, f.name, f.detail)
		if !f.ok && f.fix != "" {
			_, _ = fmt.Fprintf(w, "     %-24s fix: %s\n", "", f.fix)
		}
	}
	if failed > 0 {
		_, _ = fmt.Fprintf(w, "%d prerequisite(s) missing\n", failed)
		return 1
	}
	_, _ = fmt.Fprintln(w, "all prerequisites met")
	return 0
}

// systemdFinding: the systemd driver has the runtimes make scopes, and
// berthd stop pods' slices, through systemd's D-Bus API.
func systemdFinding(ctx context.Context) finding {
	f := finding{name: "systemd", fix: "the systemd cgroup driver needs systemd as init and its D-Bus API; or set cgroup_driver = \"cgroupfs\""}
	if !systemd.Booted() {
		f.detail = "not this host's init (no /run/systemd/system)"
		return f
	}
	v, err := (&systemd.Manager{}).Version(ctx)
	if err != nil {
		f.detail = err.Error()
		return f
	}
	f.detail, f.ok = "version "+v+", reached over D-Bus", true
	return f
}

func findIn(dirs []string, name string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// writable creates dir if needed and a file in it.
func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".berth-check-")
	if err != nil {
		return err
	}
	_ = f.Close()
	return os.Remove(f.Name())
}
