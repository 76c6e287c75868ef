package config

import "path/filepath"

// maxSocketPath is the longest unix socket path bind(2) takes (108 bytes
// with the terminating NUL).
const maxSocketPath = 107

// validate reports the [nri] table's problems through bad. The paths are
// checked even when NRI is off, so that enabling it later is one switch.
func (n *NRI) validate(bad func(key, format string, args ...any)) {
	for key, p := range map[string]string{"nri.socket_path": n.SocketPath, "nri.plugin_path": n.PluginPath, "nri.plugin_config_path": n.PluginConfigPath} {
		if !filepath.IsAbs(p) {
			bad(key, "must be an absolute path, got %q", p)
		}
	}
	if len(n.SocketPath) > maxSocketPath {
		bad("nri.socket_path", "%d bytes is longer than a unix socket path may be (%d)", len(n.SocketPath), maxSocketPath)
	}
	if n.PluginRegistrationTimeout.Duration <= 0 {
		bad("nri.plugin_registration_timeout", "must be positive, got %s", n.PluginRegistrationTimeout)
	}
	if n.PluginRequestTimeout.Duration <= 0 {
		bad("nri.plugin_request_timeout", "must be positive, got %s", n.PluginRequestTimeout)
	}
}
