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
# Subnet of the bridge network berth writes when conf_dir has none.
default_subnet = {{q .CNI.DefaultSubnet}}

[security]
# Apply pods' and containers' SELinux labels; off, they are accepted and
# ignored (as containerd does) and crictl info says SELinux is off.
enable_selinux = {{.Security.EnableSELinux}}
# In pods with their own network namespace: non-root processes may bind
# ports below 1024 (net.ipv4.ip_unprivileged_port_start=0) and ping
# (net.ipv4.ping_group_range="0 2147483647"). A pod's own sysctls win.
unprivileged_ports = {{.Security.UnprivilegedPorts}}
unprivileged_icmp = {{.Security.UnprivilegedICMP}}

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
`))
