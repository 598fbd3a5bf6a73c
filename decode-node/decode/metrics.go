package decode

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duet-llm/duet/engine/kvcache"
)

// metrics are the decode server's series (Server.Collector).
type metrics struct {
	finished  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	tokens    prometheus.Counter
	kvWait    prometheus.Histogram
	admitWait prometheus.Histogram
	step      prometheus.Histogram
	batchSeqs prometheus.Histogram
}

// Outcomes of duet_decode_requests_total.
const (
	outcomeStop     = "stop"     // a stop token ended the completion
	outcomeLength   = "length"   // max_tokens reached
	outcomeCanceled = "canceled" // the router let go (client gone, stop string, another leg failed) or the node stopped
	outcomeError    = "error"    // the KV never came right, or decoding failed
)

var secondsBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newMetrics() *metrics {
	m := &metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_decode_requests_total",
			Help: "Reservations that ended, by outcome: stop, length, canceled, error."}, []string{"outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_decode_reserve_rejected_total",
			Help: "Reserve calls refused, by reason: no_capacity, draining, bad_request, other."}, []string{"reason"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_decode_tokens_total",
			Help: "Tokens sampled by the decode loop (the first token of each request comes from its prefill and is not counted)."}),
		kvWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_decode_kv_wait_seconds",
			Help: "Time from a reservation to its commit: prefill queue, compute and the KV transfer, as the decode node sees them.", Buckets: secondsBuckets}),
		admitWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_decode_admission_wait_seconds",
			Help: "Time from a commit to the sequence's first decode step (waiting for the running step to end and a batch slot).", Buckets: secondsBuckets}),
		step: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_decode_step_seconds",
			Help: "Duration of one decode step: the forward pass over the running batch and the sampling.", Buckets: secondsBuckets}),
		batchSeqs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_decode_batch_seqs",
			Help: "Running sequences per decode step.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}),
	}
	for _, o := range []string{outcomeStop, outcomeLength, outcomeCanceled, outcomeError} {
		m.finished.WithLabelValues(o)
	}
	for _, r := range []string{"no_capacity", "draining", "bad_request", "other"} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.finished, m.rejected, m.tokens, m.kvWait, m.admitWait, m.step, m.batchSeqs}
}

// refused counts a Reserve that failed with err.
func (m *metrics) refused(err error) {
	reason := "other"
	switch {
	case errors.Is(err, ErrNoCapacity), errors.Is(err, kvcache.ErrNoBlocks):
		reason = "no_capacity"
	case errors.Is(err, ErrDraining):
		reason = "draining"
	case errors.Is(err, ErrBadRequest):
		reason = "bad_request"
	}
	m.rejected.WithLabelValues(reason).Inc()
}

func (m *metrics) stepped(seqs int, took time.Duration) {
	m.step.Observe(took.Seconds())
	m.batchSeqs.Observe(float64(seqs))
	m.tokens.Add(float64(seqs))
}

var (
	descBlocks = prometheus.NewDesc("duet_decode_kv_blocks",
		"KV blocks of the pool by state: free; reserved (held by reservations whose KV has not been committed yet); running (held by admitted sequences).",
		[]string{"state"}, nil)
	descCapacity = prometheus.NewDesc("duet_decode_kv_capacity_blocks",
		"KV blocks in the pool.", nil, nil)
	descBlockBytes = prometheus.NewDesc("duet_decode_kv_block_bytes",
		"Bytes of one KV block, all layers, keys and values.", nil, nil)
	descRunning = prometheus.NewDesc("duet_decode_running_seqs",
		"Sequences in the running decode batch.", nil, nil)
	descReservations = prometheus.NewDesc("duet_decode_reservations",
		"Reservations on the node now, committed or not.", nil, nil)
)

// Collector exports the server's series: the KV pool by state, the
// running batch, requests by outcome, refused reservations, batch sizes
// and step times, and the waits before a sequence joins the batch.
// Register it where the process serves /metrics.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.s.m.collectors() {
		m.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{descBlocks, descCapacity, descBlockBytes, descRunning, descReservations} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	for _, m := range s.m.collectors() {
		m.Collect(ch)
	}
	total, free := s.pool.NumBlocks(), s.pool.FreeBlocks()
	reserved := 0
	s.mu.Lock()
	n := len(s.res)
	for _, r := range s.res {
		if !r.admitted.Load() {
			reserved += len(r.blocks)
		}
	}
	s.mu.Unlock()
	// The counts are read at slightly different moments: keep them
	// consistent with the pool's total.
	reserved = min(reserved, total-free)
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(descBlocks, free, "free")
	gauge(descBlocks, reserved, "reserved")
	gauge(descBlocks, total-free-reserved, "running")
	gauge(descCapacity, total)
	gauge(descBlockBytes, s.pool.Layout().BlockBytes())
	gauge(descRunning, int(s.running.Load()))
	gauge(descReservations, n)
}
