package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/duet-llm/duet/router/internal/api"
	"github.com/duet-llm/duet/router/internal/dispatch"
)

func TestPercentiles(t *testing.T) {
	seq := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(i + 1)
		}
		return out
	}
	tests := []struct {
		name string
		vals []float64
		want Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", []float64{7}, Percentiles{N: 1, P50: 7, P90: 7, P99: 7, Max: 7}},
		{"1..100", seq(100), Percentiles{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}},
		{"1..10", seq(10), Percentiles{N: 10, P50: 5, P90: 9, P99: 10, Max: 10}},
		{"1..1000", seq(1000), Percentiles{N: 1000, P50: 500, P90: 900, P99: 990, Max: 1000}},
		{"two", []float64{1, 2}, Percentiles{N: 2, P50: 1, P90: 2, P99: 2, Max: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentiles(tc.vals); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := newWindow(4)
	for i, v := range []float64{5, 1, 4, 2, 3} { // the 5 falls out of the ring
		w.add(t0.Add(time.Duration(i)*time.Second), v)
	}
	vals, sum := w.since(t0)
	if want := []float64{1, 2, 3, 4}; !equal(vals, want) || sum != 10 {
		t.Errorf("since t0: %v (sum %v), want %v", vals, sum, want)
	}
	vals, _ = w.since(t0.Add(3 * time.Second))
	if want := []float64{2, 3}; !equal(vals, want) {
		t.Errorf("since t0+3s: %v, want %v", vals, want)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRate(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var r rate
	// 3 events a second for 20 seconds.
	for s := range 20 {
		for range 3 {
			r.add(t0.Add(time.Duration(s)*time.Second+100*time.Millisecond), 1)
		}
	}
	now := t0.Add(19*time.Second + 500*time.Millisecond) // in the 20th second, which is left out
	if got := r.perSecond(now, 10*time.Second); got != 3 {
		t.Errorf("rate %v, want 3", got)
	}
	// 100 s later the buckets have rolled over: nothing is left.
	if got := r.perSecond(now.Add(100*time.Second), 10*time.Second); got != 0 {
		t.Errorf("rate after idle %v, want 0", got)
	}
	// A bucket reused after a wrap forgets its old second.
	r.add(now.Add(64*time.Second), 1)
	if got := r.perSecond(now.Add(65*time.Second), 1*time.Second); got != 1 {
		t.Errorf("rate after wrap %v, want 1", got)
	}
}

func TestRecorder(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := NewRecorder(Config{Now: c.now, Window: time.Minute, RateSpan: 10 * time.Second})
	// Ten successful requests of 11 tokens a second apart: TTFT 100 ms, a
	// token every 20 ms after.
	for i := range 10 {
		for range 10 {
			r.InterToken(20 * time.Millisecond)
		}
		r.Done(api.RequestStats{Endpoint: api.EndpointCompletions, Model: "m", Outcome: api.OutcomeOK, Status: 200,
			PromptTokens: 5, CompletionTokens: 11, TTFT: 100 * time.Millisecond, Duration: 300 * time.Millisecond,
			Timings: map[string]time.Duration{
				dispatch.TimingDecodeAdmission: 5 * time.Millisecond, dispatch.TimingPrefillQueue: 10 * time.Millisecond,
				dispatch.TimingPrefillCompute: 60 * time.Millisecond, dispatch.TimingPrefillOverhead: 5 * time.Millisecond,
				dispatch.TimingKVTransfer: 2 * time.Millisecond,
			}})
		if i == 4 {
			r.Done(api.RequestStats{Endpoint: api.EndpointChat, Outcome: api.OutcomeOverloaded, Status: 503, PromptTokens: 9})
		}
		c.add(time.Second)
	}
	tr := r.Traffic()
	if tr.Requests != 11 || tr.ByOutcome[api.OutcomeOK] != 10 || tr.ByOutcome[api.OutcomeOverloaded] != 1 {
		t.Errorf("counts %d %v", tr.Requests, tr.ByOutcome)
	}
	if tr.RequestsPerSecond != 1.1 || tr.OKPerSecond != 1 || tr.TokensPerSecond != 11 {
		t.Errorf("rates %v req/s, %v ok/s, %v tok/s; want 1.1, 1, 11", tr.RequestsPerSecond, tr.OKPerSecond, tr.TokensPerSecond)
	}
	if tr.TTFT.N != 10 || tr.TTFT.P99 != 0.1 || tr.ITL.N != 100 || tr.ITL.P50 != 0.02 || tr.E2E.Max != 0.3 {
		t.Errorf("percentiles TTFT %+v ITL %+v E2E %+v", tr.TTFT, tr.ITL, tr.E2E)
	}
	if got := tr.TPOT.P50; got < 0.0199 || got > 0.0201 {
		t.Errorf("TPOT p50 %v, want 0.02", got)
	}

	// Prometheus sees the same.
	checks := []struct {
		c    prometheus.Collector
		want float64
	}{
		{r.requests.WithLabelValues(api.EndpointCompletions, api.OutcomeOK), 10},
		{r.requests.WithLabelValues(api.EndpointChat, api.OutcomeOverloaded), 1},
		{r.promptTokens, 50}, // the overloaded request never reached a generation
		{r.completionTokens, 110},
	}
	for i, ck := range checks {
		if got := testutil.ToFloat64(ck.c); got != ck.want {
			t.Errorf("check %d: %v, want %v", i, got, ck.want)
		}
	}
	// The router_queue stage is what the others leave of the TTFT.
	mfs, err := gatherOne(r, "duet_router_request_stage_seconds")
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	for _, m := range mfs.GetMetric() {
		sums[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleSum()
	}
	want := map[string]float64{StageRouterQueue: 0.2, StageDecodeAdmission: 0.05, StagePrefillQueue: 0.1, StagePrefillCompute: 0.6,
		StagePrefillOverhead: 0.05, StageKVTransfer: 0.02}
	for st, w := range want {
		if d := sums[st] - w; d > 1e-9 || d < -1e-9 {
			t.Errorf("stage %s: sum %v, want %v", st, sums[st], w)
		}
	}

	// Past the window, the percentiles and rates are empty; the counts stay.
	c.add(2 * time.Minute)
	tr = r.Traffic()
	if tr.TTFT.N != 0 || tr.RequestsPerSecond != 0 || tr.Requests != 11 {
		t.Errorf("after the window: %+v", tr)
	}
}

func TestCollectors(t *testing.T) {
	d := dispatch.New(dispatch.Config{}, nil, nil)
	defer d.Close()
	if n := testutil.CollectAndCount(DispatchCollector(d)); n != 5 {
		t.Errorf("dispatch collector: %d series, want 5", n)
	}
	load := loadFunc(func() (int, int) { return 3, 2 })
	err := testutil.CollectAndCompare(LoadCollector(load), strings.NewReader(`
# HELP duet_router_generations_queued Requests waiting for a generation slot now.
# TYPE duet_router_generations_queued gauge
duet_router_generations_queued 2
# HELP duet_router_generations_running Generations holding a slot of the router's HTTP layer now.
# TYPE duet_router_generations_running gauge
duet_router_generations_running 3
`))
	if err != nil {
		t.Error(err)
	}
	// Every series of a fresh recorder is there from the start.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewRecorder(Config{}))
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if n, err := testutil.GatherAndCount(reg, "duet_router_requests_total"); err != nil || n != 16 {
		t.Errorf("requests_total: %d series (%v), want 16", n, err)
	}
}

type loadFunc func() (int, int)

func (f loadFunc) Load() (int, int) { return f() }

func gatherOne(c prometheus.Collector, name string) (*dto.MetricFamily, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f, nil
		}
	}
	return nil, nil
}
