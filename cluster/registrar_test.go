package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestRegisteredNodeVisible(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	<-router.dir.Ready()

	node := Node{ID: "decode-0", Role: RoleDecode, GRPCAddr: "127.0.0.1:9000", KVAddr: "127.0.0.1:9001",
		ModelID: "stories260K", KVLayout: KVLayout{DType: "f16", BlockTokens: 16, Layers: 5, KVHeads: 4, HeadDim: 8},
		TotalBlocks: 512, Host: "h1", Zone: "z1", RDMADevices: []string{"mlx5_0"}, Version: "test"}
	m := startMember(t, r, cfg, node, false)
	took := waitFor(t, within(time.Second), "new node routable", func() bool { return routable(router.dir, RoleDecode, "decode-0") })
	t.Logf("registered -> routable at the router: %v", took)

	v, ok := router.dir.Get("decode-0")
	if !ok {
		t.Fatal("Get: missing")
	}
	want := m.reg.Node()
	if v.GRPCAddr != want.GRPCAddr || v.KVLayout != want.KVLayout || v.ModelID != want.ModelID ||
		v.TotalBlocks != 512 || len(v.RDMADevices) != 1 || v.GossipAddr == "" || !v.StartedAt.Equal(want.StartedAt) {
		t.Errorf("view %+v does not match registered %+v", v.Node, want)
	}
	if v.Lease == 0 || v.Lease != m.reg.LeaseID() {
		t.Errorf("lease %x, registrar holds %x", v.Lease, m.reg.LeaseID())
	}
	if routable(router.dir, RolePrefill, "decode-0") {
		t.Error("decode node routable for prefill")
	}
	if routable(router.dir, RoleDecode, "router-0") || routable(router.dir, RolePrefill, "router-0") {
		t.Error("router routable for work")
	}
	// The key is the documented one and the value reads back.
	resp, err := m.cli.Get(context.Background(), NodeKey(cfg.ClusterName, RoleDecode, "decode-0"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get key: %v %v", resp, err)
	}
	if d, err := UnmarshalDescriptor(resp.Kvs[0].Value); err != nil || d.ID != "decode-0" {
		t.Errorf("stored descriptor: %+v %v", d, err)
	}
}

func TestBothServesPrefillAndDecode(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	startMember(t, r, cfg, Node{ID: "both-0", Role: RoleBoth}, false)
	startMember(t, r, cfg, Node{ID: "prefill-0", Role: RolePrefill}, false)
	waitFor(t, eventually, "both routable", func() bool {
		return routable(router.dir, RolePrefill, "both-0") && routable(router.dir, RoleDecode, "both-0") &&
			routable(router.dir, RolePrefill, "prefill-0")
	})
	if routable(router.dir, RoleDecode, "prefill-0") {
		t.Error("prefill node routable for decode")
	}
	if v, _ := router.dir.Get("both-0"); v.Gossip != GossipUnknown {
		t.Errorf("gossip off, state %v", v.Gossip)
	}
}

func TestDraining(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	// A second router with no gossip sees draining through etcd alone.
	plain := NewDirectory(cfg, r.client(cfg), nil, nil)
	r.run("plain directory", plain.Run)
	m := startMember(t, r, cfg, Node{ID: "prefill-0", Role: RolePrefill}, false)
	waitFor(t, eventually, "routable", func() bool {
		return routable(router.dir, RolePrefill, "prefill-0") && routable(plain, RolePrefill, "prefill-0")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.reg.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Drain returned: etcd has the flag, so every watcher is about to see it.
	took := waitFor(t, eventually, "draining seen", func() bool {
		v, _ := router.dir.Get("prefill-0")
		pv, _ := plain.Get("prefill-0")
		return v.Draining && pv.Draining && !routable(router.dir, RolePrefill, "prefill-0") && !routable(plain, RolePrefill, "prefill-0")
	})
	t.Logf("drain acknowledged -> unroutable everywhere: %v", took)
	if _, ok := router.dir.Get("prefill-0"); !ok {
		t.Error("draining node left the snapshot; it must stay listed (in-flight work)")
	}

	m.reg.SetDraining(false)
	waitFor(t, eventually, "undrained", func() bool {
		return routable(router.dir, RolePrefill, "prefill-0") && routable(plain, RolePrefill, "prefill-0")
	})
}

func TestLoadPropagates(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	plain := NewDirectory(cfg, r.client(cfg), nil, nil)
	r.run("plain directory", plain.Run)
	m := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode, TotalBlocks: 1000}, false)

	want := Load{FreeBlocks: 123, RunningSeqs: 4, QueuedPrefillTokens: 77}
	m.reg.UpdateLoad(want)
	same := func(d *Directory) bool {
		v, _ := d.Get("decode-0")
		return sameLoad(v.Load, want)
	}
	waitFor(t, eventually, "load seen by gossip+etcd directory", func() bool { return same(router.dir) })
	waitFor(t, eventually, "load seen by etcd-only directory", func() bool { return same(plain) })

	// Sequence numbers only grow, and a repeated load changes nothing.
	v1, _ := plain.Get("decode-0")
	m.reg.UpdateLoad(want)
	if l, _ := m.reg.self.get(); l.Seq != v1.Load.Seq {
		t.Errorf("unchanged load bumped seq %d -> %d", v1.Load.Seq, l.Seq)
	}
}

func TestLoadByGossipAlone(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.LoadWriteInterval = time.Hour // etcd gets the registration and nothing more
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	m := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	waitFor(t, eventually, "gossip alive", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Gossip == GossipAlive
	})
	for i := 1; i <= 20; i++ {
		want := Load{FreeBlocks: i}
		m.reg.UpdateLoad(want)
		took := waitFor(t, within(time.Second), "gossiped load", func() bool {
			v, _ := router.dir.Get("decode-0")
			return v.Load.FreeBlocks == i
		})
		if i%10 == 0 {
			t.Logf("load change -> seen by gossip: %v", took)
		}
	}
	resp, err := m.cli.Get(context.Background(), m.reg.Key())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := UnmarshalDescriptor(resp.Kvs[0].Value); d.Load.FreeBlocks != 0 {
		t.Errorf("etcd got load %d despite the hour-long write interval", d.Load.FreeBlocks)
	}
}

func TestLoadWritesRateLimited(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	cfg.LoadWriteInterval = 200 * time.Millisecond
	r := newRunner(t)
	m := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := m.cli.Watch(ctx, m.reg.Key())
	start := time.Now()
	for i := 1; i <= 200; i++ {
		m.reg.UpdateLoad(Load{FreeBlocks: i})
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// The last value arrives: the rate limit delays, never drops.
	writes := 0
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case resp := <-wch:
			for _, ev := range resp.Events {
				writes++
				d, err := UnmarshalDescriptor(ev.Kv.Value)
				if err != nil {
					t.Fatal(err)
				}
				done = done || d.Load.FreeBlocks == 200
			}
		case <-deadline:
			t.Fatalf("last load never written (%d writes)", writes)
		}
	}
	limit := int(elapsed/cfg.LoadWriteInterval) + 2
	t.Logf("200 updates in %v -> %d etcd writes (limit %d)", elapsed, writes, limit)
	if writes > limit {
		t.Errorf("%d writes in %v, want at most %d at one per %v", writes, elapsed, limit, cfg.LoadWriteInterval)
	}
}

func TestRevokeOnStop(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.LeaseTTL = 30 * time.Second // only a revoke can remove the key in time
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)

	cli := newClient(t, cfg)
	reg := NewRegistrar(cfg, cli, Node{ID: "decode-0", Role: RoleDecode}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	<-reg.Ready()
	waitFor(t, eventually, "routable", func() bool { return routable(router.dir, RoleDecode, "decode-0") })
	if err := reg.Run(ctx); err != ErrRunning {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	resp, err := cli.Get(context.Background(), reg.Key())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key still there after stop: %v %v", resp.Kvs, err)
	}
	waitFor(t, eventually, "gone from the directory", func() bool {
		_, ok := router.dir.Get("decode-0")
		return !ok
	})
}

func TestStopWithEtcdDownIsBounded(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	cfg.RevokeTimeout = 300 * time.Millisecond
	cli := newClient(t, cfg)
	reg := NewRegistrar(cfg, cli, Node{ID: "decode-0", Role: RoleDecode}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	<-reg.Ready()
	_ = srv.Close()
	// Drain cannot be acknowledged with etcd down: it gives up with ctx, it does not hang.
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	if err := reg.Drain(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with etcd down: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run hung on revoke with etcd down")
	}
}

func TestBadValuesIgnored(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	r := newRunner(t)
	cli := r.client(cfg)
	p := NodesPrefix(cfg.ClusterName)
	ctx := context.Background()
	for k, v := range map[string]string{
		p + "decode/junk":             "not json",
		p + "decode/mismatch":         `{"schema":1,"id":"other","role":"decode"}`,
		p + "nope/x":                  `{"schema":1,"id":"x","role":"decode"}`,
		p + "decode":                  `{}`,
		p + "prefill/neg":             `{"schema":1,"id":"neg","role":"prefill","load":{"free_blocks":-1}}`,
		p + "decode/" + "a b":         `{}`,
		p + "prefill/noschema":        `{"id":"noschema","role":"prefill"}`,
		p + "prefill/ok-but-unleased": `{"schema":1,"id":"ok-but-unleased","role":"prefill"}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	dir := NewDirectory(cfg, cli, nil, nil)
	r.run("directory", dir.Run)
	startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	waitFor(t, eventually, "good node", func() bool { return routable(dir, RoleDecode, "decode-0") })
	snap := dir.Snapshot()
	if len(snap) != 2 {
		t.Fatalf("snapshot %v: want decode-0 and the unleased one", snap)
	}
	if v, _ := dir.Get("ok-but-unleased"); v.Routable {
		t.Error("a key without a lease is routable")
	}
	// A bad write over a good key changes nothing.
	if _, err := cli.Put(ctx, p+"decode/decode-0", "garbage", clientv3.WithIgnoreLease()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, p+"prefill/canary", `{"schema":1,"id":"canary","role":"prefill"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventually, "canary", func() bool { _, ok := dir.Get("canary"); return ok })
	if !routable(dir, RoleDecode, "decode-0") {
		t.Error("bad value replaced a good registration")
	}
}

func TestReRegisterAfterLeaseRevoked(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	r := newRunner(t)
	dir := NewDirectory(cfg, r.client(cfg), nil, nil)
	r.run("directory", dir.Run)
	m := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	old := m.reg.LeaseID()
	// An operator (or an etcd bug) revokes the lease: the key goes, and the registrar must
	// notice through its keepalive and register again.
	if _, err := m.cli.Revoke(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventually, "registered again under a new lease", func() bool {
		v, ok := dir.Get("decode-0")
		return ok && v.Routable && v.Lease != old && v.Lease == m.reg.LeaseID()
	})
}
