package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/harness"
)

// counterScript counts in a shell variable (memory only a restore can
// bring back), writes each count to the writable layer and the log, and
// first changes the layer: a file added, one of the image's deleted.
const counterScript = `echo kept > /marker; rm /bin/vi; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo "count $i"; sleep 0.1; done`

// TestCheckpointRestore (runc): a container counting in memory is
// checkpointed while it runs (and runs on), removed with its pod, and
// created from the archive in a new pod: it goes on counting from where
// the checkpoint caught it, not from 1, with its writable layer's
// changes and its log. The archive has containerd's and CRI-O's layout.
func TestCheckpointRestore(t *testing.T) {
	b := startBerthd(t, "runc")
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed (test/scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	pod, ctr := podWithContainer(t, b, dir, "counter", counterScript)
	waitCount(t, b, ctr, 20)

	rt := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	archive := filepath.Join(dir, "counter.tar")
	before := readCount(t, b, ctr)
	if _, err := rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: ctr, Location: archive, Timeout: 60}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	after := readCount(t, b, ctr)
	t.Logf("count %d before the checkpoint, %d after", before, after)
	if st := inspectCtr(t, b, ctr).Status.GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the checkpointed container is %s, want it left running", st)
	}
	waitCount(t, b, ctr, after+5) // and counting
	checkArchive(t, archive)
	// BERTH_KEEP_CHECKPOINT=FILE keeps a copy of the archive to look at.
	if keep := os.Getenv("BERTH_KEEP_CHECKPOINT"); keep != "" {
		_ = exec.Command("cp", archive, keep).Run()
	}

	t.Run("refused", func(t *testing.T) {
		_, err := rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: ctr, Location: "relative.tar"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("relative location: %v, want InvalidArgument", err)
		}
		if _, err := os.Stat("relative.tar"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an archive was written at a relative path")
		}
	})

	// Handlers that cannot checkpoint one container say why.
	for _, handler := range []string{"crun", "runsc"} {
		t.Run(handler, func(t *testing.T) {
			podCfg := podConfig(t, dir, "other-"+handler, 0)
			other := strings.TrimSpace(b.Crictl(t, "runp", "--runtime", handler, podCfg))
			defer b.Crictl(t, "rmp", "-f", other)
			oc := strings.TrimSpace(b.Crictl(t, "create", other, ctrConfig(t, dir, "other-"+handler, "sleep 600"), podCfg))
			b.Crictl(t, "start", oc)
			_, err := rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: oc, Location: filepath.Join(dir, handler+".tar")})
			if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), handler) {
				t.Errorf("CheckpointContainer on %s: %v, want Unimplemented saying why", handler, err)
			}
		})
	}

	b.Crictl(t, "rm", "-f", ctr)
	b.Crictl(t, "rmp", "-f", pod)

	// A new pod, and the archive as the image.
	podCfg := podSpec(dir, "restored")
	podCfgPath := writeJSON(t, filepath.Join(dir, "restored-pod.json"), podCfg)
	pod2 := strings.TrimSpace(b.Crictl(t, "runp", podCfgPath))
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "counter"},
		Image:    &runtimeapi.ImageSpec{Image: archive},
		LogPath:  "counter.log",
	}
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod2, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer from the archive: %v", err)
	}
	ctr2 := created.ContainerId
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr2}); err != nil {
		t.Fatalf("StartContainer (restore): %v", err)
	}
	if st := inspectCtr(t, b, ctr2).Status.GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the restored container is %s", st)
	}
	// The first count the restored process writes follows the one the
	// checkpoint froze, which was at least `before`.
	first := readCount(t, b, ctr2)
	t.Logf("the restored container counts on from %d", first)
	if first <= before || first > after+50 {
		t.Errorf("the restored container counts from %d; the checkpoint was taken between %d and %d", first, before, after)
	}
	waitCount(t, b, ctr2, first+5)
	if out := b.Crictl(t, "exec", ctr2, "cat", "/marker"); strings.TrimSpace(out) != "kept" {
		t.Errorf("/marker after restore: %q, want the checkpointed layer's file", out)
	}
	if out, err := b.TryCrictl(t, "exec", ctr2, "ls", "/bin/vi"); err == nil {
		t.Errorf("/bin/vi, deleted before the checkpoint, is back: %s", out)
	}
	// The log goes on from the checkpointed container's.
	if logs := b.Crictl(t, "logs", ctr2); !strings.Contains(logs, "count 1\n") || !strings.Contains(logs, "count "+strconv.Itoa(first+1)+"\n") {
		t.Errorf("the restored log lacks the old lines or the new ones:\n%s", tailLines(logs, 5))
	}
	b.Crictl(t, "stop", "--timeout", "1", ctr2)
	b.Crictl(t, "rmp", "-f", pod2)
}

// waitCount waits until the container's counter reached n.
func waitCount(t *testing.T, b *harness.Berthd, ctr string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); readCount(t, b, ctr) < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the counter of %s did not reach %d; logs:\n%s", ctr, n, tailLines(b.Crictl(t, "logs", ctr), 5))
		}
	}
}

// readCount is the count the container last wrote to /tmp/count.
func readCount(t *testing.T, b *harness.Berthd, ctr string) int {
	t.Helper()
	out, err := b.TryCrictl(t, "exec", ctr, "cat", "/tmp/count")
	if err != nil {
		return 0 // not written yet
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0
	}
	return n
}

// checkArchive: the archive has the layout containerd and CRI-O write
// (and checkpointctl reads it).
func checkArchive(t *testing.T, archive string) {
	t.Helper()
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600 (it holds the container's memory)", fi.Mode().Perm())
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		if hdr.Size < 1<<20 {
			data, _ = io.ReadAll(tr)
		}
		names[hdr.Name] = data
	}
	for _, want := range []string{"config.dump", "spec.dump", "status.dump", "checkpoint/inventory.img", "rootfs-diff.tar", "deleted.files", "dump.log", "stats-dump", "container.log", "cri-config.json"} {
		if _, ok := names[want]; !ok {
			t.Errorf("archive lacks %s", want)
		}
	}
	var config struct {
		ID              string `json:"id"`
		RootfsImageName string `json:"rootfsImageName"`
		OCIRuntime      string `json:"runtime"`
	}
	if err := json.Unmarshal(names["config.dump"], &config); err != nil || config.RootfsImageName == "" || config.OCIRuntime != "runc" {
		t.Errorf("config.dump %s: %+v %v", names["config.dump"], config, err)
	}
	var deleted []string
	if err := json.Unmarshal(names["deleted.files"], &deleted); err != nil || !contains(deleted, "/bin/vi") {
		t.Errorf("deleted.files %s lacks /bin/vi (%v)", names["deleted.files"], err)
	}
	if diff := tarNames(t, names["rootfs-diff.tar"]); !contains(diff, "marker") || !contains(diff, "tmp/count") {
		t.Errorf("rootfs-diff.tar lacks the layer's files: %v", diff)
	}
	// checkpointctl (test/scripts/deps.sh installs it) reads it as it
	// reads CRI-O's and containerd's archives.
	out, err := exec.Command(harness.Tool(t, "checkpointctl"), "show", archive).CombinedOutput()
	if err != nil || !regexp.MustCompile(`counter\s`).Match(out) {
		t.Errorf("checkpointctl show: %v\n%s", err, out)
	}
}

func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(strings.NewReader(string(data)))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return out
		}
		out = append(out, strings.TrimSuffix(hdr.Name, "/"))
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
