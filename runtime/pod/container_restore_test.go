package pod

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
)

// TestAttackRestoreTakesNothingFromTheArchive: a checkpoint (a tenant's,
// when it comes as an image) lists a host disk as a device and a
// privileged security context; the restored container gets neither: its
// devices and security context are the request's, and a checkpointed
// device the request does not name again is refused.
func TestAttackRestoreTakesNothingFromTheArchive(t *testing.T) {
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("needs criu in PATH (test/scripts/deps.sh installs it): restore checks for it first")
	}
	e := newEnv(t)
	e.hs.byName["runc"].Kind = oci.KindRunc
	podID := e.runPod("p")
	sb, err := e.m.getSandbox(podID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	evil := &runtimeapi.ContainerConfig{
		Command: []string{"sh"},
		Devices: []*runtimeapi.Device{{HostPath: "/dev/sda", ContainerPath: "/dev/x", Permissions: "rwm"}},
		Linux:   &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}},
	}
	raw, err := protojson.Marshal(evil)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		checkpoint.ConfigDump: `{"rootfsImageName":"app"}`, checkpoint.SpecDump: "{}", checkpoint.CRIConfig: string(raw),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	req := ctrConfig("restored")
	req.Image = &runtimeapi.ImageSpec{Image: dir}
	if _, _, err := e.m.restoreConfig(sb, req); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "/dev/x") {
		t.Fatalf("restore without the checkpointed device requested: %v, want InvalidArgument naming it", err)
	}
	req.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "r"}}
	out, src, err := e.m.restoreConfig(sb, req)
	if err != nil {
		t.Fatal(err)
	}
	src.done()
	if len(out.GetDevices()) != 1 || out.GetDevices()[0].GetHostPath() != "/dev/null" {
		t.Errorf("restored devices %v, want the request's", out.GetDevices())
	}
	if out.GetLinux().GetSecurityContext().GetPrivileged() {
		t.Error("the restored container is privileged: the archive's security context was taken")
	}
	if strings.Join(out.GetCommand(), " ") != "sh" {
		t.Errorf("restored command %v, want the checkpointed process's", out.GetCommand())
	}
}
