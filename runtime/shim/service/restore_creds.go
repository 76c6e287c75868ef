package service

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/caps"
)

// checkRestoredCreds compares the restored init's credentials, read on
// the host from /proc/<pid>/status (the kernel's, not the container's
// view), with what the spec allows.
func checkRestoredCreds(pid int, spec *specs.Spec) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	st := parseStatus(data)
	p := spec.Process
	if p == nil {
		return restoreRefused("the spec has no process")
	}
	var bounding []string
	if p.Capabilities != nil {
		bounding = p.Capabilities.Bounding
	}
	allowed, _ := caps.Mask(bounding)
	for _, field := range []string{"CapBnd", "CapEff", "CapPrm", "CapAmb"} {
		v, err := strconv.ParseUint(st[field], 16, 64)
		if err != nil {
			return restoreRefused("unreadable %s %q", field, st[field])
		}
		if extra := v &^ allowed; extra != 0 {
			return restoreRefused("the restored init holds capabilities (%s %#x) beyond the spec's bounding set", field, extra)
		}
	}
	if err := noMorePrivileged("Uid", st["Uid"], p.User.UID); err != nil {
		return err
	}
	if err := noMorePrivileged("Gid", st["Gid"], p.User.GID); err != nil {
		return err
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil && st["Seccomp"] != "2" {
		return restoreRefused("the restored init has no seccomp filter (Seccomp: %s)", st["Seccomp"])
	}
	if p.NoNewPrivileges && st["NoNewPrivs"] != "1" {
		return restoreRefused("the restored init lacks no_new_privs")
	}
	return nil
}

// noMorePrivileged: for a spec user other than root, every id of the
// line (real, effective, saved, filesystem) is the spec's.
func noMorePrivileged(field, line string, want uint32) error {
	if want == 0 {
		return nil
	}
	ids := strings.Fields(line)
	if len(ids) == 0 {
		return restoreRefused("unreadable %s %q", field, line)
	}
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 32); err != nil || uint32(n) != want {
			return restoreRefused("the restored init's %s (%s) is not the spec's %d", field, line, want)
		}
	}
	return nil
}

// parseStatus reads "Name:\tvalue" lines.
func parseStatus(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
