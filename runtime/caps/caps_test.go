package caps

import (
	"slices"
	"testing"
)

func TestMask(t *testing.T) {
	if n, ok := Number("CAP_SYS_ADMIN"); !ok || n != 21 {
		t.Errorf("CAP_SYS_ADMIN = %d %v, want 21", n, ok)
	}
	if n, ok := Number("CAP_CHECKPOINT_RESTORE"); !ok || n != 40 {
		t.Errorf("CAP_CHECKPOINT_RESTORE = %d %v, want 40", n, ok)
	}
	m, unknown := Mask([]string{"CAP_CHOWN", "CAP_KILL", "CAP_NOPE"})
	if m != 1<<0|1<<5 || !slices.Equal(unknown, []string{"CAP_NOPE"}) {
		t.Errorf("Mask = %x %v", m, unknown)
	}
}
