// Package config holds berthd's configuration: one TOML file, embedded
// defaults, strict decoding (unknown keys are errors) and validation that
// reports every problem at once.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where berthd looks for its config file.
const DefaultPath = "/etc/berth/config.toml"

// Config is berthd's whole configuration.
type Config struct {
	// Root holds persistent data: metadata, image content and layers.
	Root string `toml:"root"`
	// State holds runtime state that does not survive a reboot: sockets,
	// shim state, network namespaces.
	State string `toml:"state"`
	// Socket is the CRI gRPC unix socket.
	Socket string `toml:"socket"`
	// DefaultRuntime names the handler used when a pod names none.
	DefaultRuntime string `toml:"default_runtime"`
	// CgroupDriver is "cgroupfs" or "systemd".
	CgroupDriver string `toml:"cgroup_driver"`
	// ShimPath is the berth-shim binary; empty means next to berthd, then $PATH.
	ShimPath string `toml:"shim_path"`
	// LogLevel is berthd's log level (debug, info, warn, error); "" keeps
	// the --log-level flag's. SIGHUP applies a new one.
	LogLevel string `toml:"log_level"`

	Runtimes  map[string]Handler `toml:"runtimes"`
	Image     Image              `toml:"image"`
	CNI       CNI                `toml:"cni"`
	Security  Security           `toml:"security"`
	CDI       CDI                `toml:"cdi"`
	Streaming Streaming          `toml:"streaming"`
	Metrics   Metrics            `toml:"metrics"`
	NRI       NRI                `toml:"nri"`
}

// Handler maps a RuntimeClass handler to an OCI runtime binary.
type Handler struct {
	// Path of the OCI runtime binary (runc, crun, runsc, ...).
	Path string `toml:"path"`
	// Kind is the runtime's family, which decides what berth relies on in
	// it (runtime/oci's traits): one of RuntimeKinds; "" guesses from the
	// binary's name.
	Kind string `toml:"kind"`
	// Root is passed as --root: where the runtime keeps its own state.
	Root string `toml:"root"`
	// Args are extra global arguments, e.g. runsc's --platform=systrap.
	Args []string `toml:"args"`
	// Annotations are added to every OCI spec this handler runs.
	Annotations map[string]string `toml:"annotations"`
	// PodAnnotations and ContainerAnnotations are the patterns (path.Match
	// globs, "run.oci.*") of the pod's and the container's CRI annotations
	// passed to the runtime, which may act on them: crun on run.oci.*,
	// runsc on dev.gvisor.*. Empty: none.
	PodAnnotations       []string `toml:"pod_annotations"`
	ContainerAnnotations []string `toml:"container_annotations"`
	// Exec is how processes start in running containers: "direct" (the
	// shim enters the container itself; runc and crun only, others use
	// their runtime) or "runtime" (always the runtime's exec).
	Exec string `toml:"exec"`
	// Start is how created containers start: "direct" (runc only: the
	// shim does what `runc start` does, through runc's exec FIFO) or
	// "runtime" (always the runtime's start).
	Start string `toml:"start"`
}

// RuntimeKinds are the runtime families berth knows; "oci" assumes no
// more than runc's command line.
var RuntimeKinds = []string{"runc", "crun", "runsc", "oci"}

// Modes of Exec and Start.
const (
	ModeDirect  = "direct"
	ModeRuntime = "runtime"
)

// Image configures pulling and storing images.
type Image struct {
	PauseImage             string   `toml:"pause_image"`
	MaxConcurrentDownloads int      `toml:"max_concurrent_downloads"`
	ProgressTimeout        Duration `toml:"progress_timeout"`
	// Mirrors maps a registry host to endpoints tried in order before it,
	// e.g. "registry.k8s.io" = ["http://127.0.0.1:5000"]. An http:// endpoint
	// is plain HTTP.
	Mirrors map[string][]string `toml:"mirrors"`
	// InsecureRegistries are hosts reached over HTTPS without certificate
	// checks, else plain HTTP.
	InsecureRegistries []string `toml:"insecure_registries"`
}

// CNI configures pod networking.
type CNI struct {
	ConfDir  string   `toml:"conf_dir"`
	BinDirs  []string `toml:"bin_dirs"`
	CacheDir string   `toml:"cache_dir"`
	// DefaultSubnet is used for the bridge conflist berth writes when
	// ConfDir holds none.
	DefaultSubnet string `toml:"default_subnet"`
	// DefaultSubnetSet says the file set default_subnet: berth then
	// refuses a subnet another network holds instead of picking a free
	// one (runtime/network PlanDefaultSubnet).
	DefaultSubnetSet bool `toml:"-"`
}

// Security configures the confinement berth applies to pods.
type Security struct {
	// EnableSELinux applies the SELinux labels of pods and containers
	// (containerd's enable_selinux); off, labels are accepted and ignored
	// as containerd does, and `crictl info` says SELinux is off.
	EnableSELinux bool `toml:"enable_selinux"`
	// UnprivilegedPorts sets net.ipv4.ip_unprivileged_port_start=0 in pods
	// with their own network namespace, so non-root containers can bind
	// ports below 1024 (containerd's enable_unprivileged_ports).
	UnprivilegedPorts bool `toml:"unprivileged_ports"`
	// UnprivilegedICMP sets net.ipv4.ping_group_range="0 2147483647" in
	// pods with their own network namespace, so any user can ping
	// (containerd's enable_unprivileged_icmp).
	UnprivilegedICMP bool `toml:"unprivileged_icmp"`
	// RestoreCheckpointImages lets CreateContainer restore from an OCI
	// image marked as a checkpoint (CRI-O's form, which the kubelet can
	// use). CRIU restores as root whatever process state the image holds,
	// and berth can only check the result partly: off, such images are
	// refused; restoring from an archive path (crictl) is not affected.
	RestoreCheckpointImages bool `toml:"restore_checkpoint_images"`
	// DeviceOwnershipFromSecurityContext makes the device nodes a
	// container asks for (ContainerConfig.devices) owned by its
	// run_as_user/run_as_group instead of the host node's owner, so a
	// non-root container can use them (containerd's
	// device_ownership_from_security_context).
	DeviceOwnershipFromSecurityContext bool `toml:"device_ownership_from_security_context"`
}

// CDI configures Container Device Interface devices.
type CDI struct {
	// Enabled injects the CDI devices containers request; off, a request
	// for one is refused.
	Enabled bool `toml:"enabled"`
	// SpecDirs are the directories of CDI specs, later ones taking
	// precedence; they are watched and reread on change.
	SpecDirs []string `toml:"spec_dirs"`
}

// Streaming configures the exec/attach/port-forward server.
type Streaming struct {
	// Address is host:port; port 0 picks a free one. Loopback by default.
	Address     string   `toml:"address"`
	TLSCert     string   `toml:"tls_cert"`
	TLSKey      string   `toml:"tls_key"`
	IdleTimeout Duration `toml:"idle_timeout"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address is host:port, empty to disable.
	Address string `toml:"address"`
}

// NRI configures Node Resource Interface plugins (runtime/nri).
type NRI struct {
	// Enable starts NRI: plugins connect to SocketPath or are launched
	// from PluginPath, and see (and may adjust) every pod and container.
	Enable bool `toml:"enable"`
	// SocketPath is where external plugins connect.
	SocketPath string `toml:"socket_path"`
	// PluginPath holds plugins berthd launches at start ("NN-name").
	PluginPath string `toml:"plugin_path"`
	// PluginConfigPath holds the configuration of launched plugins.
	PluginConfigPath string `toml:"plugin_config_path"`
	// PluginRegistrationTimeout is how long a plugin may take to register.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout"`
	// PluginRequestTimeout is how long a plugin may take to answer an event.
	PluginRequestTimeout Duration `toml:"plugin_request_timeout"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// knownRuntimes are the OCI runtimes the default config looks for.
var knownRuntimes = []string{"runc", "crun", "runsc"}

// LookPath is exec.LookPath, replaceable in tests.
var LookPath = exec.LookPath

// Default returns the embedded defaults. Its handlers are the known OCI
// runtimes found in $PATH; the default handler is the first of them.
func Default() *Config {
	c := &Config{
		Root:         "/var/lib/berth",
		State:        "/run/berth",
		Socket:       "/run/berth/berth.sock",
		CgroupDriver: "cgroupfs",
		Runtimes:     map[string]Handler{},
		Image: Image{
			PauseImage:             "registry.k8s.io/pause:3.10",
			MaxConcurrentDownloads: 3,
			ProgressTimeout:        Duration{time.Minute},
			Mirrors:                map[string][]string{},
		},
		CNI: CNI{
			ConfDir:       "/etc/cni/net.d",
			BinDirs:       []string{"/opt/cni/bin", "/usr/lib/cni"},
			CacheDir:      "/var/lib/berth/cni",
			DefaultSubnet: "10.88.0.0/16",
		},
		Security: Security{UnprivilegedPorts: true, UnprivilegedICMP: true},
		CDI:      CDI{Enabled: true, SpecDirs: []string{"/etc/cdi", "/var/run/cdi"}},
		Streaming: Streaming{
			Address:     "127.0.0.1:0",
			IdleTimeout: Duration{4 * time.Hour},
		},
		// The NRI library's defaults, as containerd and CRI-O use them.
		NRI: NRI{
			SocketPath:                "/var/run/nri/nri.sock",
			PluginPath:                "/opt/nri/plugins",
			PluginConfigPath:          "/etc/nri/conf.d",
			PluginRegistrationTimeout: Duration{5 * time.Second},
			PluginRequestTimeout:      Duration{2 * time.Second},
		},
	}
	for _, name := range knownRuntimes {
		path, err := LookPath(name)
		if err != nil {
			continue
		}
		rt := Handler{Path: path, Kind: name, Root: filepath.Join(c.State, "runtime", name), Exec: ModeDirect, Start: ModeDirect}
		if name == "runsc" {
			// gVisor enforces a container's seccomp profile only when asked
			// to (it filters system calls in its own kernel otherwise). Its
			// platform stays its own default: older releases lack systrap.
			rt.Args = []string{"--oci-seccomp"}
		}
		c.Runtimes[name] = rt
		if c.DefaultRuntime == "" {
			c.DefaultRuntime = name
		}
	}
	return c
}

// Load reads path over the defaults. A missing file at DefaultPath means
// "use defaults"; a missing file named explicitly is an error.
func Load(path string, explicit bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		c := Default()
		return c, c.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes TOML over the defaults and validates the result. Every
// unknown key, mistyped value and invalid setting is reported, by key.
func Parse(text string) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil, err
	}
	if errs := checkTable(raw, configSchema, ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := Default()
	// A file that lists runtimes replaces the detected ones.
	if _, ok := raw["runtimes"]; ok {
		c.Runtimes = map[string]Handler{}
	}
	if _, err := toml.Decode(text, c); err != nil {
		return nil, err
	}
	if cni, ok := raw["cni"].(map[string]any); ok {
		_, c.CNI.DefaultSubnetSet = cni["default_subnet"]
	}
	// Runtime state lives under the state dir unless a root is given.
	for name, rt := range c.Runtimes {
		if _, listed := raw["runtimes"]; rt.Root == "" || !listed {
			rt.Root = filepath.Join(c.State, "runtime", name)
		}
		if rt.Exec == "" {
			rt.Exec = ModeDirect
		}
		if rt.Start == "" {
			rt.Start = ModeDirect
		}
		c.Runtimes[name] = rt
	}
	return c, c.Validate()
}

// Validate checks semantic constraints and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for key, p := range map[string]string{"root": c.Root, "state": c.State, "socket": c.Socket, "cni.conf_dir": c.CNI.ConfDir, "cni.cache_dir": c.CNI.CacheDir} {
		if !filepath.IsAbs(p) {
			bad(key, "must be an absolute path, got %q", p)
		}
	}
	for i, d := range c.CDI.SpecDirs {
		if !filepath.IsAbs(d) {
			bad(fmt.Sprintf("cdi.spec_dirs[%d]", i), "must be an absolute path, got %q", d)
		}
	}
	for i, d := range c.CNI.BinDirs {
		if !filepath.IsAbs(d) {
			bad(fmt.Sprintf("cni.bin_dirs[%d]", i), "must be an absolute path, got %q", d)
		}
	}
	if c.LogLevel != "" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
			bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
		}
	}
	if c.CgroupDriver != "cgroupfs" && c.CgroupDriver != "systemd" {
		bad("cgroup_driver", "must be \"cgroupfs\" or \"systemd\", got %q", c.CgroupDriver)
	}
	if len(c.Runtimes) == 0 {
		bad("runtimes", "no OCI runtime configured and none of %s found in $PATH", strings.Join(knownRuntimes, ", "))
	} else if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		bad("default_runtime", "%q is not a configured handler (have %s)", c.DefaultRuntime, strings.Join(c.RuntimeNames(), ", "))
	}
	for name, rt := range c.Runtimes {
		key := "runtimes." + name
		if rt.Path == "" {
			bad(key+".path", "must be set")
		}
		if rt.Root != "" && !filepath.IsAbs(rt.Root) {
			bad(key+".root", "must be an absolute path, got %q", rt.Root)
		}
		if rt.Kind != "" && !slices.Contains(RuntimeKinds, rt.Kind) {
			bad(key+".kind", "must be one of %s, got %q", strings.Join(RuntimeKinds, ", "), rt.Kind)
		}
		for k, v := range map[string]string{"exec": rt.Exec, "start": rt.Start} {
			if v != "" && v != ModeDirect && v != ModeRuntime {
				bad(key+"."+k, "must be %q or %q, got %q", ModeDirect, ModeRuntime, v)
			}
		}
		for k, patterns := range map[string][]string{"pod_annotations": rt.PodAnnotations, "container_annotations": rt.ContainerAnnotations} {
			for i, p := range patterns {
				if err := checkAnnotationPattern(p); err != nil {
					bad(fmt.Sprintf("%s.%s[%d]", key, k, i), "%v", err)
				}
			}
		}
	}
	if c.Image.PauseImage == "" {
		bad("image.pause_image", "must be set")
	}
	if c.Image.MaxConcurrentDownloads < 1 {
		bad("image.max_concurrent_downloads", "must be at least 1, got %d", c.Image.MaxConcurrentDownloads)
	}
	if c.Image.ProgressTimeout.Duration <= 0 {
		bad("image.progress_timeout", "must be positive, got %s", c.Image.ProgressTimeout)
	}
	for host, eps := range c.Image.Mirrors {
		for i, ep := range eps {
			if _, err := ParseEndpoint(ep); err != nil {
				bad(fmt.Sprintf("image.mirrors.%q[%d]", host, i), "%v", err)
			}
		}
	}
	if _, _, err := net.ParseCIDR(c.CNI.DefaultSubnet); err != nil {
		bad("cni.default_subnet", "%v", err)
	}
	if _, _, err := net.SplitHostPort(c.Streaming.Address); err != nil {
		bad("streaming.address", "%v", err)
	}
	if (c.Streaming.TLSCert == "") != (c.Streaming.TLSKey == "") {
		bad("streaming.tls_cert", "tls_cert and tls_key must be set together")
	}
	if c.Metrics.Address != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Address); err != nil {
			bad("metrics.address", "%v", err)
		}
	}
	c.NRI.validate(bad)
	return errors.Join(errs...)
}

// checkAnnotationPattern accepts a path.Match pattern of annotation keys.
func checkAnnotationPattern(p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("an empty pattern matches nothing")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("invalid pattern %q: %w", p, err)
	}
	return nil
}

// RuntimeNames lists the configured handlers, sorted.
func (c *Config) RuntimeNames() []string {
	names := make([]string, 0, len(c.Runtimes))
	for n := range c.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Endpoint is a registry mirror endpoint.
type Endpoint struct {
	Host      string // host[:port]
	PlainHTTP bool
}

// ParseEndpoint accepts "http://host:port", "https://host" or a bare host.
func ParseEndpoint(s string) (Endpoint, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: scheme must be http or https", s)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: want scheme://host[:port]", s)
	}
	return Endpoint{Host: u.Host, PlainHTTP: u.Scheme == "http"}, nil
}
