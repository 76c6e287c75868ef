package oci

import (
	"errors"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		class error // nil: unclassified
	}{
		// Messages as runc, crun and runsc print them.
		{"container does not exist", errdefs.ErrNotFound},
		{"exec failed: container does not exist", errdefs.ErrNotFound},
		{"FetchSpec failed: loading container: file does not exist", errdefs.ErrNotFound},
		{"error opening file `/run/crun/x/status`: No such file or directory", errdefs.ErrNotFound},
		{"container with given ID already exists", errdefs.ErrAlreadyExists},
		{"container `x` already exists", errdefs.ErrAlreadyExists},
		{"creating container: cannot lock container metadata file: container already exists", errdefs.ErrAlreadyExists},
		{"container not running", errdefs.ErrFailedPrecondition},
		{"cannot exec in a stopped container", errdefs.ErrFailedPrecondition},
		{"the container `x` is not running", errdefs.ErrFailedPrecondition},
		{"sandbox is not running", errdefs.ErrFailedPrecondition},
		{`starting container: cannot start container "c1" in state running`, errdefs.ErrFailedPrecondition},
		{`executing processes for container: cannot execute in container "c1" in state stopped`, errdefs.ErrFailedPrecondition},
		{`exec failed: unable to start container process: exec: "nosuch": executable file not found in $PATH`, ErrExecutableNotFound},
		{`exec failed: unable to start container process: exec: "/nosuch": stat /nosuch: no such file or directory`, ErrExecutableNotFound},
		{"executable file `nosuch` not found in $PATH: No such file or directory", ErrExecutableNotFound},
		{`executing processes for container: executing command "nosuch" in sandbox: error finding executable "nosuch" in PATH [/bin /usr/bin]: no such file or directory`, ErrExecutableNotFound},
		{`executing processes for container: executing command "/nosuch" in sandbox: failed to load /nosuch: no such file or directory`, ErrExecutableNotFound},
		{"exec failed: unable to start container process: exec /script.sh: no such file or directory", ErrExecutableNotFound},
		{"container 4b1c does not exist.", errdefs.ErrNotFound},
		// Not in the table.
		{`exec failed: unable to start container process: chdir to cwd ("/nope") set in config.json failed: no such file or directory`, nil},
		{"cannot create: told to fail", nil},
		{"exit status 1", nil},
		{"pivot_root: Device or resource busy", nil},
	} {
		err := Classify(tc.msg)
		if err.Error() != tc.msg {
			t.Errorf("Classify(%q) says %q", tc.msg, err)
		}
		for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrFailedPrecondition, ErrExecutableNotFound} {
			// The table names the sentinel itself: identity, not errors.Is.
			if got := errors.Is(err, class); got != (class == tc.class) { //nolint:errorlint // see above
				t.Errorf("Classify(%q) is %v: %v, want %v", tc.msg, class, got, class == tc.class) //nolint:errorlint // identity, as above
			}
		}
	}
}
