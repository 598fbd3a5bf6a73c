package cluster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	descEtcdUp = prometheus.NewDesc("duet_cluster_etcd_up",
		"1 when a linearizable read from etcd answered within the probe timeout at scrape time, else 0.", nil, nil)
	descEtcdProbe = prometheus.NewDesc("duet_cluster_etcd_probe_seconds",
		"How long that read took (the timeout when it failed).", nil, nil)
)

// EtcdHealthKey is the key the health probe reads (it need not exist).
const EtcdHealthKey = "health"

// EtcdCollector probes etcd at every scrape with a linearizable read of
// EtcdHealthKey, as etcd's own /health does: it answers only while the
// cluster has a leader and a quorum. timeout bounds the probe (default
// 1 s), so a scrape never hangs on a dead etcd. cli may be set later
// (a member makes its client when it runs): until then nothing is
// exported.
func EtcdCollector(cli func() *clientv3.Client, timeout time.Duration) prometheus.Collector {
	if timeout <= 0 {
		timeout = time.Second
	}
	return etcdCollector{cli, timeout}
}

type etcdCollector struct {
	cli     func() *clientv3.Client
	timeout time.Duration
}

func (c etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEtcdUp
	ch <- descEtcdProbe
}

func (c etcdCollector) Collect(ch chan<- prometheus.Metric) {
	cli := c.cli()
	if cli == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	_, err := cli.Get(ctx, EtcdHealthKey)
	took := time.Since(start)
	up := 1.0
	if err != nil {
		up, took = 0, c.timeout
	}
	ch <- prometheus.MustNewConstMetric(descEtcdUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descEtcdProbe, prometheus.GaugeValue, took.Seconds())
}
