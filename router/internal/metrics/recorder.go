package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duet-llm/duet/router/internal/api"
	"github.com/duet-llm/duet/router/internal/dispatch"
)

// Config configures a Recorder. The zero value uses the defaults.
type Config struct {
	// Window is how far back Traffic's percentiles look (default 60 s).
	Window time.Duration
	// RateSpan is how far back Traffic's rates look (default 10 s, at most
	// 60 s).
	RateSpan time.Duration
	// Samples bounds the samples kept per series for the percentiles
	// (default 20000): under heavier traffic they cover the latest Samples
	// events rather than the whole window.
	Samples int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.RateSpan <= 0 {
		c.RateSpan = 10 * time.Second
	}
	c.RateSpan = min(c.RateSpan, rateBuckets*time.Second)
	if c.Samples <= 0 {
		c.Samples = 20000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Stages of duet_router_request_stage_seconds.
const (
	StageRouterQueue     = "router_queue"
	StageDecodeAdmission = "decode_admission"
	StagePrefillQueue    = "prefill_queue"
	StagePrefillCompute  = "prefill_compute"
	StagePrefillOverhead = "prefill_overhead"
	StageKVTransfer      = "kv_transfer"
)

// stageOf maps the dispatcher's timing keys to stages.
var stageOf = map[string]string{
	dispatch.TimingDecodeAdmission: StageDecodeAdmission,
	dispatch.TimingPrefillQueue:    StagePrefillQueue,
	dispatch.TimingPrefillCompute:  StagePrefillCompute,
	dispatch.TimingPrefillOverhead: StagePrefillOverhead,
	dispatch.TimingKVTransfer:      StageKVTransfer,
}

// Histogram buckets, in seconds.
var (
	latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	tokenBuckets   = []float64{.001, .0025, .005, .01, .02, .035, .05, .075, .1, .15, .25, .5, 1, 2.5}
	e2eBuckets     = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}
	stageBuckets   = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Recorder is the API's Observer: it counts and times completion requests
// for Prometheus (it is a prometheus.Collector) and for the dashboard
// (Traffic). Safe for concurrent use.
type Recorder struct {
	cfg Config

	requests         *prometheus.CounterVec
	ttft, itl, tpot  prometheus.Histogram
	e2e              prometheus.Histogram
	stages           *prometheus.HistogramVec
	promptTokens     prometheus.Counter
	completionTokens prometheus.Counter

	wTTFT, wITL, wTPOT, wE2E *window
	finished, ok, tokens     rate

	mu        sync.Mutex
	byOutcome map[string]uint64
}

var _ api.Observer = (*Recorder)(nil)

// NewRecorder returns a recorder; it registers nothing.
func NewRecorder(cfg Config) *Recorder {
	cfg = cfg.withDefaults()
	r := &Recorder{cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duet_router_requests_total",
			Help: "Completion requests by endpoint (completions, chat) and outcome (ok, rejected, rate_limited, overloaded, unavailable, timeout, failed, canceled)."},
			[]string{"endpoint", "outcome"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_router_ttft_seconds",
			Help: "Time from a request's arrival to its first token, for requests that got one.", Buckets: latencyBuckets}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_router_itl_seconds",
			Help: "Inter-token latency: time between consecutive tokens of a request, as the router receives them.", Buckets: tokenBuckets}),
		tpot: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_router_tpot_seconds",
			Help: "Time per output token after the first ((end-to-end - TTFT) / (tokens - 1)), per successful request of 2 or more tokens.", Buckets: tokenBuckets}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duet_router_e2e_seconds",
			Help: "End-to-end latency of successful requests: arrival to the end of the answer.", Buckets: e2eBuckets}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duet_router_request_stage_seconds",
			Help:    "A successful request's time by stage: router_queue, decode_admission, prefill_queue, prefill_compute and prefill_overhead add up to its TTFT; kv_transfer is the KV transfer's tail after the first token.",
			Buckets: stageBuckets}, []string{"stage"}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_router_prompt_tokens_total",
			Help: "Prompt tokens of the completion requests that reached a generation."}),
		completionTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "duet_router_completion_tokens_total",
			Help: "Tokens generated for clients."}),
		wTTFT: newWindow(cfg.Samples), wITL: newWindow(cfg.Samples), wTPOT: newWindow(cfg.Samples), wE2E: newWindow(cfg.Samples),
		byOutcome: map[string]uint64{},
	}
	for _, ep := range []string{api.EndpointCompletions, api.EndpointChat} {
		for _, o := range api.Outcomes {
			r.requests.WithLabelValues(ep, o) // export zeros, so rates work from the start
		}
	}
	for _, st := range []string{StageRouterQueue, StageDecodeAdmission, StagePrefillQueue, StagePrefillCompute, StagePrefillOverhead, StageKVTransfer} {
		r.stages.WithLabelValues(st)
	}
	return r
}

// InterToken implements api.Observer.
func (r *Recorder) InterToken(gap time.Duration) {
	now := r.cfg.Now()
	s := gap.Seconds()
	r.itl.Observe(s)
	r.wITL.add(now, s)
	r.tokens.add(now, 1)
}

// Done implements api.Observer.
func (r *Recorder) Done(st api.RequestStats) {
	now := r.cfg.Now()
	r.requests.WithLabelValues(st.Endpoint, st.Outcome).Inc()
	r.mu.Lock()
	r.byOutcome[st.Outcome]++
	r.mu.Unlock()
	r.finished.add(now, 1)
	if st.CompletionTokens > 0 || st.TTFT > 0 {
		r.promptTokens.Add(float64(st.PromptTokens))
	}
	r.completionTokens.Add(float64(st.CompletionTokens))
	if st.TTFT > 0 {
		r.ttft.Observe(st.TTFT.Seconds())
		r.wTTFT.add(now, st.TTFT.Seconds())
		r.tokens.add(now, 1) // the first token (the others came by InterToken)
	}
	if st.Outcome != api.OutcomeOK {
		return
	}
	r.ok.add(now, 1)
	r.e2e.Observe(st.Duration.Seconds())
	r.wE2E.add(now, st.Duration.Seconds())
	if st.CompletionTokens > 1 && st.TTFT > 0 {
		tpot := (st.Duration - st.TTFT).Seconds() / float64(st.CompletionTokens-1)
		r.tpot.Observe(tpot)
		r.wTPOT.add(now, tpot)
	}
	if st.TTFT <= 0 || st.Timings == nil {
		return
	}
	rest := st.TTFT
	for k, d := range st.Timings {
		stage, ok := stageOf[k]
		if !ok {
			continue
		}
		r.stages.WithLabelValues(stage).Observe(d.Seconds())
		if stage != StageKVTransfer {
			rest -= d
		}
	}
	r.stages.WithLabelValues(StageRouterQueue).Observe(max(0, rest).Seconds())
}

// Describe implements prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	for _, c := range r.collectors() {
		c.Collect(ch)
	}
}

func (r *Recorder) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.requests, r.ttft, r.itl, r.tpot, r.e2e, r.stages, r.promptTokens, r.completionTokens}
}

// Traffic is the recent traffic, for the dashboard.
type Traffic struct {
	// WindowSeconds is how far back the percentiles look; RateSeconds how
	// far back the rates do.
	WindowSeconds float64 `json:"window_seconds"`
	RateSeconds   float64 `json:"rate_seconds"`
	// Requests counts the completion requests finished since start, and
	// ByOutcome splits them by outcome.
	Requests  uint64            `json:"requests"`
	ByOutcome map[string]uint64 `json:"by_outcome"`
	// RequestsPerSecond is finished requests per second, OKPerSecond the
	// successful ones, TokensPerSecond the tokens sent to clients.
	RequestsPerSecond float64 `json:"requests_per_second"`
	OKPerSecond       float64 `json:"ok_per_second"`
	TokensPerSecond   float64 `json:"tokens_per_second"`
	// Latency percentiles over the window, in seconds.
	TTFT Percentiles `json:"ttft"`
	ITL  Percentiles `json:"itl"`
	TPOT Percentiles `json:"tpot"`
	E2E  Percentiles `json:"e2e"`
}

// Traffic returns the recent traffic.
func (r *Recorder) Traffic() Traffic {
	now := r.cfg.Now()
	from := now.Add(-r.cfg.Window)
	t := Traffic{WindowSeconds: r.cfg.Window.Seconds(), RateSeconds: r.cfg.RateSpan.Seconds(), ByOutcome: map[string]uint64{}}
	r.mu.Lock()
	for _, o := range api.Outcomes {
		t.ByOutcome[o] = r.byOutcome[o]
		t.Requests += r.byOutcome[o]
	}
	r.mu.Unlock()
	span := r.cfg.RateSpan
	t.RequestsPerSecond = r.finished.perSecond(now, span)
	t.OKPerSecond = r.ok.perSecond(now, span)
	t.TokensPerSecond = r.tokens.perSecond(now, span)
	for _, s := range []struct {
		w   *window
		out *Percentiles
	}{{r.wTTFT, &t.TTFT}, {r.wITL, &t.ITL}, {r.wTPOT, &t.TPOT}, {r.wE2E, &t.E2E}} {
		vals, _ := s.w.since(from)
		*s.out = percentiles(vals)
	}
	return t
}

// rateBuckets is how many seconds a rate remembers.
const rateBuckets = 64

// rate counts events in one-second buckets, for per-second rates over the
// last seconds however many events there are.
type rate struct {
	mu  sync.Mutex
	sec [rateBuckets]int64
	n   [rateBuckets]float64
}

func (r *rate) add(t time.Time, v float64) {
	s := t.Unix()
	i := s % rateBuckets
	r.mu.Lock()
	if r.sec[i] != s {
		r.sec[i], r.n[i] = s, 0
	}
	r.n[i] += v
	r.mu.Unlock()
}

// perSecond is the events per second over the span before now: the
// current (partial) second is left out, so the figure does not dip at the
// start of each second.
func (r *rate) perSecond(now time.Time, span time.Duration) float64 {
	secs := int64(span / time.Second)
	if secs <= 0 {
		return 0
	}
	cur := now.Unix()
	var sum float64
	r.mu.Lock()
	for s := cur - secs; s < cur; s++ {
		if i := s % rateBuckets; r.sec[i] == s {
			sum += r.n[i]
		}
	}
	r.mu.Unlock()
	return sum / float64(secs)
}
