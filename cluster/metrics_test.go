package cluster

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestCollectors(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	r := newRunner(t)
	router := startMember(t, r, cfg, Node{ID: "router-0", Role: RoleRouter}, true)
	node := startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	node.reg.UpdateLoad(Load{FreeBlocks: 17, QueuedPrefillTokens: 5, RunningSeqs: 2})
	waitFor(t, eventually, "load seen", func() bool {
		v, _ := router.dir.Get("decode-0")
		return v.Load.FreeBlocks == 17
	})
	waitFor(t, eventually, "load written", func() bool { return node.reg.writes.Load() >= 2 })
	waitFor(t, eventually, "gossip sees both", func() bool { return router.reg.gossip.members.Load() == 2 })
	waitFor(t, eventually, "directory watching", func() bool { return router.dir.watching.Load() })

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(router.dir.Collector(), node.reg.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"duet_cluster_members", map[string]string{"role": "decode", "status": "routable"}, 1},
		{"duet_cluster_members", map[string]string{"role": "router", "status": "routable"}, 1},
		{"duet_cluster_members", map[string]string{"role": "prefill", "status": "routable"}, 0},
		{"duet_cluster_member_free_blocks", map[string]string{"id": "decode-0"}, 17},
		{"duet_cluster_member_queued_prefill_tokens", map[string]string{"id": "decode-0"}, 5},
		{"duet_cluster_member_running_seqs", map[string]string{"id": "decode-0"}, 2},
		{"duet_cluster_directory_lists_total", nil, 1},
		{"duet_cluster_registered", nil, 1},
		{"duet_cluster_registrations_total", nil, 1},
		{"duet_cluster_gossip_members", nil, 2},
		{"duet_cluster_directory_watching", nil, 1},
	} {
		got, ok := metricValue(mfs, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if w, _ := metricValue(mfs, "duet_cluster_state_writes_total", nil); w < 2 {
		t.Errorf("state writes %v, want the registration and the load", w)
	}
}

func metricValue(mfs []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestEtcdCollector(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cli, err := cfg.NewEtcdClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var current *clientv3.Client
	c := EtcdCollector(func() *clientv3.Client { return current }, 300*time.Millisecond)
	gather := func() []*dto.MetricFamily {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}
	// No client yet (a member before Run): nothing is exported.
	if mfs := gather(); len(mfs) != 0 {
		t.Errorf("without a client: %v", mfs)
	}
	current = cli
	if up, ok := metricValue(gather(), "duet_cluster_etcd_up", nil); !ok || up != 1 {
		t.Errorf("etcd running: up %v (%v)", up, ok)
	}
	srv.Close()
	mfs := gather()
	if up, ok := metricValue(mfs, "duet_cluster_etcd_up", nil); !ok || up != 0 {
		t.Errorf("etcd stopped: up %v (%v)", up, ok)
	}
	if took, _ := metricValue(mfs, "duet_cluster_etcd_probe_seconds", nil); took != 0.3 {
		t.Errorf("a failed probe reports %v s, want the timeout", took)
	}
}
