package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key in PEM.
func (ca testCA) issue(t *testing.T, cn string, uri string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestMTLS: a client certificate from the trusted CA, mapped to a principal,
// authenticates a call; keys still work on the same TLS listener; unmapped or
// foreign certificates do not.
func TestMTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "gatehouse test CA"), newCA(t, "someone else")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	sc, sk := ca.issue(t, "gateway", "", true)
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.TLS = config.TLS{CertFile: write("server.pem", sc), KeyFile: write("server.key", sk), ClientCAFile: write("ca.pem", ca.pem),
			ClientPrincipals: map[string]string{"spiffe://acme/agent": "agent"}}
	}})
	if !strings.HasPrefix(f.srv.DataURL(), "https://") {
		t.Fatalf("data URL %s", f.srv.DataURL())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	clientWith := func(certPEM, keyPEM []byte) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	}
	call := func(c *http.Client, authz string) (int, error) {
		req, _ := http.NewRequest("POST", f.srv.DataURL()+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	good, goodKey := ca.issue(t, "agent", "spiffe://acme/agent", false)
	if s, err := call(clientWith(good, goodKey), ""); err != nil || s != 200 {
		t.Fatalf("mapped client certificate: %d %v", s, err)
	}
	unmapped, unmappedKey := ca.issue(t, "stranger", "spiffe://acme/stranger", false)
	if s, err := call(clientWith(unmapped, unmappedKey), ""); err != nil || s != 401 {
		t.Fatalf("unmapped certificate: %d %v", s, err)
	}
	foreign, foreignKey := other.issue(t, "agent", "spiffe://acme/agent", false)
	// A certificate from another CA is never presented (the server names its
	// CAs in the handshake) or is refused by it: no access either way.
	if s, err := call(clientWith(foreign, foreignKey), ""); err == nil && s != 401 {
		t.Fatalf("a certificate from an untrusted CA: %d", s)
	}
	if s, err := call(clientWith(nil, nil), "Bearer "+f.key); err != nil || s != 200 {
		t.Fatalf("a key over TLS without a client certificate: %d %v", s, err)
	}
	if s, err := call(clientWith(nil, nil), ""); err != nil || s != 401 {
		t.Fatalf("no credential at all: %d %v", s, err)
	}
}
