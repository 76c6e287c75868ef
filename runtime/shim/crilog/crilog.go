// Package crilog writes container output in the CRI log format the kubelet
// reads: "<RFC3339Nano time> <stream> <P|F> <content>\n", one line per
// line of output, long lines split into partial (P) pieces, as is output that
// ends without a newline.
package crilog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/berthrt/berth/runtime/errdefs"
)

// MaxLine is the longest piece written as one log line; longer lines are
// split, all pieces but the last tagged P.
const MaxLine = 16 << 10

// Log is one container's log file, shared by its streams.
type Log struct {
	path string
	mu   sync.Mutex
	f    *os.File
	buf  []byte
}

// Open opens (appending) the log at path; an empty path discards output.
func Open(path string) (*Log, error) {
	l := &Log{path: path}
	return l, l.Reopen()
}

// Reopen reopens the file at the same path, as the kubelet's rotation
// expects after it renamed the old one.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openLog(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// openLog opens (creating) the log file at path for appending. The shim
// is root and the log directory may be reachable from a container (a
// hostPath mount of /var/log): a symlink planted at path is not followed,
// and a FIFO or device there is neither waited on nor written.
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o640) //nolint:gosec // group-readable for log collectors, as containerd and CRI-O do
	if errors.Is(err, syscall.ELOOP) {
		return nil, errdefs.FailedPrecondition("container log %s is a symlink", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errdefs.FailedPrecondition("container log %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func (l *Log) write(stream string, partial bool, content []byte, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	tag := " F "
	if partial {
		tag = " P "
	}
	b := now.AppendFormat(l.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, tag...)
	b = append(b, content...)
	b = append(b, '\n')
	l.buf = b
	// A full disk must not block the container: the output is dropped.
	_, _ = l.f.Write(b)
}

// Copy reads r until EOF and logs each line as stream ("stdout" or
// "stderr").
func (l *Log) Copy(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			l.write(stream, false, line, time.Now())
		case errors.Is(err, bufio.ErrBufferFull):
			l.write(stream, true, line, time.Now())
		default:
			// Output that ends without a newline ends with a partial
			// line: the kubelet's reader adds the newline of a full one,
			// so `echo -n DONE` would read back as "DONE\n" (a
			// FallbackToLogsOnError termination message, `kubectl logs`).
			if len(line) > 0 {
				l.write(stream, true, line, time.Now())
			}
			if err == io.EOF || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
	}
}
