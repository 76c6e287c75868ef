package network

import (
	"testing"
)

// Values as k8s.io/apimachinery's resource.ParseQuantity(s).Value()
// gives them (checked against v0.37.0). Two differ, both refused as
// bandwidths either way: apimachinery reads "k" as 0, and "1e1000"
// wraps its exponent to 0.
func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" means an error
	}{
		{"1M", "1000000"},
		{"1Mi", "1048576"},
		{"10k", "10000"},
		{"1.5k", "1500"},
		{"1.5Ki", "1536"},
		{"0.5", "1"}, // rounded up
		{"1001m", "2"},
		{"100", "100"},
		{"+2G", "2000000000"},
		{"-1k", "-1000"},
		{"1e3", "1000"},
		{"1E3", "1000"},
		{"1e+3", "1000"},
		{"15e-1", "2"},
		{"1E", "1000000000000000000"}, // exa, not an exponent
		{"1P", "1000000000000000"},
		{"1Ei", "1152921504606846976"},
		{"1.", "1"},
		{".5k", "500"},
		{"007k", "7000"},
		{"5n", "1"},
		{"", ""},
		{"k", ""},
		{"1 M", ""},
		{"1MB", ""},
		{"1mi", ""},
		{"1e", ""},
		{"1e3.5", ""},
		{"1e1000", ""}, // an exponent too big to compute
		{"1.2.3", ""},
		{"--1", ""},
		{"1Mi ", ""},
		{"0x10", ""},
		{"1234567890123456789012345678901234567890123456789012345678901234567890", ""},
	} {
		got, err := parseQuantity(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("parseQuantity(%q) = %v, want an error", tc.in, got)
		case tc.want != "" && err != nil:
			t.Errorf("parseQuantity(%q): %v", tc.in, err)
		case tc.want != "" && got.String() != tc.want:
			t.Errorf("parseQuantity(%q) = %v, want %s", tc.in, got, tc.want)
		}
	}
}
