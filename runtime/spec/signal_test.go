package spec

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every signal of the CRI enum parses, and maps back to itself (an alias
// to its canonical name).
func TestCRISignalsRoundTrip(t *testing.T) {
	aliases := map[runtimeapi.Signal]runtimeapi.Signal{
		runtimeapi.Signal_SIGNAL_SIGIOT:  runtimeapi.Signal_SIGNAL_SIGABRT,
		runtimeapi.Signal_SIGNAL_SIGCLD:  runtimeapi.Signal_SIGNAL_SIGCHLD,
		runtimeapi.Signal_SIGNAL_SIGPOLL: runtimeapi.Signal_SIGNAL_SIGIO,
	}
	for v, name := range runtimeapi.Signal_name {
		sig := runtimeapi.Signal(v)
		if sig == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		n, ok := ParseSignal(strings.TrimPrefix(name, "SIGNAL_"))
		if !ok {
			t.Errorf("%s does not parse", name)
			continue
		}
		want := sig
		if a, ok := aliases[sig]; ok {
			want = a
		}
		if got, ok := CRISignal(n); !ok || got != want {
			t.Errorf("%s is %d, which maps back to %v", name, n, got)
		}
	}
}

func TestParseSignalRealTime(t *testing.T) {
	for in, want := range map[string]int{
		"SIGRTMIN+3": 37, "RTMAX-1": 63, "SIGRTMINPLUS15": 49, "SIGRTMAXMINUS14": 50, "SIGRTMAX": 64, "SIGIOT": 6, "SIGPOLL": 29,
	} {
		if got, ok := ParseSignal(in); !ok || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"SIGRTMIN+31", "SIGRTMAX-x", "SIGRTMIN+-1"} {
		if n, ok := ParseSignal(in); ok {
			t.Errorf("ParseSignal(%q) = %d", in, n)
		}
	}
	if s, ok := CRISignal(15); !ok || s != runtimeapi.Signal_SIGNAL_SIGTERM {
		t.Errorf("CRISignal(15) = %v", s)
	}
	if _, ok := CRISignal(32); ok {
		t.Error("signal 32 has a CRI name")
	}
}
