package pod

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/berthrt/berth/runtime/pinns"
)

// idmap is how a pod with a user namespace sees image layers.
type idmap struct {
	userns   string // the pod's pinned user namespace
	uid, gid int    // host ids of the pod's root
}

// idmapFor is nil for a pod in the node's user namespace.
func (m *Manager) idmapFor(sb *sandbox) *idmap {
	u := sb.userNS()
	if u == nil {
		return nil
	}
	return &idmap{userns: m.pinnedNS(sb.rec.ID, pinns.User), uid: u.rootUID(), gid: u.rootGID()}
}

// idmapStaging is where idmapped layers wait for their overlay: a short
// path, so an overlay's options (a page) hold many layers.
func (m *Manager) idmapStaging() string { return filepath.Join(m.cfg.State, "l") }

// idmapLayers binds each layer, idmapped into the pod's user namespace,
// under a new private directory and returns their paths for an overlay's
// lowerdir. done unmounts and removes them: an overlay holds its own
// references to its layers once mounted (a crash in between leaves them
// for the next start to remove).
func (m *Manager) idmapLayers(layers []string, im *idmap) (_ []string, done func(), err error) {
	if err := PrivateDir(m.idmapStaging()); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(m.idmapStaging(), "")
	if err != nil {
		return nil, nil, err
	}
	done = func() { _ = m.removeDir(dir) }
	defer func() {
		if err != nil {
			done()
		}
	}()
	out := make([]string, len(layers))
	for i, l := range layers {
		// Short names keep the overlay's options under a page.
		out[i] = filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(out[i], 0o700); err != nil {
			return nil, nil, err
		}
		if err := m.mounts.IDMapped(l, out[i], im.userns); err != nil {
			return nil, nil, err
		}
	}
	return out, done, nil
}
