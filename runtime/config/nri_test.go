package config

import (
	"strings"
	"testing"
	"time"
)

func TestNRIDefaults(t *testing.T) {
	withRuntimes(t, "runc")
	n := Default().NRI
	if n.Enable {
		t.Error("NRI must be off unless enabled")
	}
	if n.SocketPath != "/var/run/nri/nri.sock" || n.PluginPath != "/opt/nri/plugins" || n.PluginConfigPath != "/etc/nri/conf.d" {
		t.Errorf("paths: %+v", n)
	}
	if n.PluginRegistrationTimeout.Duration != 5*time.Second || n.PluginRequestTimeout.Duration != 2*time.Second {
		t.Errorf("timeouts: %+v", n)
	}
}

func TestNRIParse(t *testing.T) {
	withRuntimes(t, "runc")
	c, err := Parse(`
[nri]
enable = true
socket_path = "/run/b/nri.sock"
plugin_request_timeout = "30s"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NRI.Enable || c.NRI.SocketPath != "/run/b/nri.sock" || c.NRI.PluginRequestTimeout.Duration != 30*time.Second {
		t.Errorf("not applied: %+v", c.NRI)
	}
	if c.NRI.PluginPath != "/opt/nri/plugins" {
		t.Errorf("unset keys keep their defaults: %+v", c.NRI)
	}
}

func TestNRIInvalid(t *testing.T) {
	withRuntimes(t, "runc")
	_, err := Parse(`
[nri]
socket_path = "nri.sock"
plugin_path = "plugins"
plugin_registration_timeout = "0s"
plugin_request_timeout = "-1s"
`)
	if err == nil {
		t.Fatal("invalid [nri] accepted")
	}
	for _, key := range []string{"nri.socket_path", "nri.plugin_path", "nri.plugin_registration_timeout", "nri.plugin_request_timeout"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	_, err = Parse("[nri]\nsocket_path = \"/" + strings.Repeat("x", 120) + "\"\n")
	if err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Errorf("overlong socket path: %v", err)
	}
}
