package main

import (
	"log/slog"

	"github.com/berthrt/berth/runtime/apparmor"
	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/spec"
)

// nodeLSM is what this node's AppArmor and SELinux let berth apply. The
// default AppArmor profile is loaded now; a failure is retried at the
// first container that needs it (which fails if it fails again).
func nodeLSM(cfg *config.Config, log *slog.Logger) spec.LSM {
	var l spec.LSM
	if host.AppArmor() {
		l.AppArmor, l.LoadAppArmorDefault = true, apparmor.LoadDefault
		if err := apparmor.LoadDefault(); err != nil {
			log.Warn("AppArmor default profile not loaded", "profile", apparmor.DefaultProfile, "err", err)
		}
	}
	if cfg.Security.EnableSELinux {
		if host.SELinux() {
			l.SELinux = true
		} else {
			log.Warn("enable_selinux is set but this host has no SELinux: SELinux options are accepted and ignored")
		}
	}
	log.Info("security modules", "apparmor", l.AppArmor, "selinux", l.SELinux)
	return l
}
