package pinns

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestAttackSysctlNameTraversal: a sysctl name that passes the namespace
// check by its prefix but walks out of its namespace's directory (here to
// the host's core_pattern, a root shell for the next crash) is refused
// before anything is written.
func TestAttackSysctlNameTraversal(t *testing.T) {
	for _, name := range []string{
		"net.//.kernel.core_pattern",
		"net.ipv4/../../kernel.core_pattern",
		"net/../kernel/core_pattern",
		"net..kernel.core_pattern",
		"kernel.shm_rmid_forced/..",
		"net.ipv4.",
		".net.ipv4.ip_forward",
		"net.ipv4.ip_forward\n",
		"net.IPV4.ip_forward",
		"net." + strings.Repeat("a", 250),
	} {
		if got, err := Sysctls(map[string]string{name: "|/tmp/x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Sysctls(%q) = %v, %v; want InvalidArgument", name, got, err)
		}
	}
}
