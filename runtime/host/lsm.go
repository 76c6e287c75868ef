package host

import (
	"os"
	"path/filepath"
	"strings"
)

// AppArmor reports whether the kernel enforces AppArmor: the module is
// enabled and its securityfs interface, where profiles are listed and
// loaded, is there.
func AppArmor() bool { return appArmorAt("/sys") }

// SELinux reports whether SELinux is enabled (enforcing or permissive):
// selinuxfs is mounted.
func SELinux() bool { return selinuxAt("/sys") }

func appArmorAt(sys string) bool {
	b, err := os.ReadFile(filepath.Join(sys, "module/apparmor/parameters/enabled"))
	if err != nil || strings.TrimSpace(string(b)) != "Y" {
		return false
	}
	_, err = os.Stat(filepath.Join(sys, "kernel/security/apparmor"))
	return err == nil
}

func selinuxAt(sys string) bool {
	_, err := os.Stat(filepath.Join(sys, "fs/selinux/enforce"))
	return err == nil
}
