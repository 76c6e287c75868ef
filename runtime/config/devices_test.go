package config

import (
	"strings"
	"testing"
)

// device_ownership_from_security_context is off by default, as in
// containerd, parses, survives a render and refuses a non-bool by name.
func TestDeviceOwnershipKey(t *testing.T) {
	withRuntimes(t, "runc")
	if Default().Security.DeviceOwnershipFromSecurityContext {
		t.Error("device ownership from the security context is on by default")
	}
	c, err := Parse("[security]\ndevice_ownership_from_security_context = true\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Security.DeviceOwnershipFromSecurityContext {
		t.Error("the key did not turn it on")
	}
	again, err := Parse(Render(c))
	if err != nil || !again.Security.DeviceOwnershipFromSecurityContext {
		t.Errorf("lost in a render: %v", err)
	}
	_, err = Parse("[security]\ndevice_ownership_from_security_context = \"yes\"\n")
	if err == nil || !strings.Contains(err.Error(), "security.device_ownership_from_security_context") {
		t.Errorf("a string value: %v, want an error naming the key", err)
	}
}
