package cgroups

import (
	"bufio"
	"path/filepath"
	"strconv"
	"strings"
)

// PSI is a resource's pressure stall information: "some" when at least
// one task of the cgroup stalled on it, "full" when all did.
type PSI struct {
	Some, Full *PSIData
}

// PSIData is one line of a pressure file. Total is in nanoseconds (the
// kernel counts microseconds), the averages are percentages.
type PSIData struct {
	Total                uint64
	Avg10, Avg60, Avg300 float64
}

// Pressure is the PSI of a cgroup's CPU, memory and I/O; nil where the
// kernel has none (no PSI, or cgroup v1 without a cgroup2 tree).
type Pressure struct {
	CPU, Memory, IO *PSI
}

// readPressure reads the three pressure files of the cgroup2 directory
// dir. They exist in every cgroup2 cgroup, controllers or not, so a
// hybrid host has them in its /sys/fs/cgroup/unified tree.
func readPressure(dir string) Pressure {
	return Pressure{
		CPU:    readPSI(filepath.Join(dir, "cpu.pressure")),
		Memory: readPSI(filepath.Join(dir, "memory.pressure")),
		IO:     readPSI(filepath.Join(dir, "io.pressure")),
	}
}

// readPSI parses a pressure file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// nil when it is missing (PSI off: reading fails with EOPNOTSUPP) or
// malformed.
func readPSI(file string) *PSI {
	// Plain system calls: an os.File would register the (pollable)
	// pressure file with epoll first, at every stats call.
	data, err := readV1File(file)
	if err != nil {
		return nil
	}
	var p PSI
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		d, ok := parsePSILine(rest)
		if !ok {
			return nil
		}
		switch kind {
		case "some":
			p.Some = d
		case "full":
			p.Full = d
		}
	}
	if sc.Err() != nil || (p.Some == nil && p.Full == nil) {
		return nil
	}
	return &p
}

func parsePSILine(s string) (*PSIData, bool) {
	var d PSIData
	for _, field := range strings.Fields(s) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return nil, false
		}
		var err error
		switch k {
		case "avg10":
			d.Avg10, err = strconv.ParseFloat(v, 64)
		case "avg60":
			d.Avg60, err = strconv.ParseFloat(v, 64)
		case "avg300":
			d.Avg300, err = strconv.ParseFloat(v, 64)
		case "total":
			var us uint64
			us, err = strconv.ParseUint(v, 10, 64)
			d.Total = us * 1000
		}
		if err != nil {
			return nil, false
		}
	}
	return &d, true
}
