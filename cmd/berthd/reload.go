package main

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/oci"
)

// reloader applies, on SIGHUP, what can change while pods run, as CRI-O
// does: the log level, registry mirrors and insecure registries, and
// handlers added. Everything else needs a restart, and the log names it.
type reloader struct {
	path     string
	explicit bool
	cfg      *config.Config // as running
	level    *slog.LevelVar
	images   interface{ SetRegistries(image.Registries) }
	handlers interface {
		Add(ctx context.Context, name string, rc config.Handler) (*oci.Handler, error)
	}
	log *slog.Logger
}

// reloadable are the keys reload applies (handlers added are checked
// one by one).
var reloadable = []string{"log_level", "image.mirrors", "image.insecure_registries", "runtimes"}

func (r *reloader) reload(ctx context.Context) {
	next, err := config.Load(r.path, r.explicit)
	if err != nil {
		r.log.Error("reload: configuration refused; nothing changed", "err", err)
		return
	}
	if next.LogLevel != "" {
		_ = r.level.UnmarshalText([]byte(next.LogLevel)) // validated by Load
	}
	r.images.SetRegistries(image.Registries{Mirrors: next.Image.Mirrors, InsecureRegistries: next.Image.InsecureRegistries})
	var added, needRestart []string
	for _, name := range slices.Sorted(maps.Keys(next.Runtimes)) {
		old, ok := r.cfg.Runtimes[name]
		switch {
		case !ok:
			hd, err := r.handlers.Add(ctx, name, next.Runtimes[name])
			if err != nil {
				r.log.Error("reload: handler not added", "handler", name, "err", err)
				continue
			}
			if hd.ProbeErr != nil {
				r.log.Warn("reload: handler added, but its runtime is unusable", "handler", name, "err", hd.ProbeErr)
			}
			added = append(added, name)
		case !reflect.DeepEqual(old, next.Runtimes[name]):
			needRestart = append(needRestart, "runtimes."+name)
		}
	}
	for name := range r.cfg.Runtimes {
		if _, ok := next.Runtimes[name]; !ok {
			needRestart = append(needRestart, "runtimes."+name+" (removed)")
		}
	}
	needRestart = append(needRestart, changedKeys(r.cfg, next)...)
	// What is applied is now what runs; the rest keeps its old values.
	r.cfg.LogLevel, r.cfg.Image.Mirrors, r.cfg.Image.InsecureRegistries = next.LogLevel, next.Image.Mirrors, next.Image.InsecureRegistries
	for _, name := range added {
		r.cfg.Runtimes[name] = next.Runtimes[name]
	}
	r.log.Info("reloaded configuration", "logLevel", r.level.Level().String(), "handlersAdded", added)
	if len(needRestart) > 0 {
		slices.Sort(needRestart)
		r.log.Warn("reload: these changes need a restart of berthd and were not applied", "keys", strings.Join(needRestart, ", "))
	}
}

// changedKeys names the keys (by their TOML path) whose values differ,
// but for the reloadable ones.
func changedKeys(a, b *config.Config) []string {
	var out []string
	var walk func(prefix string, x, y reflect.Value)
	walk = func(prefix string, x, y reflect.Value) {
		t := x.Type()
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if slices.Contains(reloadable, key) {
				continue
			}
			fx, fy := x.Field(i), y.Field(i)
			if fx.Kind() == reflect.Struct && fx.Type() != reflect.TypeFor[config.Duration]() {
				walk(key+".", fx, fy)
				continue
			}
			if !reflect.DeepEqual(fx.Interface(), fy.Interface()) {
				out = append(out, key)
			}
		}
	}
	walk("", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
	return out
}
