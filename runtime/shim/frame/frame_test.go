package frame

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := strings.Repeat("x", MaxPayload+5)
	_ = w.Frame(Stdout, []byte("hello"))
	_, _ = w.Stream(Stderr).Write([]byte(big))
	_ = w.Frame(Resize, ResizePayload(80, 24))
	_ = w.Frame(Exit, ExitPayload(-1))
	r := bufio.NewReader(&buf)
	var got []string
	var stderr int
	for {
		typ, p, err := Read(r)
		if err != nil {
			break
		}
		switch typ {
		case Stderr:
			stderr += len(p)
		case Resize:
			wd, ht, ok := ParseResize(p)
			got = append(got, "resize", string(rune('0'+wd/10)), string(rune('0'+ht/10)), map[bool]string{true: "ok"}[ok])
		case Exit:
			code, _ := ParseExit(p)
			if code != -1 {
				t.Errorf("exit %d", code)
			}
			got = append(got, "exit")
		default:
			got = append(got, string(typ)+string(p))
		}
	}
	if stderr != len(big) || strings.Join(got, ",") != "ohello,resize,8,2,ok,exit" {
		t.Errorf("got %v, %d stderr bytes", got, stderr)
	}
	// A hostile length is refused, not allocated.
	if _, _, err := Read(bufio.NewReader(bytes.NewReader([]byte{'o', 0xff, 0xff, 0xff, 0xff}))); err == nil {
		t.Error("oversized frame accepted")
	}
}

// FuzzRead: frames from a hostile peer are read or refused, never trusted
// to allocate more than MaxPayload.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.Frame(Stdin, []byte("x"))
	_ = w.Frame(Resize, ResizePayload(1, 2))
	f.Add(buf.Bytes())
	f.Add([]byte{'x', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			_, p, err := Read(r)
			if err != nil {
				return
			}
			if len(p) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
		}
	})
}
