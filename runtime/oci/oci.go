// Package oci drives an OCI runtime binary (runc, crun, runsc, or any
// other with their command line) for one RuntimeClass handler.
package oci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Runtime is one configured handler's OCI runtime.
type Runtime struct {
	// Name is the RuntimeClass handler name.
	Name string
	Path string
	// Kind is the runtime's family (config's kind, or guessed from Path).
	Kind Kind
	// Root is the runtime's state directory (--root); empty keeps its own.
	Root string
	// Args are extra global arguments.
	Args []string
	// DirectExec lets the shim start exec'd processes itself (runc and
	// crun containers).
	DirectExec bool
	// DirectStart lets the shim start created runc containers itself,
	// through runc's exec FIFO.
	DirectStart bool
}

// Traits are the runtime family's (guessed from Path when Kind is unset).
func (r *Runtime) Traits() Traits {
	k := r.Kind
	if k == "" {
		k, _ = ParseKind("", r.Path)
	}
	return k.Traits()
}

// GlobalArgs are the arguments that go before every subcommand.
func (r *Runtime) GlobalArgs() []string {
	var args []string
	if r.Root != "" {
		args = append(args, "--root", r.Root)
	}
	return append(args, r.Args...)
}

// Command builds `<runtime> <global args> args...`.
func (r *Runtime) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, r.Path, append(r.GlobalArgs(), args...)...)
}

// Info is what a runtime reports about itself.
type Info struct {
	Version string
	// SpecVersion is the newest OCI spec version it accepts.
	SpecVersion string
	// Features is nil when the runtime has no `features` command.
	Features *features.Features
}

// Probe asks the runtime for its version and features.
func (r *Runtime) Probe(ctx context.Context) (*Info, error) {
	out, err := exec.CommandContext(ctx, r.Path, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", r.Path, err)
	}
	info := parseVersion(out)
	// runsc needs its global flags even for `features`.
	fout, err := r.Command(ctx, "features").Output()
	if err == nil {
		var f features.Features
		if json.Unmarshal(fout, &f) == nil {
			info.Features = &f
			if f.OCIVersionMax != "" {
				info.SpecVersion = f.OCIVersionMax
			}
		}
	}
	if info.SpecVersion == "" {
		info.SpecVersion = "1.0.0"
	}
	return info, nil
}

// parseVersion reads `<name> version X` and `spec: Y` lines.
func parseVersion(out []byte) *Info {
	info := &Info{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "spec:"); ok {
			info.SpecVersion = strings.TrimSpace(v)
		} else if _, v, ok := strings.Cut(line, " version "); ok && info.Version == "" {
			info.Version = strings.TrimSpace(v)
		}
	}
	return info
}
