package main

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chat/internal/sse"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chat test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestHTTP2 serves over TLS and checks that streams and posts share one
// HTTP/2 connection: many streams open at once, where HTTP/1.1 browsers
// would stop at six.
func TestHTTP2(t *testing.T) {
	certFile, keyFile := writeTestCert(t, t.TempDir())
	ts := startServer(t, "-tls-cert", certFile, "-tls-key", keyFile)
	base := strings.Replace(ts.URL, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()

	const streams = 10
	subs := make([]*sse.Reader, streams)
	for i := range subs {
		resp, err := client.Get(base + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("GET /stream over TLS: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		subs[i] = sse.NewReader(resp.Body)
	}
	resp, err := client.Post(base+"/post", "application/json", strings.NewReader(`{"username":"h2","content":"over one connection"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST over HTTP/2: %d", resp.StatusCode)
	}
	for i, s := range subs {
		got := (&subscriber{resp: &http.Response{Body: http.NoBody}, sse: s})
		msgs, _ := got.messages(t, 1)
		if msgs[0].Content != "over one connection" {
			t.Errorf("stream %d got %+v", i, msgs[0])
		}
	}
}
