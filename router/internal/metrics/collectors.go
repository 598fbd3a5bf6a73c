package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duet-llm/duet/router/internal/dispatch"
)

var (
	descAttempts = prometheus.NewDesc("duet_router_dispatch_attempts_total",
		"Node pairs tried by the dispatcher (first tries and retries).", nil, nil)
	descRetries = prometheus.NewDesc("duet_router_dispatch_retries_total",
		"Pairs tried after another pair failed before the first token.", nil, nil)
	descLegFailures = prometheus.NewDesc("duet_router_leg_failures_total",
		"Failed legs by the node blamed (prefill or decode).", []string{"leg"}, nil)
	descNoPair = prometheus.NewDesc("duet_router_dispatch_no_pair_total",
		"Generations that found no node pair to try (no capacity or no compatible nodes).", nil, nil)
	descRunning = prometheus.NewDesc("duet_router_generations_running",
		"Generations holding a slot of the router's HTTP layer now.", nil, nil)
	descQueued = prometheus.NewDesc("duet_router_generations_queued",
		"Requests waiting for a generation slot now.", nil, nil)
)

// DispatchSource is what DispatchCollector reads (dispatch.Dispatcher).
type DispatchSource interface{ Stats() dispatch.Stats }

// LoadSource is what LoadCollector reads (api.API).
type LoadSource interface{ Load() (running, queued int) }

// DispatchCollector exports the dispatcher's counters.
func DispatchCollector(s DispatchSource) prometheus.Collector { return dispatchCollector{s} }

type dispatchCollector struct{ s DispatchSource }

func (c dispatchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAttempts, descRetries, descLegFailures, descNoPair} {
		ch <- d
	}
}

func (c dispatchCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descAttempts, prometheus.CounterValue, float64(st.Attempts))
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(st.Retries))
	ch <- prometheus.MustNewConstMetric(descLegFailures, prometheus.CounterValue, float64(st.PrefillFailures), "prefill")
	ch <- prometheus.MustNewConstMetric(descLegFailures, prometheus.CounterValue, float64(st.DecodeFailures), "decode")
	ch <- prometheus.MustNewConstMetric(descNoPair, prometheus.CounterValue, float64(st.NoPair))
}

// LoadCollector exports the HTTP layer's running and queued generations.
func LoadCollector(s LoadSource) prometheus.Collector { return loadCollector{s} }

type loadCollector struct{ s LoadSource }

func (c loadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRunning
	ch <- descQueued
}

func (c loadCollector) Collect(ch chan<- prometheus.Metric) {
	running, queued := c.s.Load()
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(running))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(queued))
}
