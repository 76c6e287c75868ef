package spec

import (
	"strconv"
	"strings"
	"testing"
)

// TestParseSignalNames reads every signal name STOPSIGNAL may give, in
// each spelling, as the numbers of Linux on amd64 and arm64.
func TestParseSignalNames(t *testing.T) {
	want := map[string]int{
		"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
		"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
		"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
		"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
		"PWR": 30, "SYS": 31, "RTMIN": 34, "RTMAX": 64,
	}
	for name, n := range want {
		for _, in := range []string{name, "SIG" + name, strings.ToLower("sig" + name), strconv.Itoa(n)} {
			if got, ok := ParseSignal(in); !ok || got != n {
				t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, ok, n)
			}
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "SIG", "SIGSIGTERM", "UNUSED"} {
		if got, ok := ParseSignal(in); ok {
			t.Errorf("ParseSignal(%q) = %d, want refused", in, got)
		}
	}
}
