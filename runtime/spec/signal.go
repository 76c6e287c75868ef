package spec

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kernel's real-time signal range; the C library keeps 32 and 33 for
// itself, x/sys/unix names none of them.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// signalAliases are the names x/sys/unix knows by another.
var signalAliases = map[string]int{"IOT": int(unix.SIGABRT), "CLD": int(unix.SIGCHLD), "POLL": int(unix.SIGIO)}

// namedSignal reads the names ParseSignal leaves to it (without "SIG"):
// the aliases and the real-time signals, as Docker writes them in a
// STOPSIGNAL ("RTMIN+3", "RTMAX-1") and as the CRI enum does
// ("RTMINPLUS3", "RTMAXMINUS1").
func namedSignal(name string) (int, bool) {
	if n, ok := signalAliases[name]; ok {
		return n, true
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", sigRTMin, 1}, {"RTMINPLUS", sigRTMin, 1}, {"RTMAX-", sigRTMax, -1}, {"RTMAXMINUS", sigRTMax, -1}} {
		if rest, ok := strings.CutPrefix(name, rt.prefix); ok {
			off, err := strconv.Atoi(rest)
			if err != nil || off < 0 || off > sigRTMax-sigRTMin {
				return 0, false
			}
			return rt.base + rt.sign*off, true
		}
	}
	switch name {
	case "RTMIN":
		return sigRTMin, true
	case "RTMAX":
		return sigRTMax, true
	}
	return 0, false
}

// CRISignal is signal n as the CRI's Signal enum names it (what
// ContainerStatus.stop_signal reports); false for 32 and 33, which it
// cannot name.
func CRISignal(n int) (runtimeapi.Signal, bool) {
	switch {
	case n >= sigRTMin && n <= sigRTMax:
		// The enum lists SIGRTMIN..SIGRTMAX in order, from 35.
		return runtimeapi.Signal(n + 1), true //nolint:gosec // n is at most 64
	case n > 0 && n < 32:
		v, ok := runtimeapi.Signal_value["SIGNAL_"+unix.SignalName(syscall.Signal(n))]
		return runtimeapi.Signal(v), ok
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, false
}
