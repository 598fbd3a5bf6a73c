package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics: each component offers a prometheus.Collector that the binary registers where it
// serves /metrics. They read the component's state at scrape time; nothing is registered
// globally, so several components (or tests) in one process never collide.

var (
	descMembers = prometheus.NewDesc("duet_cluster_members",
		"Members in the directory's snapshot, by role and status (routable, draining, dead, unleased).",
		[]string{"role", "status"}, nil)
	descMemberFree = prometheus.NewDesc("duet_cluster_member_free_blocks",
		"Free KV blocks a member last reported, as this directory sees it.", []string{"id", "role"}, nil)
	descMemberQueued = prometheus.NewDesc("duet_cluster_member_queued_prefill_tokens",
		"Prompt tokens waiting for prefill a member last reported.", []string{"id", "role"}, nil)
	descMemberRunning = prometheus.NewDesc("duet_cluster_member_running_seqs",
		"Sequences in a member's running batch, as it last reported.", []string{"id", "role"}, nil)
	descLists = prometheus.NewDesc("duet_cluster_directory_lists_total",
		"Full lists of the member prefix from etcd: one at start, one after every watch failure.", nil, nil)
	descWatching = prometheus.NewDesc("duet_cluster_directory_watching",
		"1 while the directory watches etcd from a fresh list (its view follows etcd), 0 while it lists or backs off.", nil, nil)

	descRegistered = prometheus.NewDesc("duet_cluster_registered",
		"1 while this member holds a lease with its key written, else 0.", nil, nil)
	descRegistrations = prometheus.NewDesc("duet_cluster_registrations_total",
		"Registrations under a new lease: one at start, one after every lost lease.", nil, nil)
	descWrites = prometheus.NewDesc("duet_cluster_state_writes_total",
		"Descriptor writes to etcd (load and draining changes, registrations).", nil, nil)
	descWriteErrors = prometheus.NewDesc("duet_cluster_state_write_errors_total",
		"Failed descriptor writes and lease grants.", nil, nil)
	descGossipMembers = prometheus.NewDesc("duet_cluster_gossip_members",
		"Live members this process's gossip sees, itself included.", nil, nil)
	descGossipHealth = prometheus.NewDesc("duet_cluster_gossip_health_score",
		"memberlist's awareness score: 0 is healthy; higher means this member misses its own probes' deadlines.", nil, nil)
)

// Collector exports the Directory's snapshot: member counts by role and status, and each
// member's reported load.
func (d *Directory) Collector() prometheus.Collector { return dirCollector{d} }

type dirCollector struct{ d *Directory }

func (c dirCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descMemberFree, descMemberQueued, descMemberRunning, descLists, descWatching} {
		ch <- d
	}
}

func (c dirCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ role, status string }
	counts := map[key]int{}
	for _, role := range Roles {
		for _, st := range []string{"routable", "draining", "dead", "unleased"} {
			counts[key{string(role), st}] = 0
		}
	}
	for _, v := range c.d.snap.Load().all {
		st := "routable"
		switch {
		case v.Lease == 0:
			st = "unleased"
		case v.Gossip == GossipDead:
			st = "dead"
		case v.Draining:
			st = "draining"
		}
		counts[key{string(v.Role), st}]++
		if v.Role == RoleRouter {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descMemberFree, prometheus.GaugeValue, float64(v.Load.FreeBlocks), v.ID, string(v.Role))
		ch <- prometheus.MustNewConstMetric(descMemberQueued, prometheus.GaugeValue, float64(v.Load.QueuedPrefillTokens), v.ID, string(v.Role))
		ch <- prometheus.MustNewConstMetric(descMemberRunning, prometheus.GaugeValue, float64(v.Load.RunningSeqs), v.ID, string(v.Role))
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), k.role, k.status)
	}
	ch <- prometheus.MustNewConstMetric(descLists, prometheus.CounterValue, float64(c.d.lists.Load()))
	watching := 0.0
	if c.d.watching.Load() {
		watching = 1
	}
	ch <- prometheus.MustNewConstMetric(descWatching, prometheus.GaugeValue, watching)
}

// Collector exports the Registrar's state: registered or not, registrations, writes and write
// errors, and its gossip's view of the cluster and of its own health.
func (r *Registrar) Collector() prometheus.Collector { return regCollector{r} }

type regCollector struct{ r *Registrar }

func (c regCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRegistered, descRegistrations, descWrites, descWriteErrors, descGossipMembers, descGossipHealth} {
		ch <- d
	}
}

func (c regCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	registered := 0.0
	if r.leaseID.Load() != 0 {
		registered = 1
	}
	ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, registered)
	ch <- prometheus.MustNewConstMetric(descRegistrations, prometheus.CounterValue, float64(r.registrations.Load()))
	ch <- prometheus.MustNewConstMetric(descWrites, prometheus.CounterValue, float64(r.writes.Load()))
	ch <- prometheus.MustNewConstMetric(descWriteErrors, prometheus.CounterValue, float64(r.writeErrors.Load()))
	if r.gossip != nil {
		health := 0
		if ml := r.gossip.memberlist(); ml != nil {
			health = ml.GetHealthScore()
		}
		ch <- prometheus.MustNewConstMetric(descGossipMembers, prometheus.GaugeValue, float64(r.gossip.members.Load()))
		ch <- prometheus.MustNewConstMetric(descGossipHealth, prometheus.GaugeValue, float64(health))
	}
}
