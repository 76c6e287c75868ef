// Package cdi injects Container Device Interface devices (DRA claims,
// device plugins in CDI mode) into containers' OCI specs: the device
// nodes with their device cgroup rules, mounts, environment and hooks that
// the vendors' CDI specs in the spec directories describe.
package cdi

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
)

// Registry resolves CDI device names against the spec directories. The
// library's cache behind it watches the directories (inotify) and rereads
// them on change, so a spec a DRA driver writes is seen without a restart.
type Registry struct {
	cache *cdi.Cache // nil when CDI is disabled
	log   *slog.Logger
}

// New reads the spec directories of cfg and starts watching them. A
// directory that does not exist yet is watched once it appears; a broken
// spec file is logged and only fails the devices it would have defined.
func New(cfg config.CDI, log *slog.Logger) *Registry {
	r := &Registry{log: log}
	if !cfg.Enabled {
		return r
	}
	// NewCache's error is always nil (kept for API compatibility).
	r.cache, _ = cdi.NewCache(cdi.WithSpecDirs(cfg.SpecDirs...), cdi.WithAutoRefresh(true))
	devices := r.cache.ListDevices()
	log.Info("CDI", "spec_dirs", r.cache.GetSpecDirectories(), "devices", len(devices))
	for _, e := range r.specErrors() {
		log.Warn("CDI spec unusable", "err", e)
	}
	return r
}

// Close stops watching the spec directories.
func (r *Registry) Close() {
	if r.cache != nil {
		_ = r.cache.Configure(cdi.WithAutoRefresh(false))
	}
}

// Inject edits s to give its container the CDI devices named (fully
// qualified, vendor/class=name): device nodes with cgroup allow rules
// (after spec's default deny), mounts, environment, hooks and additional
// groups. An unknown device, a broken spec or disabled CDI is an error
// naming the device; nothing requested is dropped.
func (r *Registry) Inject(s *specs.Spec, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	if r.cache == nil {
		return errdefs.FailedPrecondition("CDI devices %s requested, but CDI is disabled (cdi.enabled = false)", strings.Join(devices, ", "))
	}
	for _, d := range devices {
		if _, _, _, err := parser.ParseQualifiedName(d); err != nil {
			return errdefs.InvalidArgument("CDI device %q: %v", d, err)
		}
	}
	unresolved, err := r.cache.InjectDevices(s, devices...)
	if len(unresolved) > 0 {
		// A spec written just before the request (a DRA driver's
		// NodePrepareResources) may not have reached the watcher yet:
		// rescan once before calling the device unknown.
		_ = r.cache.Configure(cdi.WithSpecDirs(r.cache.GetSpecDirectories()...))
		unresolved, err = r.cache.InjectDevices(s, devices...)
	}
	if len(unresolved) > 0 {
		msg := fmt.Sprintf("unknown CDI device %s: no spec in %s defines it", strings.Join(unresolved, ", "), strings.Join(r.cache.GetSpecDirectories(), ", "))
		if errs := r.specErrors(); len(errs) > 0 {
			msg += " (unusable specs: " + strings.Join(errs, "; ") + ")"
		}
		return errdefs.FailedPrecondition("%s", msg)
	}
	if err != nil {
		return errdefs.FailedPrecondition("CDI devices %s: %v", strings.Join(devices, ", "), err)
	}
	r.log.Debug("CDI devices injected", "devices", devices)
	return nil
}

// specErrors are the errors of the spec files of the last scan (they name
// their files), each once: a conflict is recorded on both files. A
// missing spec directory is not one.
func (r *Registry) specErrors() []string {
	dirs := r.cache.GetSpecDirectories()
	var out []string
	for path, errs := range r.cache.GetErrors() {
		if slices.Contains(dirs, path) {
			continue
		}
		for _, e := range errs {
			out = append(out, e.Error())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
