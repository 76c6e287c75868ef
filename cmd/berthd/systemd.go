package main

import (
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifySystemd tells systemd (a Type=notify unit: berthd.service) how
// berthd is: READY once the CRI socket serves, RELOADING around SIGHUP,
// STOPPING at shutdown. Outside systemd ($NOTIFY_SOCKET unset) it does
// nothing.
func notifySystemd(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("systemd notification failed", "state", state, "err", err)
	}
}
