package pod

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cdi"
)

// injectCDI gives the container of s the CDI devices cfg requests (DRA's
// CDI_devices and device plugins' cdi.k8s.io/ annotations). It runs last
// on the spec, as containerd's WithCDI does: the devices' env, mounts and
// hooks must not be reset after it. runsc gets the same spec; gVisor
// decides itself which device nodes it can expose.
func (m *Manager) injectCDI(s *specs.Spec, cfg *runtimeapi.ContainerConfig) error {
	devices, err := cdi.Requested(cfg)
	if err != nil {
		return err
	}
	return m.cdi.Inject(s, devices)
}
