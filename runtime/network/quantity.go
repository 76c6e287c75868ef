package network

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Bounds of a quantity's text and decimal exponent: a bandwidth is at
// most 1P, so anything longer or further out is refused before big
// numbers are built from it.
const (
	maxQuantityLen = 64
	maxExponent    = 100
)

// quantitySuffixes are the suffixes of Kubernetes resource quantities
// (k8s.io/apimachinery resource.ParseQuantity) with their factors: SI
// decimal ones as powers of ten, binary ones as powers of two.
var quantitySuffixes = map[string]struct{ base, exp int64 }{
	"n": {10, -9}, "u": {10, -6}, "m": {10, -3}, "": {10, 0},
	"k": {10, 3}, "M": {10, 6}, "G": {10, 9}, "T": {10, 12}, "P": {10, 15}, "E": {10, 18},
	"Ki": {2, 10}, "Mi": {2, 20}, "Gi": {2, 30}, "Ti": {2, 40}, "Pi": {2, 50}, "Ei": {2, 60},
}

// parseQuantity reads a Kubernetes resource quantity ("1M", "1.5Gi",
// "100e3") and returns its value rounded up to an integer, as the
// kubelet's resource.Quantity.Value() does. berth does not depend on
// apimachinery for this one function; the grammar is small:
//
//	[+-] digits [. digits] suffix,  suffix = SI | binary | (e|E)[+-]digits
func parseQuantity(s string) (*big.Int, error) {
	if s == "" {
		return nil, errors.New("empty quantity")
	}
	if len(s) > maxQuantityLen {
		return nil, fmt.Errorf("quantity longer than %d characters", maxQuantityLen)
	}
	rest := s
	negative := false
	if rest[0] == '+' || rest[0] == '-' {
		negative = rest[0] == '-'
		rest = rest[1:]
	}
	intPart, rest := leadingDigits(rest)
	fracPart := ""
	if strings.HasPrefix(rest, ".") {
		fracPart, rest = leadingDigits(rest[1:])
	}
	if intPart == "" && fracPart == "" {
		return nil, fmt.Errorf("quantity %q has no number", s)
	}
	// The number as a fraction: digits / 10^len(fraction).
	v, ok := new(big.Rat).SetString("0" + intPart + "." + fracPart + "0")
	if !ok {
		return nil, fmt.Errorf("quantity %q: bad number", s)
	}
	factor, err := suffixFactor(rest)
	if err != nil {
		return nil, fmt.Errorf("quantity %q: %w", s, err)
	}
	v.Mul(v, factor)
	if negative {
		v.Neg(v)
	}
	// Rounded up: a non-zero request never becomes zero.
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q, nil
}

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// suffixFactor is the multiplier a quantity's suffix stands for. "E"
// alone is exa; "E" or "e" followed by an integer is a decimal exponent.
func suffixFactor(suffix string) (*big.Rat, error) {
	pow := func(base, exp int64) *big.Rat {
		p := new(big.Int).Exp(big.NewInt(base), big.NewInt(abs(exp)), nil)
		if exp < 0 {
			return new(big.Rat).SetFrac(big.NewInt(1), p)
		}
		return new(big.Rat).SetInt(p)
	}
	if f, ok := quantitySuffixes[suffix]; ok {
		return pow(f.base, f.exp), nil
	}
	if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		digits := strings.TrimPrefix(strings.TrimPrefix(suffix[1:], "+"), "-")
		if d, rest := leadingDigits(digits); d == "" || rest != "" {
			return nil, fmt.Errorf("unknown suffix %q", suffix)
		}
		exp, err := strconv.ParseInt(suffix[1:], 10, 64)
		if err != nil || abs(exp) > maxExponent {
			return nil, fmt.Errorf("exponent %q out of range", suffix[1:])
		}
		return pow(10, exp), nil
	}
	return nil, fmt.Errorf("unknown suffix %q", suffix)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
