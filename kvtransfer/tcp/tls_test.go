package tcp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

func selfSigned(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kv"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	client := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

func TestTLS(t *testing.T) {
	scfg, ccfg := selfSigned(t)
	n := newNode(t, 16, 16<<10, tcp.ServerConfig{TLS: scfg}, tcp.Config{Conns: 2, TLS: ccfg, CRC: true}, kvtransfer.ReceiverConfig{})
	r := mrand.New(mrand.NewPCG(8, 8))
	res, err := n.lb.Receiver.Reserve(n.pool.Pick(r, 8), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Descriptor()
	data := make([][]byte, len(d.Slots))
	for i := range data {
		data[i] = kvtransfertest.Random(r, 16<<10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := transfer(ctx, n.lb.Transport, &d, data, []byte("tls"), 3000, r); err != nil {
		t.Fatal(err)
	}
	out, _ := res.Wait(ctx)
	if out.State != kvtransfer.StateCommitted {
		t.Fatalf("outcome %+v", out)
	}
	for i, s := range d.Slots {
		if !bytes.Equal(n.pool.Bytes(s), data[i]) {
			t.Fatalf("slot %d differs", i)
		}
	}
	if err := n.pool.CheckCanaries(d.Slots); err != nil {
		t.Fatal(err)
	}

	// A plain-TCP sender cannot talk to a TLS receiver: a clear error.
	plain := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 1, DialTimeout: time.Second}).Transport
	res2, _ := n.lb.Receiver.Reserve(n.pool.Pick(r, 1), time.Minute)
	d2 := res2.Descriptor()
	if _, err := plain.Open(ctx, &d2); err == nil {
		t.Fatal("plain sender opened a session on a TLS receiver")
	}
	res2.Cancel("")
}
