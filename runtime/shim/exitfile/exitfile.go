// Package exitfile is the record a shim writes when a container exits, and
// that berthd reads if the shim is gone by the time it asks. Both sides use
// it, so berthd need not link the shim's server to read one.
package exitfile

import (
	"encoding/json"
	"os"
	"path/filepath"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

// Path is where the exit of container id is recorded in a shim's state dir.
func Path(stateDir, id string) string { return filepath.Join(stateDir, id+".exit") }

// Write records an exit durably (written aside, then renamed into place).
func Write(path string, st *shimv1.ContainerState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Read reads the exit of container id recorded in stateDir.
func Read(stateDir, id string) (*shimv1.ContainerState, error) {
	data, err := os.ReadFile(Path(stateDir, id))
	if err != nil {
		return nil, err
	}
	var st shimv1.ContainerState
	return &st, json.Unmarshal(data, &st)
}
