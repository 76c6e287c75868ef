package pod

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/selinux"
	"github.com/berthrt/berth/runtime/spec"
)

// relabel gives the host paths the container's spec asks to relabel its
// mount label (nothing with SELinux off). berth's own directories are
// refused like the host's.
func (m *Manager) relabel(p *spec.Pod, cfg *runtimeapi.ContainerConfig, s *specs.Spec) error {
	for _, path := range spec.Relabels(m.host, p, cfg, s) {
		if err := selinux.Relabel(path, s.Linux.MountLabel, m.cfg.Root, m.cfg.State); err != nil {
			return err
		}
	}
	return nil
}
