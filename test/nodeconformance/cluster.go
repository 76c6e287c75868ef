package nodeconformance

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const (
	// serviceCIDR is the Services' range; serviceAPIIP its first address,
	// the kubernetes Service's, named in the API server's certificate.
	serviceCIDR  = "10.96.0.0/16"
	serviceAPIIP = "10.96.0.1"
)

// controlPlane is etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on loopback.
type controlPlane struct {
	pki        *pki
	server     string // https://127.0.0.1:port
	kubeconfig string // the admin's, for e2e.test
	client     *http.Client
}

// startControlPlane starts the control plane from the binaries in bin,
// state under dir, logs in logDir, and waits until the API server is
// ready.
func startControlPlane(t *testing.T, bin, dir, logDir, nodeName string) *controlPlane {
	t.Helper()
	p, err := newPKI(filepath.Join(dir, "pki"), nodeName)
	if err != nil {
		t.Fatal(err)
	}
	// etcd's data on a tmpfs when there is one: Debian's etcd 3.4 has no
	// --unsafe-no-fsync, and a shared disk's fsyncs slow every write.
	etcdDir, err := os.MkdirTemp(shmOr(dir), "nc-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etcdDir) })
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	start(t, logDir, "etcd", "/usr/bin/etcd", "--data-dir", etcdDir, "--name", "nc",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "nc="+peerURL, "--log-level", "warn")

	port := freePort(t)
	cp := &controlPlane{pki: p, server: fmt.Sprintf("https://127.0.0.1:%d", port)}
	if cp.kubeconfig, err = p.kubeconfig("admin", cp.server, p.adminToken); err != nil {
		t.Fatal(err)
	}
	api := start(t, logDir, "kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		"--tls-cert-file", p.serverCert, "--tls-private-key-file", p.serverKey,
		"--token-auth-file", p.tokenFile,
		"--authorization-mode", "Node,RBAC",
		// ServiceAccount tokens, as pods mount them (projected volumes).
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.saPub, "--service-account-signing-key-file", p.saKey,
		"--service-cluster-ip-range", serviceCIDR,
		// Privileged and host-namespace specs need it.
		"--allow-privileged=true",
		// The kubernetes Service's endpoint would be a loopback address,
		// which EndpointSlices refuse; nothing here reaches it (no
		// kube-proxy) anyway.
		"--endpoint-reconciler-type", "none")
	cp.client = cp.httpClient(t)
	api.waitFor(t, "readyz", 2*time.Minute, func() bool { return cp.get("/readyz", nil) == nil })

	kcm, err := p.kubeconfig("kube-controller-manager", cp.server, p.controlPlaneTokens["kube-controller-manager"])
	if err != nil {
		t.Fatal(err)
	}
	start(t, logDir, "kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig", kcm, "--leader-elect=false", "--secure-port=0",
		// Tokens for ServiceAccounts, and the CA every namespace's
		// kube-root-ca.crt carries (pods' projected token volumes wait
		// for it).
		"--service-account-private-key-file", p.saKey, "--root-ca-file", p.caCert,
		"--use-service-account-credentials=false")
	sched, err := p.kubeconfig("kube-scheduler", cp.server, p.controlPlaneTokens["kube-scheduler"])
	if err != nil {
		t.Fatal(err)
	}
	start(t, logDir, "kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig", sched, "--leader-elect=false", "--secure-port=0")
	return cp
}

func shmOr(dir string) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return dir
}

func (cp *controlPlane) httpClient(t *testing.T) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(cp.pki.caCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// get GETs path as the admin and decodes the JSON answer into v (nil
// discards it); any status but 200 is an error.
func (cp *controlPlane) get(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, cp.server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cp.pki.adminToken)
	resp, err := cp.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// nodeReady reports whether node name is Ready and carries no taint
// that keeps pods off it (the not-ready taint goes a moment after Ready).
func (cp *controlPlane) nodeReady(name string) bool {
	var node struct {
		Spec struct {
			Taints []struct{ Key, Effect string }
		}
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if cp.get("/api/v1/nodes/"+name, &node) != nil {
		return false
	}
	for _, taint := range node.Spec.Taints {
		if taint.Effect == "NoSchedule" || taint.Effect == "NoExecute" {
			return false
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}
