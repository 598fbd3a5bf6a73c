package cluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestMemberEmbeddedEtcd(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.EmbeddedEtcd = true
	cfg.EmbeddedEtcdDir = filepath.Join(t.TempDir(), "etcd")
	cfg.EmbeddedEtcdClientAddr = "127.0.0.1:0"
	cfg.EmbeddedEtcdPeerAddr = "127.0.0.1:0"
	m := NewMember(cfg, Node{ID: "both-0", Role: RoleBoth}, true, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.Registrar().Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(eventually):
		t.Fatal("not registered")
	}
	m.Registrar().UpdateLoad(Load{FreeBlocks: 9})
	waitFor(t, eventually, "sees itself with its load", func() bool {
		v, ok := m.Directory().Get("both-0")
		return ok && v.Routable && v.Load.FreeBlocks == 9 && routable(m.Directory(), RoleDecode, "both-0")
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(eventually):
		t.Fatal("Run did not stop")
	}
}

func TestMemberBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClusterName = ""
	if err := NewMember(cfg, Node{ID: "a", Role: RoleDecode}, false, nil).Run(context.Background()); err == nil {
		t.Fatal("bad config ran")
	}
	cfg = testConfig(t, []string{"http://127.0.0.1:1"})
	if err := NewMember(cfg, Node{ID: "a/b", Role: RoleDecode}, false, nil).Run(context.Background()); err == nil {
		t.Fatal("bad node ran")
	}
}
