// Package checkpoint writes and reads container checkpoint archives in the
// layout containerd and CRI-O share, which checkpointctl (and the
// kubelet's forensic checkpointing tools) read: a tar of
//
//	config.dump      who the container was (ContainerConfig, JSON)
//	spec.dump        its OCI spec (config.json) as it ran
//	status.dump      its CRI ContainerStatus (JSON), as containerd writes it
//	checkpoint/      the CRIU images of its processes
//	rootfs-diff.tar  what its writable layer added or changed (a plain tar)
//	deleted.files    what it deleted from its image (JSON list of paths)
//	dump.log         CRIU's log of the dump
//	stats-dump       CRIU's statistics of the dump
//	container.log    its CRI log so far
//	cri-config.json  berth's own: the CRI ContainerConfig it was created
//	                 from (protobuf JSON), which a restore runs again
//
// The names are checkpointctl's (github.com/checkpoint-restore/checkpointctl
// lib); berth declares them here rather than linking that module for a
// list of constants.
package checkpoint

import "time"

// Names inside an archive.
const (
	ConfigDump   = "config.dump"
	SpecDump     = "spec.dump"
	StatusDump   = "status.dump"
	ImagesDir    = "checkpoint"
	RootfsDiff   = "rootfs-diff.tar"
	DeletedFiles = "deleted.files"
	DumpLog      = "dump.log"
	RestoreLog   = "restore.log"
	StatsDump    = "stats-dump"
	ContainerLog = "container.log"
	CRIConfig    = "cri-config.json"
)

// ContainerConfig is config.dump: the fields (and JSON names) of
// checkpointctl's metadata.ContainerConfig, which Podman, CRI-O and
// containerd write.
type ContainerConfig struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImage     string    `json:"rootfsImage,omitempty"`
	RootfsImageRef  string    `json:"rootfsImageRef,omitempty"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
	RestoredAt      time.Time `json:"restoredTime"`
	Restored        bool      `json:"restored"`
}

// Annotations berth adds to spec.dump (never to a running container's
// spec) so that checkpointctl, which falls back to containerd's keys for
// an engine it does not know, names the container, its pod and namespace.
const (
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	// AnnotationManager says who wrote the archive ("berth").
	AnnotationManager = "io.container.manager"
)

// OCIImageAnnotation marks an OCI image that holds a checkpoint archive's
// files (checkpointctl and Podman build such images): its value is the
// checkpointed container's name. CRIOImageAnnotation is CRI-O's own mark,
// which Kubernetes' checkpoint documentation has buildah set.
const (
	OCIImageAnnotation  = "org.criu.checkpoint.container.name"
	CRIOImageAnnotation = "io.kubernetes.cri-o.annotations.checkpoint.name"
)

// ImageContainerName is the checkpointed container's name when an image's
// manifest annotations mark it as a checkpoint image.
func ImageContainerName(annotations map[string]string) (string, bool) {
	for _, k := range []string{OCIImageAnnotation, CRIOImageAnnotation} {
		if v := annotations[k]; v != "" {
			return v, true
		}
	}
	return "", false
}
