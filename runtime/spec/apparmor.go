package spec

import (
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/apparmor"
	"github.com/berthrt/berth/runtime/errdefs"
)

// appArmorReq is one AppArmor request and the field it came from; a nil
// profile asks for nothing (the runtime's default, as containerd and
// CRI-O apply it).
type appArmorReq struct {
	field   string
	profile *runtimeapi.SecurityProfile
}

// appArmorRequest reads the structured field, else the deprecated string
// (the kubelet sends both; the structured one wins).
func appArmorRequest(field string, sp *runtimeapi.SecurityProfile, oldField, old string) (appArmorReq, error) {
	if sp != nil {
		if sp.GetProfileType() != runtimeapi.SecurityProfile_Localhost && sp.GetLocalhostRef() != "" {
			return appArmorReq{}, errdefs.InvalidArgument("%s: localhost_ref %q is only valid with profile type Localhost", field, sp.GetLocalhostRef())
		}
		if sp.GetProfileType() == runtimeapi.SecurityProfile_Localhost && localName(sp.GetLocalhostRef()) == "" {
			return appArmorReq{}, errdefs.InvalidArgument("%s: profile type Localhost needs localhost_ref", field)
		}
		return appArmorReq{field: field, profile: sp}, nil
	}
	req := appArmorReq{field: oldField}
	switch {
	case old == "":
		req.field = field
	case old == "runtime/default", old == "docker/default":
		req.profile = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case old == "unconfined":
		req.profile = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	case strings.HasPrefix(old, "localhost/") && localName(old) != "":
		req.profile = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: old}
	default:
		return appArmorReq{}, errdefs.InvalidArgument("%s: %q is no AppArmor profile (runtime/default, unconfined or localhost/<name>)", oldField, old)
	}
	return req, nil
}

// localName is a Localhost profile's name: the kubelet may keep the
// "localhost/" of the annotation form.
func localName(ref string) string { return strings.TrimPrefix(ref, "localhost/") }

// appArmorProfile is the profile the process gets ("" for none).
func appArmorProfile(h Host, req appArmorReq, privileged bool) (string, error) {
	typ := runtimeapi.SecurityProfile_RuntimeDefault
	if req.profile != nil {
		typ = req.profile.GetProfileType()
	}
	if !h.AppArmor {
		if typ == runtimeapi.SecurityProfile_Unconfined || req.profile == nil {
			return "", nil
		}
		// containerd refuses the same: a profile asked for and silently
		// not applied would be a confinement Kubernetes believes in.
		return "", errdefs.InvalidArgument("%s: AppArmor profile %s cannot be applied: AppArmor is not enabled on this node", req.field, describeProfile(req.profile))
	}
	switch typ {
	case runtimeapi.SecurityProfile_Unconfined:
		return "", nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if privileged {
			// As containerd: a privileged container is unconfined unless
			// a profile of its own is named.
			return "", nil
		}
		if err := defaultLoaded(h); err != nil {
			return "", errdefs.FailedPrecondition("%s: berth's default AppArmor profile %s is not available: %v", req.field, apparmor.DefaultProfile, err)
		}
		return apparmor.DefaultProfile, nil
	case runtimeapi.SecurityProfile_Localhost:
		name := localName(req.profile.GetLocalhostRef())
		ok, err := apparmor.IsLoaded(profilesFile(h), name)
		if err != nil {
			return "", errdefs.FailedPrecondition("%s: AppArmor profile %q: %v", req.field, name, err)
		}
		if !ok {
			return "", errdefs.FailedPrecondition("%s: AppArmor profile %q is not loaded on this node", req.field, name)
		}
		return name, nil
	}
	return "", errdefs.InvalidArgument("%s: unknown AppArmor profile type %s", req.field, typ)
}

func defaultLoaded(h Host) error {
	if h.LoadAppArmorDefault != nil {
		return h.LoadAppArmorDefault()
	}
	ok, err := apparmor.IsLoaded(profilesFile(h), apparmor.DefaultProfile)
	if err == nil && !ok {
		err = errdefs.FailedPrecondition("not loaded")
	}
	return err
}

func profilesFile(h Host) string {
	if h.AppArmorProfiles != "" {
		return h.AppArmorProfiles
	}
	return apparmor.ProfilesFile
}

func describeProfile(sp *runtimeapi.SecurityProfile) string {
	if sp.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		return "localhost/" + localName(sp.GetLocalhostRef())
	}
	return sp.GetProfileType().String()
}
