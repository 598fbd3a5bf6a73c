package embedetcd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRestartKeepsData(t *testing.T) {
	cfg := Config{Dir: filepath.Join(t.TempDir(), "etcd"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", UnsafeNoFsync: true}
	s, err := Start(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(s.ClientAddr()); port == "0" || port == "" {
		t.Fatalf("client addr %q: want the bound port", s.ClientAddr())
	}
	put(t, s, "k", "v1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}

	cfg.ClientAddr = s.ClientAddr()
	s2, err := Start(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.ClientAddr() != s.ClientAddr() {
		t.Errorf("restarted on %s, asked for %s", s2.ClientAddr(), s.ClientAddr())
	}
	cli := client(t, s2)
	resp, err := cli.Get(context.Background(), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart: %v %v", resp, err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), Config{}, nil); !errors.Is(err, ErrNoDir) {
		t.Errorf("no dir: %v", err)
	}
	for _, addr := range []string{"nope", "127.0.0.1:99999", ":2379", "127.0.0.1:x"} {
		_, err := Start(context.Background(), Config{Dir: t.TempDir(), ClientAddr: addr, PeerAddr: "127.0.0.1:0"}, nil)
		if !errors.Is(err, ErrBadAddr) {
			t.Errorf("client addr %q: %v", addr, err)
		}
	}
	// A port in use is an error, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), ClientAddr: ln.Addr().String(), PeerAddr: "127.0.0.1:0"}, nil); err == nil {
		t.Error("started on a port in use")
	}
	// A canceled context stops a start.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Config{Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"}, nil); err == nil {
		t.Error("started with a canceled context")
	}
}

func put(t *testing.T, s *Server, k, v string) {
	t.Helper()
	if _, err := client(t, s).Put(context.Background(), k, v); err != nil {
		t.Fatal(err)
	}
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
