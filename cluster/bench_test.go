package cluster

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the timings that matter to routing; each reports its figure in ms (and the
// worst one seen), besides ns/op. They start real etcd, gossip and processes: run them with
// -benchtime=Nx, e.g.
//
//	go test -run '^$' -bench . -benchtime 5x ./cluster/

// BenchmarkFailureDetection: SIGKILL of a member process -> unroutable at a router (the router,
// one live node and the victim gossip together).
func BenchmarkFailureDetection(b *testing.B) {
	srv, _ := startEtcd(b)
	cfg := testConfig(b, srv.Endpoints())
	cfg.LeaseTTL = 10 * time.Second
	r := newRunner(b)
	router := startMember(b, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	startMember(b, r, cfg, Node{ID: "decode-1", Role: RoleDecode}, false)
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		id := "victim-" + strconv.Itoa(i)
		b.StopTimer()
		c := startChild(b, childSpec{Endpoints: srv.Endpoints(), Cluster: cfg.ClusterName, ID: id, Role: RoleDecode, LeaseTTL: "10s"})
		waitFor(b, eventually, "victim alive", func() bool {
			v, _ := router.dir.Get(id)
			return v.Routable && v.Gossip == GossipAlive
		})
		b.StartTimer()
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		d := waitFor(b, eventually, "victim unroutable", func() bool { return !routable(router.dir, RoleDecode, id) })
		b.StopTimer()
		c.kill()
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "detect-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// BenchmarkStartToRoutable: exec of a member process -> routable at a router. Includes the
// process start, gossip join, lease grant and the watch event.
func BenchmarkStartToRoutable(b *testing.B) {
	srv, _ := startEtcd(b)
	cfg := testConfig(b, srv.Endpoints())
	r := newRunner(b)
	router := startMember(b, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		id := "new-" + strconv.Itoa(i)
		start := time.Now()
		c := startChild(b, childSpec{Endpoints: srv.Endpoints(), Cluster: cfg.ClusterName, ID: id, Role: RolePrefill, LeaseTTL: "2s"})
		waitFor(b, eventually, "routable", func() bool { return routable(router.dir, RolePrefill, id) })
		d := time.Since(start)
		b.StopTimer()
		c.stop(b)
		b.StartTimer()
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "start-to-routable-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// BenchmarkLoadPropagation: UpdateLoad on a node -> the router's Directory shows it, by gossip
// alone (etcd writes held back) and by etcd alone (gossip off).
func BenchmarkLoadPropagation(b *testing.B) {
	for _, path := range []string{"gossip", "etcd"} {
		b.Run(path, func(b *testing.B) {
			srv, _ := startEtcd(b)
			cfg := testConfig(b, srv.Endpoints())
			if path == "gossip" {
				cfg.LoadWriteInterval = time.Hour
			} else {
				cfg.Gossip.Enabled = false
				cfg.LoadWriteInterval = 0
			}
			r := newRunner(b)
			router := startMember(b, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
			node := startMember(b, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
			waitFor(b, eventually, "ready", func() bool {
				v, ok := router.dir.Get("decode-0")
				return ok && (path == "etcd" || v.Gossip == GossipAlive)
			})
			var worst time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				node.reg.UpdateLoad(Load{FreeBlocks: i + 1})
				waitFor(b, eventually, "load seen", func() bool {
					v, _ := router.dir.Get("decode-0")
					return v.Load.FreeBlocks == i+1
				})
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/update")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}

// BenchmarkRoutable: the router's hot path, Routable(decode) over a 200-member snapshot.
func BenchmarkRoutable(b *testing.B) {
	d := NewDirectory(DefaultConfig(), nil, nil, nil)
	for i := 0; i < 200; i++ {
		role := []Role{RolePrefill, RoleDecode, RoleBoth, RoleRouter}[i%4]
		id := fmt.Sprintf("n-%03d", i)
		d.entries[NodeKey("duet", role, id)] = &entry{
			desc:  Descriptor{Schema: 1, Node: Node{ID: id, Role: role, RDMADevices: []string{"mlx5_0"}}, Draining: i%10 == 0},
			lease: 1, createRev: int64(i + 1), seenAt: time.Now(),
		}
	}
	d.rebuild()
	b.Run("Routable", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n = len(d.Routable(RoleDecode))
		}
		if n == 0 {
			b.Fatal("nothing routable")
		}
	})
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = d.Snapshot()
		}
	})
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := d.Get("n-150"); !ok {
				b.Fatal("missing")
			}
		}
	})
	b.Run("rebuild", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.rebuild()
		}
	})
}
