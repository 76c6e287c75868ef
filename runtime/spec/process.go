package spec

import (
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

func optInt(v *runtimeapi.Int64Value) *int64 {
	if v == nil {
		return nil
	}
	return &v.Value
}

// commandLine applies the kubelet's rules: the CRI command replaces the
// image entrypoint (and then its cmd); CRI args replace the image cmd.
func commandLine(cfg *runtimeapi.ContainerConfig, img *v1.Config) ([]string, error) {
	var args []string
	switch {
	case len(cfg.GetCommand()) > 0:
		args = append(slices.Clone(cfg.Command), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		args = append(slices.Clone(img.Entrypoint), cfg.Args...)
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, errdefs.InvalidArgument("no command: the config and the image give none")
	}
	return args, nil
}

func mergeEnv(image []string, cri []*runtimeapi.KeyValue) []string {
	out := slices.Clone(image)
	for _, kv := range cri {
		prefix := kv.Key + "="
		if i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, prefix) }); i >= 0 {
			out[i] = prefix + string(kv.Value)
		} else {
			out = append(out, prefix+string(kv.Value))
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, key+"=") })
}

// ParseSignal reads a STOPSIGNAL value ("SIGTERM", "TERM", "15").
func ParseSignal(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return n, true
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := namedSignal(name); ok {
		return n, true
	}
	if n := unix.SignalNum("SIG" + name); n != 0 {
		return int(n), true
	}
	return 0, false
}
