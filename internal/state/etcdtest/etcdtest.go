// Package etcdtest runs a real etcd cluster on 127.0.0.1 for tests: three
// members (Debian's etcd-server, installed by scripts/deps.sh) on random
// ports, in temporary directories, with mutual TLS between clients and
// members and between members. The CA and certificates are made with
// crypto/x509 for each cluster.
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	// CAFile is the CA that signed every certificate.
	CAFile string
	// Dir holds the certificates, data directories and logs.
	Dir string

	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	members []*member
	mu      sync.Mutex
}

type member struct {
	name     string
	args     []string
	log      string
	cmd      *exec.Cmd
	done     chan struct{}
	peerPort int
}

// Binary is the etcd server to run, or "" when none is installed.
func Binary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/etcd", "/usr/local/bin/etcd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Require skips the test when etcd is not installed, except in CI, where
// the missing dependency is a failure.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd is not installed: run scripts/deps.sh (Debian package etcd-server)")
		}
		t.Skip("etcd is not installed (Debian package etcd-server; scripts/deps.sh installs it): skipping the fleet state tests")
	}
	return bin
}

// Start runs an n-member cluster and waits until it serves requests. It is
// stopped when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Require(t)
	dir, err := os.MkdirTemp("", "writ-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir}
	t.Cleanup(func() {
		c.Stop()
		os.RemoveAll(dir)
	})
	if err := c.makeCA(); err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	var initial []string
	for i := 0; i < n; i++ {
		initial = append(initial, fmt.Sprintf("m%d=https://127.0.0.1:%d", i, ports[2*i+1]))
	}
	for i := 0; i < n; i++ {
		m, err := c.newMember(bin, i, ports[2*i], ports[2*i+1], strings.Join(initial, ","))
		if err != nil {
			t.Fatal(err)
		}
		c.members = append(c.members, m)
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]))
	}
	for i := range c.members {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("etcd cluster did not become healthy: %v\n%s", err, c.Logs())
	}
	return c
}

func (c *Cluster) newMember(bin string, i, clientPort, peerPort int, initial string) (*member, error) {
	name := fmt.Sprintf("m%d", i)
	certs := filepath.Join(c.Dir, name+"-certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return nil, err
	}
	cert, key, err := c.issue(certs, "server", name, true)
	if err != nil {
		return nil, err
	}
	clientURL := fmt.Sprintf("https://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", peerPort)
	args := []string{bin,
		"--name", name,
		"--data-dir", filepath.Join(c.Dir, name+".etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", initial, "--initial-cluster-state", "new",
		"--initial-cluster-token", filepath.Base(c.Dir),
		"--cert-file", cert, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", c.CAFile,
		"--peer-cert-file", cert, "--peer-key-file", key, "--peer-client-cert-auth", "--peer-trusted-ca-file", c.CAFile,
		"--logger", "zap", "--log-outputs", filepath.Join(c.Dir, name+".log"),
	}
	return &member{name: name, args: args, log: filepath.Join(c.Dir, name+".log"), peerPort: peerPort}, nil
}

// Kill stops member i with SIGKILL.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.members[i]
	c.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

// Restart starts member i again (on its data directory).
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	out, err := os.OpenFile(m.log+".stderr", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}(m.done)
	return nil
}

// Stop kills every member.
func (c *Cluster) Stop() {
	for i := range c.members {
		c.Kill(i)
	}
}

// WaitHealthy waits until a write through every running member succeeds.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	tc, err := c.ClientTLS("health")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.ping(tc); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// ping asks every running member's health endpoint, which answers true
// only with a leader and quorum.
func (c *Cluster) ping(tc *tls.Config) error {
	client := &http2Client{tls: tc}
	for i, m := range c.members {
		if m.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, err := client.healthy(ctx, c.Endpoints[i])
		cancel()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("member %s is not healthy", m.name)
		}
	}
	return nil
}

// Logs returns the tail of every member's log, for failure messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, m := range c.members {
		data, _ := os.ReadFile(m.log)
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", m.name, data)
	}
	return b.String()
}

// ClientCert issues a client certificate for a runner host and returns the
// certificate and key file paths.
func (c *Cluster) ClientCert(host string) (certFile, keyFile string, err error) {
	dir := filepath.Join(c.Dir, "clients")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	return c.issue(dir, "client", host, false)
}

// ClientTLS is a client TLS config with a certificate for host.
func (c *Cluster) ClientTLS(host string) (*tls.Config, error) {
	cf, kf, err := c.ClientCert(host)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// OtherCA writes a CA and a client certificate that this cluster does not
// trust (for a test of mutual TLS) and returns the certificate and key.
func OtherCA(dir string) (certFile, keyFile string, err error) {
	o := &Cluster{Dir: dir}
	if err := o.makeCA(); err != nil {
		return "", "", err
	}
	return o.issue(dir, "client", "intruder", false)
}

func (c *Cluster) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "writ test etcd CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	c.ca, err = x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	c.caKey = key
	c.CAFile = filepath.Join(c.Dir, "ca.pem")
	return os.WriteFile(c.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

var serial struct {
	sync.Mutex
	n int64
}

// issue writes a certificate for name signed by the CA. Member
// certificates serve and authenticate to peers; client certificates only
// authenticate.
func (c *Cluster) issue(dir, kind, name string, server bool) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial.Lock()
	serial.n++
	sn := big.NewInt(time.Now().UnixNano() + serial.n)
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(dir, kind+"-"+name+".pem")
	keyFile = filepath.Join(dir, kind+"-"+name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// freePorts reserves n distinct loopback ports (the kernel picks them; they
// are released just before etcd binds them).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// http2Client asks a member's /health endpoint.
type http2Client struct{ tls *tls.Config }

func (h *http2Client) healthy(ctx context.Context, endpoint string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return false, err
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tls}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var v struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil {
		return false, err
	}
	return v.Health == "true", nil
}
