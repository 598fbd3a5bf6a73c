package cluster

import (
	"context"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/duet-llm/duet/cluster/embedetcd"
)

// TestKilledNodeUnroutable kills a member (a separate process) with SIGKILL: gossip must take
// it out of routing well before its lease expires, and the lease must then remove it. A new
// process under the same id must become routable again.
func TestKilledNodeUnroutable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.LeaseTTL = 3 * time.Second // long enough that gossip, not the lease, must be what acts
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	// A second, live node: its probes and indirect pings are part of a realistic detection.
	startMember(t, r, cfg, Node{ID: "decode-1", Role: RoleDecode}, false)

	spec := childSpec{Endpoints: srv.Endpoints(), Cluster: cfg.ClusterName, ID: "decode-0", Role: RoleDecode, LeaseTTL: "3s"}
	c := startChild(t, spec)
	waitFor(t, within(2*time.Second), "child routable and alive by gossip", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Routable && v.Gossip == GossipAlive
	})

	killed := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Done-when: a SIGKILLed node gets no new requests after 3 s.
	took := waitFor(t, within(3*time.Second), "killed node unroutable", func() bool {
		return !routable(router.dir, RoleDecode, "decode-0")
	})
	v, ok := router.dir.Get("decode-0")
	t.Logf("SIGKILL -> unroutable: %v (gossip %v, still in etcd: %v)", took, v.Gossip, ok)
	if !ok {
		t.Log("note: key already gone; gossip was slower than the lease here")
	} else if v.Gossip != GossipDead {
		t.Errorf("unroutable but gossip says %v", v.Gossip)
	}
	if !routable(router.dir, RoleDecode, "decode-1") {
		t.Error("the live node became unroutable too")
	}
	gone := waitFor(t, cfg.LeaseTTL+within(3*time.Second), "key removed by lease expiry", func() bool {
		_, ok := router.dir.Get("decode-0")
		return !ok
	})
	t.Logf("SIGKILL -> key gone (lease %v): %v", cfg.LeaseTTL, time.Since(killed))
	_ = gone
	c.kill()

	// The same id comes back in a new process, at a new gossip port.
	c2 := startChild(t, spec)
	took = waitFor(t, within(2*time.Second), "restarted node routable", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Routable
	})
	t.Logf("restart registered -> routable: %v", took)
	waitFor(t, eventually, "restarted node alive by gossip", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Gossip == GossipAlive
	})
	c2.stop(t)
	waitFor(t, eventually, "cleanly stopped node gone", func() bool {
		_, ok := router.dir.Get("decode-0")
		return !ok
	})
}

// TestQuickRestartSameID restarts a killed member before its lease expires: the new process
// re-registers over the old key, and the old life's gossip death must not keep it unroutable.
func TestQuickRestartSameID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.LeaseTTL = 10 * time.Second
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	spec := childSpec{Endpoints: srv.Endpoints(), Cluster: cfg.ClusterName, ID: "prefill-0", Role: RolePrefill, LeaseTTL: "10s"}
	c := startChild(t, spec)
	waitFor(t, eventually, "alive", func() bool {
		v, _ := router.dir.Get("prefill-0")
		return v.Routable && v.Gossip == GossipAlive
	})
	c.kill()
	waitFor(t, eventually, "dead", func() bool { return !routable(router.dir, RolePrefill, "prefill-0") })
	c2 := startChild(t, spec)
	took := waitFor(t, eventually, "restarted routable", func() bool {
		v, _ := router.dir.Get("prefill-0")
		return v.Routable
	})
	t.Logf("restart before lease expiry -> routable: %v", took)
	waitFor(t, eventually, "restarted alive by gossip", func() bool {
		v, _ := router.dir.Get("prefill-0")
		return v.Routable && v.Gossip == GossipAlive
	})
	c2.stop(t)
}

// TestEtcdRestart stops etcd for longer than the lease TTL and starts it again on the same data
// dir and port: the directory serves its last snapshot meanwhile and catches up after, and the
// registrar registers again under a new lease with the load it got while etcd was down.
func TestEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts etcd; skipped in -short")
	}
	srv, ecfg := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false // etcd alone: gossip would hide what this test looks at
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	node := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	waitFor(t, eventually, "routable", func() bool { return routable(router.dir, RoleDecode, "decode-0") })
	oldLease := node.reg.LeaseID()

	_ = srv.Close()
	before := router.dir.Snapshot()
	node.reg.UpdateLoad(Load{FreeBlocks: 42})
	time.Sleep(cfg.LeaseTTL + time.Second) // past the TTL: the client-side lease is lost
	after := router.dir.Snapshot()
	if len(after) != len(before) || !routable(router.dir, RoleDecode, "decode-0") {
		t.Fatalf("snapshot changed while etcd was down: %v -> %v", before, after)
	}

	srv2, err := embedetcd.Start(context.Background(), ecfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Close() })

	late := startMember(t, r, cfg, Node{ID: "prefill-0", Role: RolePrefill}, false)
	took := waitFor(t, eventually, "directory caught up", func() bool {
		v, ok := router.dir.Get("decode-0")
		return ok && v.Lease != oldLease && v.Load.FreeBlocks == 42 && routable(router.dir, RolePrefill, "prefill-0")
	})
	t.Logf("etcd back -> directory caught up with re-registration and new node: %v", took)
	if node.reg.LeaseID() == oldLease {
		t.Error("registrar kept the old lease")
	}
	_ = late
	// The old lease is gone or expiring; the key must be under the new one.
	resp, err := node.cli.Get(context.Background(), node.reg.Key())
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != node.reg.LeaseID() {
		t.Fatalf("key after restart: %v %v", resp, err)
	}
}

// TestWatchCompaction compacts etcd history between the Directory's list and its watch: the
// watch fails with "compacted", and the Directory must list again and carry on.
func TestWatchCompaction(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	r := newRunner(t)
	cli := r.client(cfg)
	ctx := context.Background()
	compacted := make(chan struct{})
	dir := NewDirectory(cfg, cli, nil, nil)
	first := true
	dir.afterList = func() {
		if !first {
			return
		}
		first = false
		// History moves on and is compacted before the watch starts.
		var rev int64
		for i := 0; i < 5; i++ {
			resp, err := cli.Put(ctx, NodesPrefix(cfg.ClusterName)+"prefill/early", `{"schema":1,"id":"early","role":"prefill"}`)
			if err != nil {
				t.Error(err)
				return
			}
			rev = resp.Header.Revision
		}
		if _, err := cli.Compact(ctx, rev); err != nil {
			t.Error(err)
		}
		close(compacted)
	}
	r.run("directory", dir.Run)
	<-compacted
	waitFor(t, eventually, "key written before compaction seen after re-list", func() bool {
		_, ok := dir.Get("early")
		return ok
	})
	startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	waitFor(t, eventually, "watch works after re-list", func() bool { return routable(dir, RoleDecode, "decode-0") })
}

// TestGossipWithEtcdDown: with etcd gone, the router keeps its snapshot, and gossip alone still
// takes a killed member out of routing and carries the live ones' load.
func TestGossipWithEtcdDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.LeaseTTL = 2 * time.Second
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	live := startMember(t, r, cfg, Node{ID: "decode-1", Role: RoleDecode}, false)
	c := startChild(t, childSpec{Endpoints: srv.Endpoints(), Cluster: cfg.ClusterName, ID: "decode-0", Role: RoleDecode, LeaseTTL: "2s"})
	waitFor(t, eventually, "both alive", func() bool {
		a, _ := router.dir.Get("decode-0")
		b, _ := router.dir.Get("decode-1")
		return a.Routable && a.Gossip == GossipAlive && b.Routable && b.Gossip == GossipAlive
	})

	_ = srv.Close()
	c.kill()
	took := waitFor(t, within(3*time.Second), "killed node unroutable with etcd down", func() bool {
		return !routable(router.dir, RoleDecode, "decode-0")
	})
	t.Logf("etcd down, SIGKILL -> unroutable: %v", took)
	live.reg.UpdateLoad(Load{FreeBlocks: 31})
	waitFor(t, within(time.Second), "load by gossip with etcd down", func() bool {
		v, _ := router.dir.Get("decode-1")
		return v.Load.FreeBlocks == 31
	})
	// Well past every lease TTL: the snapshot still lists both, the dead one unroutable.
	time.Sleep(cfg.LeaseTTL + time.Second)
	if _, ok := router.dir.Get("decode-0"); !ok {
		t.Error("dead node left the snapshot although etcd never said so")
	}
	if !routable(router.dir, RoleDecode, "decode-1") {
		t.Error("live node unroutable while etcd is down")
	}
}

// TestGossipKey: members with the same key gossip; one with another key cannot join them.
func TestGossipKey(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Key = []byte("0123456789abcdef")
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	other := cfg
	other.Gossip.Key = []byte("fedcba9876543210")
	startMember(t, r, other, Node{ID: "decode-1", Role: RoleDecode}, false)
	waitFor(t, eventually, "same key: alive by gossip", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Gossip == GossipAlive
	})
	// Give the other key several rejoin rounds.
	time.Sleep(3 * cfg.Gossip.RejoinInterval)
	if v, ok := router.dir.Get("decode-1"); !ok || v.Gossip != GossipUnknown || !v.Routable {
		t.Errorf("other key: %+v (want listed by etcd, unknown to gossip, routable by lease)", v)
	}
}
