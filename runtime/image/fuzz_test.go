package image

import (
	"errors"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

// FuzzParseRef: a reference normalises or is InvalidArgument.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"busybox", "registry.k8s.io/pause:3.10", "a@sha256:" + hex64('0'), "UPPER", "x:", "::", "a/b/c:d@sha256:bad"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ParseRef(%q) error is not InvalidArgument: %v", s, err)
			}
			return
		}
		if r.Repo == "" || (r.Tag == "") == (r.Digest == "") {
			t.Fatalf("ParseRef(%q) = %+v", s, r)
		}
		if again, err := ParseRef(r.String()); err != nil || again != r {
			t.Fatalf("ParseRef is not stable for %q: %+v %v", s, again, err)
		}
	})
}
