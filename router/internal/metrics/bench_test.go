package metrics

import (
	"testing"
	"time"

	"github.com/duet-llm/duet/router/internal/api"
)

// BenchmarkInterToken is the cost the router pays per generated token.
func BenchmarkInterToken(b *testing.B) {
	r := NewRecorder(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.InterToken(20 * time.Millisecond)
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/token")
}

// BenchmarkDone is the cost per finished request.
func BenchmarkDone(b *testing.B) {
	r := NewRecorder(Config{})
	st := api.RequestStats{Endpoint: api.EndpointCompletions, Outcome: api.OutcomeOK, CompletionTokens: 100,
		TTFT: 100 * time.Millisecond, Duration: 2 * time.Second, Timings: map[string]time.Duration{"prefill-compute": time.Millisecond}}
	b.ReportAllocs()
	for b.Loop() {
		r.Done(st)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/request")
}

// BenchmarkTraffic is what one dashboard poll costs with every window
// full (20000 samples per series).
func BenchmarkTraffic(b *testing.B) {
	r := NewRecorder(Config{})
	for i := range 20000 {
		r.InterToken(time.Duration(i) * time.Microsecond)
		r.Done(api.RequestStats{Endpoint: api.EndpointCompletions, Outcome: api.OutcomeOK, CompletionTokens: 10,
			TTFT: time.Duration(i) * time.Microsecond, Duration: time.Second})
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Traffic()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/poll")
}
