package spec

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// seccompFor picks the seccomp profile: none for privileged containers and
// Unconfined, the RuntimeDefault profile, or a Localhost file.
func seccompFor(sp *runtimeapi.SecurityProfile, legacy string, privileged bool, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if privileged {
		return nil, nil
	}
	typ, ref := runtimeapi.SecurityProfile_Unconfined, ""
	switch {
	case sp != nil:
		typ, ref = sp.ProfileType, sp.LocalhostRef
	case legacy == "runtime/default" || legacy == "docker/default":
		typ = runtimeapi.SecurityProfile_RuntimeDefault
	case strings.HasPrefix(legacy, "localhost/"):
		typ, ref = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(legacy, "localhost/")
	case legacy == "" || legacy == "unconfined":
	default:
		return nil, errdefs.InvalidArgument("unknown seccomp profile %q", legacy)
	}
	switch typ {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return seccomp.GetDefaultProfile(s)
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, errdefs.InvalidArgument("seccomp localhost profile %q is not an absolute path", ref)
		}
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp localhost profile: %v", err)
		}
		prof, err := seccomp.LoadProfile(string(data), s)
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp localhost profile %s: %v", ref, err)
		}
		return prof, nil
	}
	return nil, nil
}
