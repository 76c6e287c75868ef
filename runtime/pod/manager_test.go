package pod

import (
	"errors"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestResolveID(t *testing.T) {
	ids := map[string]int{"abc123": 1, "abd456": 2, "ffff00": 3}
	for _, tc := range []struct {
		in   string
		want int
		err  error
	}{
		{"abc123", 1, nil},
		{"abc", 1, nil},
		{"ff", 3, nil},
		{"ab", 0, errdefs.ErrInvalidArgument}, // two match
		{"zz", 0, errdefs.ErrNotFound},
		{"", 0, errdefs.ErrInvalidArgument},
	} {
		got, err := resolveID(ids, tc.in, "container")
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("resolveID(%q) err = %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveID(%q) = %d, %v", tc.in, got, err)
		}
	}
}
