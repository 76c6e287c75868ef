package systemd

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// SyncScope tells systemd, as properties of the container's scope, the
// limits the OCI runtime wrote into the scope's cgroup (dir, relative to
// the cgroup root). systemd writes every unit's settings again at a
// daemon-reload: limits a runtime wrote without telling it (crun 1.8 does
// so at create and update) would be lifted by the next one. runc sets
// the properties itself.
func (m *Manager) SyncScope(ctx context.Context, scope, dir string) error {
	if !strings.HasSuffix(scope, ".scope") || strings.ContainsAny(scope, "/:") {
		return fmt.Errorf("not a scope name: %q", scope)
	}
	props, err := cgroupProperties(filepath.Join(m.cgroupRoot(), dir))
	if err != nil {
		return fmt.Errorf("limits of %s: %w", scope, err)
	}
	c, err := m.connect(ctx)
	if err != nil {
		return err
	}
	// Runtime properties: they go with the unit.
	if err := c.SetUnitPropertiesContext(ctx, scope, true, props...); err != nil {
		return fmt.Errorf("set the limits of %s: %w", scope, err)
	}
	return nil
}

// cgroupProperties reads a cgroup v2 directory's limits as the unit
// properties systemd writes them from. A file the cgroup lacks (its
// controller is off) gives no property.
func cgroupProperties(dir string) ([]sdbus.Property, error) {
	var props []sdbus.Property
	read := func(file string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		return strings.TrimSpace(string(b)), err == nil
	}
	add := func(name string, v any) {
		props = append(props, sdbus.Property{Name: name, Value: dbus.MakeVariant(v)})
	}
	// "max" is systemd's infinity.
	limit := func(s string) (uint64, error) {
		if s == "max" {
			return math.MaxUint64, nil
		}
		return strconv.ParseUint(s, 10, 64)
	}
	for _, f := range []struct{ file, prop string }{
		{"memory.max", "MemoryMax"}, {"memory.high", "MemoryHigh"}, {"memory.low", "MemoryLow"},
		{"memory.min", "MemoryMin"}, {"memory.swap.max", "MemorySwapMax"}, {"pids.max", "TasksMax"},
	} {
		if s, ok := read(f.file); ok {
			v, err := limit(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.file, err)
			}
			add(f.prop, v)
		}
	}
	if s, ok := read("cpu.weight"); ok {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cpu.weight: %w", err)
		}
		add("CPUWeight", v)
	}
	if s, ok := read("cpu.max"); ok {
		// "QUOTA PERIOD" in µs; systemd takes the quota per second.
		q, p, _ := strings.Cut(s, " ")
		period, err := strconv.ParseUint(p, 10, 64)
		if err != nil || period == 0 {
			return nil, fmt.Errorf("cpu.max %q", s)
		}
		perSec := uint64(math.MaxUint64)
		if q != "max" {
			quota, err := strconv.ParseUint(q, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("cpu.max %q", s)
			}
			perSec = quota * 1000000 / period
		}
		add("CPUQuotaPeriodUSec", period)
		add("CPUQuotaPerSecUSec", perSec)
	}
	for _, f := range []struct{ file, prop string }{{"cpuset.cpus", "AllowedCPUs"}, {"cpuset.mems", "AllowedMemory"}} {
		// Empty: the parent's, systemd's default too.
		if s, ok := read(f.file); ok && s != "" {
			mask, err := cpuMask(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.file, err)
			}
			add(f.prop, mask)
		}
	}
	return props, nil
}

// cpuMask turns a cpuset list ("0-3,6") into systemd's bitmask: bit i of
// byte n is CPU (or node) 8n+i.
func cpuMask(list string) ([]byte, error) {
	var mask []byte
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpuset %q", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpuset %q", list)
			}
		}
		if b >= 1<<16 {
			return nil, fmt.Errorf("cpuset %q: too large", list)
		}
		for i := a; i <= b; i++ {
			for len(mask) <= i/8 {
				mask = append(mask, 0)
			}
			mask[i/8] |= 1 << (i % 8)
		}
	}
	return mask, nil
}
