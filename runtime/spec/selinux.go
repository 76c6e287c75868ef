package spec

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path"
	"regexp"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// SELinux defaults: containerd's (from the container-selinux policy's
// lxc_contexts), for every part the options leave out.
const (
	selinuxUser     = "system_u"
	selinuxRole     = "system_r"
	selinuxType     = "container_t"
	selinuxFileRole = "object_r"
	selinuxFileType = "container_file_t"
)

var (
	selinuxWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// s0, s0:c1,c2, s0:c0.c1023, s0-s0:c0.c1023: a sensitivity with
	// categories, or a range of two.
	selinuxLevel = regexp.MustCompile(`^s\d+(:c\d+(\.c\d+)?(,c\d+(\.c\d+)?)*)?(-s\d+(:c\d+(\.c\d+)?(,c\d+(\.c\d+)?)*)?)?$`)
)

// selinuxLabels are the process and mount labels of a container: each
// part of the context from its own options, else the pod's, else the
// default. With SELinux off both are empty: the options are accepted and
// ignored, as containerd does (malformed ones are refused either way).
func selinuxLabels(h Host, p *Pod, field string, own, pod *runtimeapi.SELinuxOption, privileged bool) (process, mount string, err error) {
	if err := checkSELinux(field, own); err != nil {
		return "", "", err
	}
	if err := checkSELinux(podSELinux, pod); err != nil {
		return "", "", err
	}
	if !h.SELinux {
		return "", "", nil
	}
	pick := func(a, b, def string) string {
		if a != "" {
			return a
		}
		if b != "" {
			return b
		}
		return def
	}
	user := pick(own.GetUser(), pod.GetUser(), selinuxUser)
	level := pick(own.GetLevel(), pod.GetLevel(), podLevel(p.ID))
	// The mount label keeps the file type: only user and level follow
	// the options (as containerd's).
	mount = user + ":" + selinuxFileRole + ":" + selinuxFileType + ":" + level
	if privileged {
		// As containerd: privileged processes run with the runtime's
		// own label; their files still get the pod's.
		return "", mount, nil
	}
	process = user + ":" + pick(own.GetRole(), pod.GetRole(), selinuxRole) + ":" + pick(own.GetType(), pod.GetType(), selinuxType) + ":" + level
	return process, mount, nil
}

// podLevel is the MCS level of a pod whose options name none: two
// categories drawn from its ID, so that pods are kept apart (as by
// containerd's random pairs) and every container of a pod, and the pod
// again after a restart of berthd, gets the same pair without state.
func podLevel(id string) string {
	sum := sha256.Sum256([]byte(id))
	a := binary.BigEndian.Uint16(sum[0:]) % 1024
	b := binary.BigEndian.Uint16(sum[2:]) % 1023
	if b >= a {
		b++ // two distinct categories
	} else {
		a, b = b, a
	}
	return fmt.Sprintf("s0:c%d,c%d", a, b)
}

func checkSELinux(field string, o *runtimeapi.SELinuxOption) error {
	for _, part := range []struct{ name, v string }{{"user", o.GetUser()}, {"role", o.GetRole()}, {"type", o.GetType()}} {
		if part.v != "" && !selinuxWord.MatchString(part.v) {
			return errdefs.InvalidArgument("%s: %s %q is not an SELinux identifier", field, part.name, part.v)
		}
	}
	if l := o.GetLevel(); l != "" && !selinuxLevel.MatchString(l) {
		return errdefs.InvalidArgument("%s: level %q is not an SELinux level (s0, s0:c1,c2, s0-s0:c0.c1023)", field, l)
	}
	return nil
}

// Relabels lists the host paths to give the container's mount label
// before it starts: the sources of its mounts that ask for it
// (Mount.selinux_relabel) and the pod's files bound into it, which
// containerd relabels too. None with SELinux off, where the flag is
// accepted and ignored.
func Relabels(h Host, p *Pod, cfg *runtimeapi.ContainerConfig, s *specs.Spec) []string {
	if !h.SELinux || s.Linux == nil || s.Linux.MountLabel == "" {
		return nil
	}
	asked := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		if m.GetSelinuxRelabel() && m.GetImage().GetImage() == "" {
			asked[path.Clean(m.GetContainerPath())] = true
		}
	}
	podFiles := map[string]bool{}
	for _, f := range []string{p.Hostname, p.Hosts, p.ResolvConf, p.Shm} {
		if f != "" {
			podFiles[f] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		wanted := asked[m.Destination] || podFiles[m.Source]
		if m.Type != "bind" || seen[m.Source] || !wanted {
			continue
		}
		seen[m.Source] = true
		out = append(out, m.Source)
	}
	return out
}
