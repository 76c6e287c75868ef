package host

import "testing"

// TestV1Mounted finds the memory controller's v1 hierarchy exactly when
// the node has v1 controllers mounted, and never a controller that does
// not exist.
func TestV1Mounted(t *testing.T) {
	mode := Cgroups()
	if mode == CgroupUnknown {
		t.Skip("no cgroups at /sys/fs/cgroup")
	}
	if got, want := V1Mounted("memory"), mode != CgroupV2; got != want {
		t.Errorf("V1Mounted(memory) = %v on a %s node", got, mode)
	}
	if V1Mounted("nosuchcontroller") {
		t.Error("V1Mounted(nosuchcontroller) = true")
	}
}
