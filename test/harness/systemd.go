package harness

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// The systemd cgroup driver's tests ask systemd over D-Bus, as berthd
// and the runtimes do, rather than through systemctl: nothing to install.

// SystemdBooted reports whether systemd is this host's init.
func SystemdBooted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func systemdCall(f func(ctx context.Context, c *sdbus.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, c)
}

// systemdUnits lists the loaded units (in any state, failed ones too)
// whose names match patterns.
func systemdUnits(patterns ...string) ([]string, error) {
	var names []string
	err := systemdCall(func(ctx context.Context, c *sdbus.Conn) error {
		units, err := c.ListUnitsByPatternsContext(ctx, nil, patterns)
		for _, u := range units {
			names = append(names, u.Name)
		}
		return err
	})
	return names, err
}

// SystemdUnits lists the loaded units whose names match patterns.
func SystemdUnits(t testing.TB, patterns ...string) []string {
	t.Helper()
	names, err := systemdUnits(patterns...)
	if err != nil {
		t.Fatalf("list systemd units: %v", err)
	}
	return names
}

// UnitProperty is a property of a unit, printed ("" for a unit systemd
// does not know: its properties are its defaults then, never asked).
func UnitProperty(t testing.TB, unit, prop string) string {
	t.Helper()
	var v string
	err := systemdCall(func(ctx context.Context, c *sdbus.Conn) error {
		p, err := c.GetUnitPropertyContext(ctx, unit, prop)
		if err != nil {
			// Properties of a type (MemoryMax of a scope) are on its own
			// interface.
			if p, err = c.GetUnitTypePropertyContext(ctx, unit, unitType(unit), prop); err != nil {
				return err
			}
		}
		v = fmt.Sprint(p.Value.Value())
		return nil
	})
	if err != nil {
		t.Fatalf("%s of %s: %v", prop, unit, err)
	}
	return v
}

func unitType(unit string) string {
	for i := len(unit) - 1; i >= 0; i-- {
		if unit[i] == '.' {
			t := unit[i+1:]
			return string(t[0]-'a'+'A') + t[1:]
		}
	}
	return ""
}

// Systemctl runs a job on unit (start, stop, restart, reload) and waits
// for it; "daemon-reload" reloads systemd's configuration.
func Systemctl(t testing.TB, verb, unit string) {
	t.Helper()
	err := systemdCall(func(ctx context.Context, c *sdbus.Conn) error {
		if verb == "daemon-reload" {
			return c.ReloadContext(ctx)
		}
		jobs := map[string]func(context.Context, string, string, chan<- string) (int, error){
			"start": c.StartUnitContext, "stop": c.StopUnitContext, "restart": c.RestartUnitContext, "reload": c.ReloadUnitContext,
		}
		job, ok := jobs[verb]
		if !ok {
			return fmt.Errorf("unknown verb %q", verb)
		}
		done := make(chan string, 1)
		if _, err := job(ctx, unit, "replace", done); err != nil {
			return err
		}
		select {
		case res := <-done:
			if res != "done" {
				return fmt.Errorf("job %s", res)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		t.Fatalf("%s %s: %v", verb, unit, err)
	}
}
