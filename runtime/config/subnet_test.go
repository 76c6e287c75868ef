package config

import (
	"strings"
	"testing"
)

// Only a default_subnet written in the file is explicit; the rendered
// default leaves it commented out, so installing it keeps berth free to
// pick another subnet when the default is taken.
func TestDefaultSubnetSet(t *testing.T) {
	c, err := Parse("[cni]\nconf_dir = \"/etc/cni/net.d\"\n")
	if err != nil || c.CNI.DefaultSubnetSet || c.CNI.DefaultSubnet != "10.88.0.0/16" {
		t.Fatalf("unset: %+v %v", c.CNI, err)
	}
	c, err = Parse("[cni]\ndefault_subnet = \"10.88.0.0/16\"\n")
	if err != nil || !c.CNI.DefaultSubnetSet {
		t.Fatalf("set to the default value: %+v %v", c.CNI, err)
	}
	text := Render(Default())
	if !strings.Contains(text, "\n# default_subnet = \"10.88.0.0/16\"\n") {
		t.Errorf("default rendering sets default_subnet:\n%s", text)
	}
	if again, err := Parse(text); err != nil || again.CNI.DefaultSubnetSet {
		t.Errorf("the rendered default made the subnet explicit: %v", err)
	}
	if !strings.Contains(Render(c), "\ndefault_subnet = \"10.88.0.0/16\"\n") {
		t.Error("an explicit subnet renders commented out")
	}
}
