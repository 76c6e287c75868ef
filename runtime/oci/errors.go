package oci

import (
	"errors"
	"strings"

	"github.com/berthrt/berth/runtime/errdefs"
)

// ErrExecutableNotFound classifies a runtime's exec that failed because
// the command is not in the container (an exec session exits 127 then, as
// a shell would). It is no errdefs class: across the shim it stays
// Unknown, as it always was.
var ErrExecutableNotFound = errors.New("executable not found")

// runtimeMessage is one known message of an OCI runtime and what it means.
// A message matches when it contains every part, in order.
type runtimeMessage struct {
	runtimes string // who says it (documentation only)
	parts    []string
	class    error
}

// runtimeMessages are the runtimes' messages berth knows the meaning of.
// This table is the only place where berth reads an error's text: every
// other decision asks errors.Is about the class Classify gives.
var runtimeMessages = []runtimeMessage{
	// The command is not in the container. (Before the container checks:
	// "no such file" of a missing command is not a missing container.)
	{"runc, runsc", []string{"executable file not found in $PATH"}, ErrExecutableNotFound},
	{"runc", []string{`exec: "`, ": no such file or directory"}, ErrExecutableNotFound},
	{"runc (a script's missing interpreter)", []string{"container process: exec /", ": no such file or directory"}, ErrExecutableNotFound},
	{"crun", []string{"executable file `", "` not found"}, ErrExecutableNotFound},
	{"runsc", []string{"error finding executable "}, ErrExecutableNotFound},
	{"runsc", []string{"failed to load ", ": no such file or directory"}, ErrExecutableNotFound},

	// The container is not known to the runtime.
	{"runc", []string{"container does not exist"}, errdefs.ErrNotFound},
	{"runsc", []string{"loading container: file does not exist"}, errdefs.ErrNotFound},
	{"crun", []string{"error opening file `", "/status`: No such file or directory"}, errdefs.ErrNotFound},
	{"youki", []string{"container ", " does not exist"}, errdefs.ErrNotFound},

	// The id is taken.
	{"runc", []string{"container with given ID already exists"}, errdefs.ErrAlreadyExists},
	{"runc (old)", []string{"container with id exists"}, errdefs.ErrAlreadyExists},
	{"crun", []string{"container `", "` already exists"}, errdefs.ErrAlreadyExists},
	{"runsc", []string{"container already exists"}, errdefs.ErrAlreadyExists},

	// The container is not in a state the command applies to.
	{"runc", []string{"container not running"}, errdefs.ErrFailedPrecondition},
	{"runc", []string{"container still running"}, errdefs.ErrFailedPrecondition},
	{"runc", []string{"container paused"}, errdefs.ErrFailedPrecondition},
	{"runc", []string{"cannot start an already running container"}, errdefs.ErrFailedPrecondition},
	{"runc", []string{"cannot start a container that has stopped"}, errdefs.ErrFailedPrecondition},
	{"runc", []string{"cannot exec in a stopped container"}, errdefs.ErrFailedPrecondition},
	{"crun", []string{"container `", "` is not running"}, errdefs.ErrFailedPrecondition},
	{"runsc", []string{"sandbox is not running"}, errdefs.ErrFailedPrecondition},
	{"runsc", []string{"cannot start container ", " in state "}, errdefs.ErrFailedPrecondition},
	{"runsc", []string{"cannot execute in container ", " in state "}, errdefs.ErrFailedPrecondition},
}

func (m runtimeMessage) matches(msg string) bool {
	for _, p := range m.parts {
		i := strings.Index(msg, p)
		if i < 0 {
			return false
		}
		msg = msg[i+len(p):]
	}
	return true
}

// Classify turns a runtime's error message (its last logged error, or its
// stderr) into an error with that message whose class (errdefs.ErrNotFound,
// ErrAlreadyExists, ErrFailedPrecondition, or ErrExecutableNotFound) is
// known to errors.Is; a message not in the table is unclassified.
func Classify(msg string) error {
	for _, m := range runtimeMessages {
		if m.matches(msg) {
			return &runtimeError{msg: msg, class: m.class}
		}
	}
	return errors.New(msg)
}

// runtimeError is a runtime's message with its class.
type runtimeError struct {
	msg   string
	class error
}

func (e *runtimeError) Error() string { return e.msg }
func (e *runtimeError) Unwrap() error { return e.class }
