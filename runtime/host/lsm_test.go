package host

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLSMDetection(t *testing.T) {
	write := func(t *testing.T, root, name, data string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		files   map[string]string
		aa, sel bool
	}{
		{name: "neither"},
		{name: "apparmor", files: map[string]string{"module/apparmor/parameters/enabled": "Y\n", "kernel/security/apparmor/profiles": ""}, aa: true},
		// Built in but disabled on the command line (apparmor=0).
		{name: "apparmor disabled", files: map[string]string{"module/apparmor/parameters/enabled": "N\n", "kernel/security/apparmor/profiles": ""}},
		// Enabled but securityfs not mounted: profiles cannot be listed.
		{name: "apparmor without securityfs", files: map[string]string{"module/apparmor/parameters/enabled": "Y\n"}},
		{name: "selinux", files: map[string]string{"fs/selinux/enforce": "0"}, sel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for n, d := range tc.files {
				write(t, root, n, d)
			}
			if got := appArmorAt(root); got != tc.aa {
				t.Errorf("AppArmor = %v, want %v", got, tc.aa)
			}
			if got := selinuxAt(root); got != tc.sel {
				t.Errorf("SELinux = %v, want %v", got, tc.sel)
			}
		})
	}
}
