// Package frame is the framing of shim session sockets (interactive exec
// and attach): a type byte, a big-endian uint32 length, the payload.
package frame

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// Frame types.
const (
	Stdin      byte = 'i' // to the shim: input
	StdinClose byte = 'c' // to the shim: no more input
	Resize     byte = 'r' // to the shim: uint16 width, uint16 height
	Stdout     byte = 'o' // from the shim
	Stderr     byte = 'e' // from the shim
	Exit       byte = 'x' // from the shim: int32 exit code, then EOF
)

// MaxPayload bounds a frame, so a broken peer cannot make the reader
// allocate without limit.
const MaxPayload = 1 << 20

// Writer writes whole frames; safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Frame writes one frame.
func (fw *Writer) Frame(typ byte, payload []byte) error {
	for len(payload) > MaxPayload {
		if err := fw.Frame(typ, payload[:MaxPayload]); err != nil {
			return err
		}
		payload = payload[MaxPayload:]
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if _, err := fw.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := fw.w.Write(payload)
	return err
}

// Stream is an io.Writer whose writes become frames of one type.
func (fw *Writer) Stream(typ byte) io.Writer { return streamWriter{fw, typ} }

type streamWriter struct {
	fw  *Writer
	typ byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.fw.Frame(s.typ, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read reads one frame.
func Read(r *bufio.Reader) (typ byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxPayload)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// ResizePayload encodes a terminal size.
func ResizePayload(width, height uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return b[:]
}

// ParseResize decodes a terminal size.
func ParseResize(p []byte) (width, height uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), true
}

// ExitPayload encodes an exit code.
func ExitPayload(code int32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	return b[:]
}

// ParseExit decodes an exit code.
func ParseExit(p []byte) (int32, bool) {
	if len(p) != 4 {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(p)), true
}
