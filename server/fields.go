package server

// Disposition is what berth does with one field of a CRI request: it is
// Handled (where, or how it is honoured) or Refused (why a request that
// sets it fails, with InvalidArgument or FailedPrecondition naming it, or
// Unimplemented for the whole RPC). Exactly one of the two is set.
type Disposition struct {
	Handled string
	Refused string
}

func handled(how string) Disposition { return Disposition{Handled: how} }
func refused(why string) Disposition { return Disposition{Refused: why} }

var (
	// unimplemented: the field's RPC answers Unimplemented.
	unimplemented = refused("RPC unimplemented (issue 13)")
	objectID      = handled("the object's id")
	// windowsOnly: berth runs Linux containers; a non-empty Windows config
	// is refused (refuse.go).
	windowsOnly = refused("Windows only: a non-empty windows config is InvalidArgument")
	listFilter  = handled("list filter (runtime/pod)")
	// podResourcesHow is what becomes of a pod's overhead and resources
	// (runtime/pod sandbox_resources.go).
	podResourcesHow = "recorded (verbose PodSandboxStatus); resources plus overhead size the pod cgroup berth makes without cgroup_parent " +
		"(a kubelet's parent it sizes itself) and a gVisor pod's sandbox container; cpusets and unified only in resources; " +
		"systemd driver without a parent: FailedPrecondition"
)

// Fields is every field of every CRI request message, by its protobuf
// full name, with what berth does with it. TestEveryCRIFieldHasADisposition
// fails on a field missing here, so a field that a new cri-api adds is
// looked at before berth drops it silently. The rule (issue 12): honour
// the field or refuse the request naming it; never drop it.
var Fields = map[string]Disposition{
	// Version, Status, RuntimeConfig, UpdateRuntimeConfig.
	"runtime.v1.VersionRequest.version":                    handled("the kubelet's CRI version; berth speaks v1 whatever it names"),
	"runtime.v1.StatusRequest.verbose":                     handled("adds berth's info map"),
	"runtime.v1.UpdateRuntimeConfigRequest.runtime_config": handled("accepted (runtime.go)"),
	"runtime.v1.RuntimeConfig.network_config":              handled("accepted (runtime.go)"),
	"runtime.v1.NetworkConfig.pod_cidr":                    handled("renders berth's own default CNI network with it, when the CIDR changes; an admin's network is left alone; malformed is InvalidArgument (runtime/network podcidr.go)"),

	// RunPodSandbox.
	"runtime.v1.RunPodSandboxRequest.config":            handled("the pod (runtime/pod sandbox_run.go)"),
	"runtime.v1.RunPodSandboxRequest.runtime_handler":   handled("picks the OCI runtime; an unknown one is InvalidArgument (runtime/oci)"),
	"runtime.v1.PodSandboxConfig.metadata":              handled("the pod's unique name and status"),
	"runtime.v1.PodSandboxMetadata.name":                handled("pod name: record, status, CNI args, annotations"),
	"runtime.v1.PodSandboxMetadata.uid":                 handled("pod name: record, status, CNI args, annotations"),
	"runtime.v1.PodSandboxMetadata.namespace":           handled("pod name: record, status, CNI args, annotations"),
	"runtime.v1.PodSandboxMetadata.attempt":             handled("pod name: record, status"),
	"runtime.v1.PodSandboxConfig.hostname":              handled("UTS namespace and /etc/hostname (the node's with host network)"),
	"runtime.v1.PodSandboxConfig.log_directory":         handled("containers' log files are under it"),
	"runtime.v1.PodSandboxConfig.dns_config":            handled("the pod's /etc/resolv.conf (runtime/pod files.go)"),
	"runtime.v1.DNSConfig.servers":                      handled("resolv.conf nameserver lines"),
	"runtime.v1.DNSConfig.searches":                     handled("resolv.conf search line"),
	"runtime.v1.DNSConfig.options":                      handled("resolv.conf options line"),
	"runtime.v1.PodSandboxConfig.port_mappings":         handled("CNI portMappings capability (runtime/network); with host network the ports are the node's already"),
	"runtime.v1.PortMapping.protocol":                   handled("CNI portMappings"),
	"runtime.v1.PortMapping.container_port":             handled("CNI portMappings"),
	"runtime.v1.PortMapping.host_port":                  handled("CNI portMappings; 0 publishes nothing, as in containerd"),
	"runtime.v1.PortMapping.host_ip":                    handled("CNI portMappings"),
	"runtime.v1.PodSandboxConfig.labels":                handled("status and list filters"),
	"runtime.v1.PodSandboxConfig.annotations":           handled("status; reach the OCI runtime only through the handler's allow-list; CNI gets them as io.kubernetes.cri.pod-annotations and kubernetes.io/{ingress,egress}-bandwidth as the bandwidth capability, a bad one InvalidArgument (runtime/network capabilities.go)"),
	"runtime.v1.PodSandboxConfig.linux":                 handled("see its fields"),
	"runtime.v1.PodSandboxConfig.windows":               windowsOnly,
	"runtime.v1.LinuxPodSandboxConfig.cgroup_parent":    handled("the pod's cgroup (spec.CgroupsPath)"),
	"runtime.v1.LinuxPodSandboxConfig.security_context": handled("see its fields"),
	"runtime.v1.LinuxPodSandboxConfig.sysctls":          handled("checked as the kubelet does; network ones set after CNI ADD, IPC/UTS ones where berth pins them, else by the sandbox container (pod/sysctls.go)"),
	"runtime.v1.LinuxPodSandboxConfig.overhead":         handled(podResourcesHow),
	"runtime.v1.LinuxPodSandboxConfig.resources":        handled(podResourcesHow),

	// The pod's security context.
	"runtime.v1.LinuxSandboxSecurityContext.namespace_options":   handled("the pod's namespaces (spec/namespaces.go)"),
	"runtime.v1.LinuxSandboxSecurityContext.selinux_options":     handled("SELinux label (spec/selinux.go) with security.enable_selinux on an SELinux node; otherwise accepted and ignored, as containerd (malformed ones refused)"),
	"runtime.v1.LinuxSandboxSecurityContext.run_as_user":         handled("the sandbox container's user"),
	"runtime.v1.LinuxSandboxSecurityContext.run_as_group":        handled("the sandbox container's group"),
	"runtime.v1.LinuxSandboxSecurityContext.readonly_rootfs":     handled("the sandbox container's rootfs is always read-only"),
	"runtime.v1.LinuxSandboxSecurityContext.supplemental_groups": handled("the sandbox container's groups; containers get them from their own security context (the kubelet merges the pod's in)"),
	"runtime.v1.LinuxSandboxSecurityContext.supplemental_groups_policy": handled("containers get it from their own security context; " +
		"the sandbox container reads no /etc/group, so both policies give it the listed groups"),
	"runtime.v1.LinuxSandboxSecurityContext.privileged":           handled("the sandbox container's capabilities and paths; a pod's containers may be privileged only if it is (spec/privileged.go)"),
	"runtime.v1.LinuxSandboxSecurityContext.seccomp":              handled("the sandbox container's seccomp profile (spec/seccomp.go)"),
	"runtime.v1.LinuxSandboxSecurityContext.seccomp_profile_path": handled("deprecated form of seccomp (spec/seccomp.go)"),
	"runtime.v1.LinuxSandboxSecurityContext.apparmor":             handled("AppArmor profile (spec/apparmor.go): RuntimeDefault is berth-default, Localhost must be loaded; anything but Unconfined refused on a node without AppArmor"),
	"runtime.v1.NamespaceOption.network": handled("pod: its own or the node's; container: its pod's, " +
		"NODE against a pod's own or CONTAINER against the node's is InvalidArgument; TARGET is InvalidArgument"),
	"runtime.v1.NamespaceOption.pid": handled("POD, CONTAINER, NODE; TARGET joins target_id's (containers only: a pod's TARGET is InvalidArgument); " +
		"a container of a host-PID pod asking for its own is InvalidArgument"),
	"runtime.v1.NamespaceOption.ipc": handled("as network: the pod's own or the node's, a container's disagreeing request and TARGET are InvalidArgument"),
	"runtime.v1.NamespaceOption.target_id": handled("the container whose PID namespace a TARGET container joins; " +
		"InvalidArgument without pid TARGET (or without a target for TARGET)"),
	"runtime.v1.NamespaceOption.userns_options": handled("POD: a pinned user namespace owning the pod's net/IPC/UTS, idmapped layers (pod/userns.go); NODE: none; others refused"),
	"runtime.v1.UserNamespace.mode":             handled("POD or NODE; CONTAINER and TARGET refused (pod/userns.go)"),
	"runtime.v1.UserNamespace.uids":             handled("the user namespace's uid_map; exactly one range mapping root (pod/userns.go)"),
	"runtime.v1.UserNamespace.gids":             handled("the user namespace's gid_map; exactly one range mapping root (pod/userns.go)"),
	"runtime.v1.IDMapping.host_id":              handled("a mapping's host start; 0 (host root) refused"),
	"runtime.v1.IDMapping.container_id":         handled("a mapping's container start"),
	"runtime.v1.IDMapping.length":               handled("a mapping's length; 0 and overflow refused"),
	"runtime.v1.SELinuxOption.user":             handled("a part of the SELinux label (spec/selinux.go)"),
	"runtime.v1.SELinuxOption.role":             handled("a part of the SELinux label (spec/selinux.go)"),
	"runtime.v1.SELinuxOption.type":             handled("a part of the SELinux label (spec/selinux.go)"),
	"runtime.v1.SELinuxOption.level":            handled("a part of the SELinux label (spec/selinux.go); default: an MCS pair of the pod"),
	"runtime.v1.Int64Value.value":               handled("the wrapped value"),
	"runtime.v1.SecurityProfile.profile_type":   handled("seccomp: RuntimeDefault, Unconfined, Localhost (spec/seccomp.go); AppArmor: the same three (spec/apparmor.go)"),
	"runtime.v1.SecurityProfile.localhost_ref":  handled("seccomp: the Localhost profile's file; AppArmor: the loaded profile's name"),

	// Windows, in pod, container and update requests.
	"runtime.v1.WindowsPodSandboxConfig.security_context":        windowsOnly,
	"runtime.v1.WindowsSandboxSecurityContext.run_as_username":   windowsOnly,
	"runtime.v1.WindowsSandboxSecurityContext.credential_spec":   windowsOnly,
	"runtime.v1.WindowsSandboxSecurityContext.host_process":      windowsOnly,
	"runtime.v1.WindowsSandboxSecurityContext.namespace_options": windowsOnly,
	"runtime.v1.WindowsNamespaceOption.network":                  windowsOnly,
	"runtime.v1.ContainerConfig.windows":                         windowsOnly,
	"runtime.v1.WindowsContainerConfig.resources":                windowsOnly,
	"runtime.v1.WindowsContainerConfig.security_context":         windowsOnly,
	"runtime.v1.WindowsContainerResources.cpu_shares":            windowsOnly,
	"runtime.v1.WindowsContainerResources.cpu_count":             windowsOnly,
	"runtime.v1.WindowsContainerResources.cpu_maximum":           windowsOnly,
	"runtime.v1.WindowsContainerResources.memory_limit_in_bytes": windowsOnly,
	"runtime.v1.WindowsContainerResources.rootfs_size_in_bytes":  windowsOnly,
	"runtime.v1.WindowsContainerResources.affinity_cpus":         windowsOnly,
	"runtime.v1.WindowsCpuGroupAffinity.cpu_mask":                windowsOnly,
	"runtime.v1.WindowsCpuGroupAffinity.cpu_group":               windowsOnly,
	"runtime.v1.WindowsContainerSecurityContext.run_as_username": windowsOnly,
	"runtime.v1.WindowsContainerSecurityContext.credential_spec": windowsOnly,
	"runtime.v1.WindowsContainerSecurityContext.host_process":    windowsOnly,
	"runtime.v1.UpdateContainerResourcesRequest.windows":         windowsOnly,

	// Resources, of containers and (podResourcesHow) of pods.
	"runtime.v1.LinuxContainerResources.cpu_period":            handled("cpu.cfs_period (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.cpu_quota":             handled("cpu.cfs_quota (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.cpu_shares":            handled("cpu.shares / cpu.weight (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.memory_limit_in_bytes": handled("memory limit (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.oom_score_adj": handled("the process's score at create, clamped to berth's floor; " +
		"UpdateContainerResources cannot change a running process's score, as in containerd (reported)"),
	"runtime.v1.LinuxContainerResources.cpuset_cpus":                handled("cpuset (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.cpuset_mems":                handled("cpuset (spec/resources.go)"),
	"runtime.v1.LinuxContainerResources.hugepage_limits":            handled("hugetlb limits (spec/resources.go)"),
	"runtime.v1.HugepageLimit.page_size":                            handled("hugetlb limits"),
	"runtime.v1.HugepageLimit.limit":                                handled("hugetlb limits"),
	"runtime.v1.LinuxContainerResources.unified":                    handled("cgroup v2 files; FailedPrecondition at create and update on a node whose containers use cgroup v1 (spec/refuse.go)"),
	"runtime.v1.LinuxContainerResources.memory_swap_limit_in_bytes": handled("memory+swap limit (spec/resources.go)"),

	// Pod lifecycle and lists.
	"runtime.v1.StopPodSandboxRequest.pod_sandbox_id":   objectID,
	"runtime.v1.RemovePodSandboxRequest.pod_sandbox_id": objectID,
	"runtime.v1.PodSandboxStatusRequest.pod_sandbox_id": objectID,
	"runtime.v1.PodSandboxStatusRequest.verbose":        handled("adds berth's info map"),
	"runtime.v1.ListPodSandboxRequest.filter":           listFilter,
	"runtime.v1.PodSandboxFilter.id":                    listFilter,
	"runtime.v1.PodSandboxFilter.state":                 listFilter,
	"runtime.v1.PodSandboxStateValue.state":             listFilter,
	"runtime.v1.PodSandboxFilter.label_selector":        listFilter,

	// CreateContainer.
	"runtime.v1.CreateContainerRequest.pod_sandbox_id": objectID,
	"runtime.v1.CreateContainerRequest.config":         handled("the container (runtime/pod container_create.go)"),
	"runtime.v1.CreateContainerRequest.sandbox_config": handled("redundant: berth uses the pod's config as RunPodSandbox stored it"),
	"runtime.v1.ContainerConfig.metadata":              handled("the container's unique name and status"),
	"runtime.v1.ContainerMetadata.name":                handled("container name: record, status, annotations"),
	"runtime.v1.ContainerMetadata.attempt":             handled("container name: record, status"),
	"runtime.v1.ContainerConfig.image":                 handled("the image the rootfs is made of; an absolute path to a checkpoint archive restores that container (runtime/pod container_restore.go)"),
	"runtime.v1.ImageSpec.image":                       handled("the image, by name or id; status reports a name for an id (runtime/pod container_image.go)"),
	"runtime.v1.ImageSpec.annotations":                 handled("informational: berth takes the node's platform, no annotation selects another"),
	"runtime.v1.ImageSpec.user_specified_image":        handled("the name ContainerStatus.image reports when it names the image; kept in the status's ImageSpec; the image-name annotation"),
	"runtime.v1.ImageSpec.runtime_handler":             handled("one image store serves every handler (all run the node's platform); PullImage refuses an unknown handler"),
	"runtime.v1.ImageSpec.image_ref":                   handled("informational: the digest the kubelet resolved; berth resolves image itself"),
	"runtime.v1.ContainerConfig.command":               handled("replaces the image's entrypoint (spec/process.go)"),
	"runtime.v1.ContainerConfig.args":                  handled("replace the image's cmd (spec/process.go)"),
	"runtime.v1.ContainerConfig.working_dir":           handled("process cwd"),
	"runtime.v1.ContainerConfig.envs":                  handled("process environment, over the image's"),
	"runtime.v1.KeyValue.key":                          handled("environment variable"),
	"runtime.v1.KeyValue.value":                        handled("environment variable"),
	"runtime.v1.ContainerConfig.mounts":                handled("bind mounts and image volumes (spec/mounts.go, runtime/pod volumes.go)"),
	"runtime.v1.Mount.container_path":                  handled("mount destination; must be absolute"),
	"runtime.v1.Mount.host_path":                       handled("bind source (made when missing); InvalidArgument with image"),
	"runtime.v1.Mount.readonly":                        handled("ro; an image volume must be read-only"),
	"runtime.v1.Mount.selinux_relabel":                 handled("relabelled with the mount label without following links, host directories refused (spec.Relabels, runtime/selinux); ignored with SELinux off"),
	"runtime.v1.Mount.propagation": handled("rprivate, rslave, rshared, and the rootfs's propagation; " +
		"an image volume has nothing mounted under it to propagate, every mode is the same"),
	"runtime.v1.Mount.uidMappings":         handled("an idmapped bind mount (spec/mounts.go); refused outside a pod with a user namespace"),
	"runtime.v1.Mount.gidMappings":         handled("an idmapped bind mount (spec/mounts.go); refused outside a pod with a user namespace"),
	"runtime.v1.Mount.recursive_read_only": handled("rro where the runtime has it, else InvalidArgument; an image volume has no submounts: ro is recursive"),
	"runtime.v1.Mount.image":               handled("an image volume, mounted read-only (runtime/pod volumes.go)"),
	"runtime.v1.Mount.image_sub_path":      handled("the image volume's subdirectory; InvalidArgument without image"),
	"runtime.v1.Mount.mount_options": handled("added to the bind mount's options; " +
		"InvalidArgument on an image volume, whose mount does not take them yet (reported)"),
	"runtime.v1.ContainerConfig.devices":               handled("device nodes and cgroup rules; owned by run_as_user/run_as_group with security.device_ownership_from_security_context (spec/devices.go)"),
	"runtime.v1.Device.container_path":                 handled("device node path"),
	"runtime.v1.Device.host_path":                      handled("the host device, or a directory: every node below it, no symlink followed; neither is InvalidArgument"),
	"runtime.v1.Device.permissions":                    handled("cgroup device access (rwm when empty)"),
	"runtime.v1.ContainerConfig.labels":                handled("status and list filters"),
	"runtime.v1.ContainerConfig.annotations":           handled("status; reach the OCI runtime only through the handler's allow-list"),
	"runtime.v1.ContainerConfig.log_path":              handled("the shim's CRI log file, under the pod's log_directory"),
	"runtime.v1.ContainerConfig.stdin":                 handled("the shim keeps stdin open"),
	"runtime.v1.ContainerConfig.stdin_once":            handled("the shim closes stdin after the first attach"),
	"runtime.v1.ContainerConfig.tty":                   handled("process terminal"),
	"runtime.v1.ContainerConfig.linux":                 handled("see its fields"),
	"runtime.v1.ContainerConfig.CDI_devices":           handled("injected from the CDI specs of cdi.spec_dirs (runtime/cdi); unknown or CDI off: FailedPrecondition"),
	"runtime.v1.CDIDevice.name":                        handled("a fully qualified CDI device name; malformed: InvalidArgument"),
	"runtime.v1.ContainerConfig.stop_signal":           handled("StopContainer's signal, over the image's STOPSIGNAL; ContainerStatus.stop_signal reports the one in effect"),
	"runtime.v1.LinuxContainerConfig.resources":        handled("cgroup limits and oom_score_adj"),
	"runtime.v1.LinuxContainerConfig.security_context": handled("see its fields"),

	// The container's security context.
	"runtime.v1.LinuxContainerSecurityContext.capabilities": handled("capability sets (spec/caps.go)"),
	"runtime.v1.Capability.add_capabilities":                handled("added to the default set; ALL is every one the node has"),
	"runtime.v1.Capability.drop_capabilities":               handled("dropped from the set; ALL empties it. A privileged container has every capability, as in containerd"),
	"runtime.v1.Capability.add_ambient_capabilities":        handled("ambient and inheritable sets"),
	"runtime.v1.LinuxContainerSecurityContext.privileged": handled("every capability and device, no masked paths nor seccomp; " +
		"InvalidArgument in a pod that is not privileged, as the kubelet and containerd (spec/privileged.go)"),
	"runtime.v1.LinuxContainerSecurityContext.namespace_options":          handled("the container's namespaces, within its pod's (spec/refuse.go)"),
	"runtime.v1.LinuxContainerSecurityContext.selinux_options":            handled("SELinux label (spec/selinux.go) with security.enable_selinux on an SELinux node; otherwise accepted and ignored, as containerd (malformed ones refused)"),
	"runtime.v1.LinuxContainerSecurityContext.run_as_user":                handled("process uid (spec/user.go)"),
	"runtime.v1.LinuxContainerSecurityContext.run_as_group":               handled("process gid; InvalidArgument without a user"),
	"runtime.v1.LinuxContainerSecurityContext.run_as_username":            handled("process user, looked up in the image's /etc/passwd"),
	"runtime.v1.LinuxContainerSecurityContext.readonly_rootfs":            handled("read-only root and pod files"),
	"runtime.v1.LinuxContainerSecurityContext.supplemental_groups":        handled("additional gids (spec/user.go)"),
	"runtime.v1.LinuxContainerSecurityContext.supplemental_groups_policy": handled("Merge adds the image's /etc/group groups, Strict does not"),
	"runtime.v1.LinuxContainerSecurityContext.no_new_privs":               handled("process noNewPrivileges"),
	"runtime.v1.LinuxContainerSecurityContext.masked_paths": handled("exactly the paths given, none for an empty list (procMount Unmasked), " +
		"as containerd (spec/maskedpaths.go)"),
	"runtime.v1.LinuxContainerSecurityContext.readonly_paths": handled("exactly the paths given, none for an empty list (procMount Unmasked), " +
		"as containerd (spec/maskedpaths.go)"),
	"runtime.v1.LinuxContainerSecurityContext.seccomp":              handled("seccomp profile (spec/seccomp.go)"),
	"runtime.v1.LinuxContainerSecurityContext.seccomp_profile_path": handled("deprecated form of seccomp (spec/seccomp.go)"),
	"runtime.v1.LinuxContainerSecurityContext.apparmor":             handled("AppArmor profile (spec/apparmor.go): RuntimeDefault is berth-default, Localhost must be loaded; anything but Unconfined refused on a node without AppArmor"),
	"runtime.v1.LinuxContainerSecurityContext.apparmor_profile":     handled("the deprecated form of apparmor, read the same way; the structured field wins"),

	// Container lifecycle, lists, exec and streams.
	"runtime.v1.StartContainerRequest.container_id":           objectID,
	"runtime.v1.StopContainerRequest.container_id":            objectID,
	"runtime.v1.StopContainerRequest.timeout":                 handled("grace period before SIGKILL"),
	"runtime.v1.RemoveContainerRequest.container_id":          objectID,
	"runtime.v1.ContainerStatusRequest.container_id":          objectID,
	"runtime.v1.ContainerStatusRequest.verbose":               handled("adds berth's info map"),
	"runtime.v1.ListContainersRequest.filter":                 listFilter,
	"runtime.v1.ContainerFilter.id":                           listFilter,
	"runtime.v1.ContainerFilter.state":                        listFilter,
	"runtime.v1.ContainerStateValue.state":                    listFilter,
	"runtime.v1.ContainerFilter.pod_sandbox_id":               listFilter,
	"runtime.v1.ContainerFilter.label_selector":               listFilter,
	"runtime.v1.UpdateContainerResourcesRequest.container_id": objectID,
	"runtime.v1.UpdateContainerResourcesRequest.linux":        handled("the runtime's update of a created or running container; an exited one's spec and status only, as containerd (runtime/pod container_update.go)"),
	"runtime.v1.UpdateContainerResourcesRequest.annotations":  handled("informational: berth defines no update option, and NRI plugins get the resources only, as in containerd"),
	"runtime.v1.ReopenContainerLogRequest.container_id":       objectID,
	"runtime.v1.ExecSyncRequest.container_id":                 objectID,
	"runtime.v1.ExecSyncRequest.cmd":                          handled("the process run"),
	"runtime.v1.ExecSyncRequest.timeout":                      handled("DeadlineExceeded past it"),
	"runtime.v1.ExecRequest.container_id":                     objectID,
	"runtime.v1.ExecRequest.cmd":                              handled("the process run; empty is InvalidArgument"),
	"runtime.v1.ExecRequest.tty":                              handled("checked and carried by cri-streaming"),
	"runtime.v1.ExecRequest.stdin":                            handled("checked and carried by cri-streaming"),
	"runtime.v1.ExecRequest.stdout":                           handled("checked and carried by cri-streaming"),
	"runtime.v1.ExecRequest.stderr":                           handled("checked and carried by cri-streaming"),
	"runtime.v1.AttachRequest.container_id":                   objectID,
	"runtime.v1.AttachRequest.stdin":                          handled("checked and carried by cri-streaming"),
	"runtime.v1.AttachRequest.tty":                            handled("checked and carried by cri-streaming"),
	"runtime.v1.AttachRequest.stdout":                         handled("checked and carried by cri-streaming"),
	"runtime.v1.AttachRequest.stderr":                         handled("checked and carried by cri-streaming"),
	"runtime.v1.PortForwardRequest.pod_sandbox_id":            objectID,
	"runtime.v1.PortForwardRequest.port":                      handled("informational: the client names the port of each stream (cri-streaming), as with containerd"),

	// Stats.
	"runtime.v1.ContainerStatsRequest.container_id":    objectID,
	"runtime.v1.ListContainerStatsRequest.filter":      listFilter,
	"runtime.v1.ContainerStatsFilter.id":               listFilter,
	"runtime.v1.ContainerStatsFilter.pod_sandbox_id":   listFilter,
	"runtime.v1.ContainerStatsFilter.label_selector":   listFilter,
	"runtime.v1.PodSandboxStatsRequest.pod_sandbox_id": objectID,
	"runtime.v1.ListPodSandboxStatsRequest.filter":     listFilter,
	"runtime.v1.PodSandboxStatsFilter.id":              listFilter,
	"runtime.v1.PodSandboxStatsFilter.label_selector":  listFilter,

	// In-place pod resize (runtime/pod sandbox_update.go).
	"runtime.v1.UpdatePodSandboxResourcesRequest.pod_sandbox_id": objectID,
	"runtime.v1.UpdatePodSandboxResourcesRequest.overhead":       handled("replaces the pod's overhead: " + podResourcesHow),
	"runtime.v1.UpdatePodSandboxResourcesRequest.resources":      handled("replaces the pod's resources: " + podResourcesHow),

	// The list streams (streams.go, images_stream.go).
	"runtime.v1.StreamPodSandboxesRequest.filter":    handled("the ListPodSandbox filter; the same items, in pages"),
	"runtime.v1.StreamContainersRequest.filter":      handled("the ListContainers filter; the same items, in pages"),
	"runtime.v1.StreamContainerStatsRequest.filter":  handled("the ListContainerStats filter; the same items, in pages"),
	"runtime.v1.StreamPodSandboxStatsRequest.filter": handled("the ListPodSandboxStats filter; the same items, in pages"),
	"runtime.v1.StreamImagesRequest.filter":          handled("the ListImages filter (ListImages answers it); the same items, in pages"),

	// Checkpoint and restore.
	"runtime.v1.CheckpointContainerRequest.container_id": handled("the container checkpointed (runtime/pod container_checkpoint.go)"),
	"runtime.v1.CheckpointContainerRequest.location":     handled("the archive written there whole or not at all (0600); absolute, else InvalidArgument"),
	"runtime.v1.CheckpointContainerRequest.timeout":      handled("seconds bounding the whole checkpoint (DeadlineExceeded); 0: none"),
	"runtime.v1.CheckpointPodRequest.pod_sandbox_id":     handled("the pod checkpointed, ready (runtime/pod sandbox_checkpoint.go); on runc handlers with CRIU, on runsc with runsc checkpoint of the whole sandbox; other handlers: Unimplemented saying why"),
	"runtime.v1.CheckpointPodRequest.output_path":        handled("the existing empty directory written (pod.json, shm.tar, containers/<name>/, gvisor/ on runsc); absolute, else InvalidArgument; not empty: FailedPrecondition; left as it was on error"),
	"runtime.v1.CheckpointPodRequest.container_ids":      handled("the containers dumped as one cut (all frozen, then dumped, then all thawed); empty, duplicated, another pod's: InvalidArgument; not running, two of one name, or several while the pod holds SysV IPC objects (runc), or not every container of the pod (runsc: gVisor saves the whole sandbox): FailedPrecondition"),
	"runtime.v1.CheckpointPodRequest.options":            refused("berth has no checkpoint options: any key is InvalidArgument"),
	"runtime.v1.RestorePodRequest.checkpoint_path":       handled("the pod checkpoint read (runtime/pod sandbox_restore.go), never changed; absolute, else InvalidArgument"),
	"runtime.v1.RestorePodRequest.config":                handled("the new pod's config, with RunPodSandbox's refusals; other namespace options or hostname than the checkpointed pod's: FailedPrecondition; unset: InvalidArgument (never the checkpoint's)"),
	"runtime.v1.RestorePodRequest.runtime_handler":       handled("the handler of the new pod, as RunPodSandbox; one of another runtime family than the checkpoint's (pod.json's runtimeKind and images: criu for runc, gvisor for runsc): FailedPrecondition"),
	"runtime.v1.RestorePodRequest.options":               refused("berth has no restore options: any key is InvalidArgument"),
	"runtime.v1.RestorePodRequest.container_configs":     handled("matched to the checkpointed containers by name (exactly their names, else InvalidArgument); image, command, args, working dir, env and user must be the checkpointed process's (FailedPrecondition); the checkpointed container's mounts must be given again (InvalidArgument); the rest applied; a container without one: InvalidArgument (never the checkpoint's)"),

	// ImageService.
	"runtime.v1.ListImagesRequest.filter":        listFilter,
	"runtime.v1.ImageFilter.image":               handled("list filter: the one image it names"),
	"runtime.v1.ImageStatusRequest.image":        handled("the image, by name or id"),
	"runtime.v1.ImageStatusRequest.verbose":      handled("adds the image's info map"),
	"runtime.v1.PullImageRequest.image":          handled("the image pulled"),
	"runtime.v1.PullImageRequest.auth":           handled("registry credentials (runtime/image resolve.go)"),
	"runtime.v1.AuthConfig.username":             handled("basic credentials"),
	"runtime.v1.AuthConfig.password":             handled("basic credentials"),
	"runtime.v1.AuthConfig.auth":                 handled("basic credentials, base64"),
	"runtime.v1.AuthConfig.server_address":       handled("the registry the credentials are for; sent to no other"),
	"runtime.v1.AuthConfig.identity_token":       handled("token credentials"),
	"runtime.v1.AuthConfig.registry_token":       handled("token credentials"),
	"runtime.v1.PullImageRequest.sandbox_config": handled("informational: a pull is the node's, whichever pod asks"),
	"runtime.v1.RemoveImageRequest.image":        handled("the image removed, with all its names"),
}
