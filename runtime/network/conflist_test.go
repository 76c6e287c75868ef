package network

import (
	"os"
	"path/filepath"
	"testing"
)

// A single plugin's .conf loads as a list of that plugin, as it did through
// libcni's deprecated ConfFromFile and ConfListFromConf.
func TestLoadConfList(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "10-bridge.conf")
	if err := os.WriteFile(conf, []byte(`{"cniVersion":"1.0.0","name":"pods","type":"bridge","bridge":"cni0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := LoadConfList(conf)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "pods" || list.CNIVersion != "1.0.0" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "bridge" {
		t.Errorf("list = %+v", list)
	}
	conflist := filepath.Join(dir, "10-pods.conflist")
	if err := os.WriteFile(conflist, []byte(`{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if list, err = LoadConfList(conflist); err != nil || len(list.Plugins) != 2 {
		t.Errorf("conflist: %+v %v", list, err)
	}
	if _, err := LoadConfList(filepath.Join(dir, "missing.conf")); err == nil {
		t.Error("a missing file loaded")
	}
}
