package nodeconformance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is what the control plane needs to trust itself: a CA, the API
// server's serving certificate signed by it (pods and the kubelet check it
// against the kube-root-ca.crt the controller-manager publishes from the
// CA), the key pair that signs and checks ServiceAccount tokens, and one
// bearer token per client.
type pki struct {
	dir                string
	caCert             string
	serverCert         string
	serverKey          string
	saKey, saPub       string
	tokenFile          string
	adminToken         string
	kubeletToken       string
	controlPlaneTokens map[string]string // component -> token
}

// newPKI writes everything under dir. The node's name is in the kubelet's
// identity (system:node:<name>), as the Node authorizer wants it.
func newPKI(dir, nodeName string) (*pki, error) {
	p := &pki{dir: dir, controlPlaneTokens: map[string]string{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth-node-conformance-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// The names a client inside or outside the cluster may use.
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(serviceAPIIP)},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p.caCert = filepath.Join(dir, "ca.crt")
	p.serverCert = filepath.Join(dir, "apiserver.crt")
	p.serverKey = filepath.Join(dir, "apiserver.key")
	p.saKey = filepath.Join(dir, "sa.key")
	p.saPub = filepath.Join(dir, "sa.pub")
	if err := writePEM(p.caCert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writePEM(p.serverCert, "CERTIFICATE", srvDER); err != nil {
		return nil, err
	}
	if err := writeKey(p.serverKey, srvKey); err != nil {
		return nil, err
	}
	if err := writeKey(p.saKey, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.saPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, p.writeTokens(nodeName)
}

// writeTokens writes the API server's static token file: the test client
// and the control plane are cluster admins (system:masters), the kubelet
// is a node as the Node authorizer and RBAC's bootstrap roles expect.
func (p *pki) writeTokens(nodeName string) error {
	var lines string
	add := func(user, uid, group string) (string, error) {
		tok, err := randomToken()
		if err != nil {
			return "", err
		}
		lines += fmt.Sprintf("%s,%s,%s,%q\n", tok, user, uid, group)
		return tok, nil
	}
	var err error
	if p.adminToken, err = add("admin", "admin", "system:masters"); err != nil {
		return err
	}
	for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
		if p.controlPlaneTokens[c], err = add("system:"+c, c, "system:masters"); err != nil {
			return err
		}
	}
	if p.kubeletToken, err = add("system:node:"+nodeName, "node", "system:nodes"); err != nil {
		return err
	}
	p.tokenFile = filepath.Join(p.dir, "tokens.csv")
	return os.WriteFile(p.tokenFile, []byte(lines), 0o600)
}

// kubeconfig writes a kubeconfig for server with token as its credential.
func (p *pki) kubeconfig(name, server, token string) (string, error) {
	path := filepath.Join(p.dir, name+".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: local
  context: {cluster: local, user: %s}
current-context: local
`, server, p.caCert, name, token, name)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}
