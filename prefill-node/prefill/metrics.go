package prefill

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duet-llm/duet/kvtransfer"
)

// metrics are the prefill server's series (Server.Collector).
type metrics struct {
	requests     *prometheus.CounterVec
	promptTokens prometheus.Counter
	queue        prometheus.Histogram
	compute      prometheus.Histogram
	commitWait   prometheus.Histogram
	step         prometheus.Histogram
	batchTokens  prometheus.Histogram
	batchSeqs    prometheus.Histogram
}

// Outcomes of duet_prefill_requests_total.
const (
	outcomeOK       = "ok"       // prefilled, first token sent and KV committed
	outcomeFailed   = "failed"   // the engine or the KV transfer failed
	outcomeCanceled = "canceled" // the router went away, or the node stopped
	outcomeRejected = "rejected" // refused at admission (invalid, queue full, draining)
)

var secondsBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_prefill_requests_total",
			Help: "Prefill requests by outcome: ok, failed, canceled, rejected."}, []string{"outcome"}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_prefill_prompt_tokens_total",
			Help: "Prompt tokens of the requests queued."}),
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_queue_seconds",
			Help: "Time a request waited in the queue before its first chunk ran.", Buckets: secondsBuckets}),
		compute: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_compute_seconds",
			Help: "Time from a request's first chunk to the end of its last (its forward passes, shared with the requests batched with it).", Buckets: secondsBuckets}),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_kv_commit_wait_seconds",
			Help: "Time from the end of a request's compute to the decode node's acknowledgement of its commit: the KV transfer that compute did not hide.", Buckets: secondsBuckets}),
		step: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_step_seconds",
			Help: "Duration of one prefill engine step (a forward pass over a batch of chunks).", Buckets: secondsBuckets}),
		batchTokens: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_batch_tokens",
			Help: "Prompt tokens per prefill engine step.", Buckets: prometheus.ExponentialBuckets(16, 2, 10)}),
		batchSeqs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_prefill_batch_requests",
			Help: "Requests (chunks) per prefill engine step.", Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64}}),
	}
	for _, o := range []string{outcomeOK, outcomeFailed, outcomeCanceled, outcomeRejected} {
		m.requests.WithLabelValues(o)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.promptTokens, m.queue, m.compute, m.commitWait, m.step, m.batchTokens, m.batchSeqs}
}

// ended counts a request that was queued and has now ended with err.
func (m *metrics) ended(err error) {
	switch {
	case err == nil:
		m.requests.WithLabelValues(outcomeOK).Inc()
	case canceled(err):
		m.requests.WithLabelValues(outcomeCanceled).Inc()
	default:
		m.requests.WithLabelValues(outcomeFailed).Inc()
	}
}

// canceled reports whether err means someone gave the request up (the
// router, or the decode node on the router's behalf) rather than a failure.
func canceled(err error) bool {
	return errors.Is(err, ErrCanceled) || errors.Is(err, context.Canceled) || errors.Is(err, kvtransfer.ErrCanceled)
}

func (m *metrics) stepped(chunks []chunk, took time.Duration) {
	tokens := 0
	for _, c := range chunks {
		tokens += c.n
	}
	m.step.Observe(took.Seconds())
	m.batchTokens.Observe(float64(tokens))
	m.batchSeqs.Observe(float64(len(chunks)))
}

var (
	descQueued = prometheus.NewDesc("duet_prefill_queued_tokens",
		"Prompt tokens queued and not yet prefilled.", nil, nil)
	descInflight = prometheus.NewDesc("duet_prefill_inflight_requests",
		"Requests on the node: queued, prefilling or committing.", nil, nil)
)

// Collector exports the server's series: requests by outcome, queue,
// compute and commit-wait times, batch sizes per engine step, and the
// queue's current size. Register it where the process serves /metrics.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.s.m.collectors() {
		m.Describe(ch)
	}
	ch <- descQueued
	ch <- descInflight
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.m.collectors() {
		m.Collect(ch)
	}
	l := c.s.Load()
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(l.QueuedTokens))
	ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(l.Requests))
}
