package config

import (
	"bytes"
	"strconv"
	"strings"
	"text/template"
)

// Render writes c as a commented TOML file; `berthd config default` prints
// Render(Default()). Parse(Render(c)) yields c again.
func Render(c *Config) string {
	var b bytes.Buffer
	if err := renderTmpl.Execute(&b, c); err != nil {
		panic(err) // the template is static and covered by tests
	}
	return b.String()
}

func quote(s string) string { return strconv.Quote(s) }

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

var renderTmpl = template.Must(template.New("config").Funcs(template.FuncMap{
	"q": quote, "ql": quoteList,
}).Parse(`# berthd configuration. Every key is optional; these are the defaults.
# Unknown keys and invalid values are errors that name the key.

# Persistent data: metadata (bbolt), image content and unpacked layers.
root = {{q .Root}}
# Runtime state that a reboot clears: shim sockets, network namespaces.
state = {{q .State}}
# The CRI socket the kubelet and crictl connect to (mode 0660, owner root).
socket = {{q .Socket}}
# Handler used for pods whose RuntimeClass names none.
default_runtime = {{q .DefaultRuntime}}
# "cgroupfs" or "systemd"; must match the kubelet's cgroupDriver.
cgroup_driver = {{q .CgroupDriver}}
# berth-shim binary; empty means the one next to berthd, then $PATH.
shim_path = {{q .ShimPath}}
# Log level (debug, info, warn, error); empty keeps --log-level's. SIGHUP
# rereads this file and applies the level, registries and new handlers.
log_level = {{q .LogLevel}}

# One table per RuntimeClass handler: [runtimes.<handler>].
#   path        OCI runtime binary (runc, crun, runsc or compatible)
#   kind        its family, which says what berth may rely on: "runc",
#               "crun", "runsc", or "oci" (runc's command line, nothing
#               more); "" guesses from the binary's name
#   root        its state directory (passed as --root)
#   args        extra global arguments, e.g. ["--platform=systrap"] for runsc
#   annotations added to every OCI spec run by this handler
#   pod_annotations, container_annotations
#               patterns (globs: "run.oci.*") of the CRI pod and container
#               annotations passed to the runtime, which may act on them
#               (crun on run.oci.*, runsc on dev.gvisor.*); [] passes none.
#               io.kubernetes.cri.* and io.kubernetes.cri-o.* never pass
#   exec        "direct": berth-shim starts exec'd processes in runc and crun
#               containers itself, as the runtime would (much faster);
#               "runtime": always through the runtime's exec
#   start       "direct": berth-shim starts created runc containers itself
#               through runc's exec FIFO, as "runc start" does (faster);
#               "runtime": always the runtime's start
{{- range $name, $rt := .Runtimes}}
[runtimes.{{$name}}]
path = {{q $rt.Path}}
kind = {{q $rt.Kind}}
root = {{q $rt.Root}}
args = {{ql $rt.Args}}
pod_annotations = {{ql $rt.PodAnnotations}}
container_annotations = {{ql $rt.ContainerAnnotations}}
exec = {{q $rt.Exec}}
start = {{q $rt.Start}}
{{- if $rt.Annotations}}
[runtimes.{{$name}}.annotations]
{{- range $k, $v := $rt.Annotations}}
{{q $k}} = {{q $v}}
{{- end}}
{{- end}}
{{end}}
[image]
# Image of the sandbox (pause) container of pods that need one (gVisor
# pods, pods sharing a PID namespace); never garbage collected.
pause_image = {{q .Image.PauseImage}}
# Layers downloaded at once per pull.
max_concurrent_downloads = {{.Image.MaxConcurrentDownloads}}
# A pull that receives no bytes for this long fails.
progress_timeout = {{q .Image.ProgressTimeout.String}}
# Hosts reached over HTTPS without certificate checks, else plain HTTP.
insecure_registries = {{ql .Image.InsecureRegistries}}

# Mirrors tried in order before the registry itself; http:// means plain HTTP.
# Example: "registry.k8s.io" = ["http://127.0.0.1:5000"]
[image.mirrors]
{{- range $host, $eps := .Image.Mirrors}}
{{q $host}} = {{ql $eps}}
{{- end}}

[cni]
# CNI network configurations; berth writes a bridge conflist here if empty.
conf_dir = {{q .CNI.ConfDir}}
# Directories searched for CNI plugin binaries.
bin_dirs = {{ql .CNI.BinDirs}}
cache_dir = {{q .CNI.CacheDir}}
# Subnet of the bridge network berth writes when conf_dir has none. Unset,
# it is 10.88.0.0/16, or a free private /16 when another interface holds
# that one (containerd and podman default to it too); set, berth refuses
# to start when another network holds it.
{{if not .CNI.DefaultSubnetSet}}# {{end}}default_subnet = {{q .CNI.DefaultSubnet}}

[security]
# Apply pods' and containers' SELinux labels; off, they are accepted and
# ignored (as containerd does) and crictl info says SELinux is off.
enable_selinux = {{.Security.EnableSELinux}}
# In pods with their own network namespace: non-root processes may bind
# ports below 1024 (net.ipv4.ip_unprivileged_port_start=0) and ping
# (net.ipv4.ping_group_range="0 2147483647"). A pod's own sysctls win.
unprivileged_ports = {{.Security.UnprivilegedPorts}}
unprivileged_icmp = {{.Security.UnprivilegedICMP}}
# Restore containers from OCI images marked as checkpoints (the kubelet's
# way to restore). CRIU restores as root the process state such an image
# holds: enable only where checkpoint images come from trusted sources.
restore_checkpoint_images = {{.Security.RestoreCheckpointImages}}
# Device nodes a container asks for are owned, inside it, by its
# run_as_user/run_as_group when they are not 0 (else by the host node's
# owner), so a non-root container can open them (as containerd's key).
device_ownership_from_security_context = {{.Security.DeviceOwnershipFromSecurityContext}}

[cdi]
# Inject the CDI devices containers request (DRA, device plugins in CDI
# mode); off, a request for one is refused.
enabled = {{.CDI.Enabled}}
# CDI spec directories, later ones taking precedence; reread on change.
spec_dirs = {{ql .CDI.SpecDirs}}

[streaming]
# Exec/attach/port-forward server; loopback by default, port 0 picks one.
address = {{q .Streaming.Address}}
# Serve TLS when both are set.
tls_cert = {{q .Streaming.TLSCert}}
tls_key = {{q .Streaming.TLSKey}}
# Streams idle this long are closed.
idle_timeout = {{q .Streaming.IdleTimeout.String}}

[metrics]
# Prometheus /metrics address (host:port); empty disables it.
address = {{q .Metrics.Address}}

[nri]
# Node Resource Interface: plugins (resource policies, device injectors)
# see every pod and container event and may adjust containers before they
# are created, update their resources and evict them. A plugin is trusted
# as root: only root can reach the socket.
enable = {{.NRI.Enable}}
# Socket external plugins connect to.
socket_path = {{q .NRI.SocketPath}}
# Plugins berthd launches at start, named "<index>-<name>" (e.g. 10-logger).
plugin_path = {{q .NRI.PluginPath}}
# Their configuration: <index>-<name>.conf or <name>.conf.
plugin_config_path = {{q .NRI.PluginConfigPath}}
# A plugin that takes longer to register is dropped.
plugin_registration_timeout = {{q .NRI.PluginRegistrationTimeout.String}}
# A plugin that takes longer to answer an event is dropped.
plugin_request_timeout = {{q .NRI.PluginRequestTimeout.String}}
`))
