package stats

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	return xs
}

func TestQuantile(t *testing.T) {
	// Expected values are numpy.percentile(xs, 100*q) (linear method).
	tests := []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"1..100 p50", seq(100), 0.50, 50.5},
		{"1..100 p90", seq(100), 0.90, 90.1},
		{"1..100 p99", seq(100), 0.99, 99.01},
		{"1..100 min", seq(100), 0, 1},
		{"1..100 max", seq(100), 1, 100},
		{"1..10 p90", seq(10), 0.90, 9.1},
		{"1..10 p99", seq(10), 0.99, 9.91},
		{"single", []float64{7}, 0.99, 7},
		{"two", []float64{10, 20}, 0.5, 15},
		{"ties", []float64{1, 2, 2, 2, 3}, 0.5, 2},
		{"unsorted input sorted first", Sorted([]float64{5, 1, 4, 2, 3}), 0.25, 2},
		{"q clamped above", seq(4), 1.5, 4},
		{"q clamped below", seq(4), -1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.xs, tt.q); !near(got, tt.want) {
				t.Fatalf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Fatal("quantile of nothing should be NaN")
	}
}

func TestDescribe(t *testing.T) {
	xs := []float64{3, math.NaN(), 1, 2, 4}
	d := Describe(xs)
	want := Dist{N: 4, Mean: 2.5, Min: 1, P50: 2.5, P90: 3.7, P99: 3.97, Max: 4}
	if d.N != want.N || !near(d.Mean, want.Mean) || !near(d.Min, want.Min) || !near(d.P50, want.P50) ||
		!near(d.P90, want.P90) || !near(d.P99, want.P99) || !near(d.Max, want.Max) {
		t.Fatalf("Describe = %+v, want %+v", d, want)
	}
	if xs[0] != 3 || xs[2] != 1 {
		t.Fatal("Describe reordered its input")
	}
	if (Describe(nil) != Dist{}) {
		t.Fatal("Describe(nil) is not zero")
	}
}

func TestTPOT(t *testing.T) {
	tests := []struct {
		name string
		s    Sample
		want float64
		ok   bool
	}{
		{"ten tokens", Sample{TTFTms: 100, E2Ems: 1000, OutputTokens: 10}, 100, true},
		{"two tokens", Sample{TTFTms: 50, E2Ems: 80, OutputTokens: 2}, 30, true},
		{"one token", Sample{TTFTms: 50, E2Ems: 50, OutputTokens: 1}, 0, false},
		{"failed", Sample{TTFTms: 50, E2Ems: 500, OutputTokens: 5, Error: "x"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.TPOT()
			if ok != tt.ok || !near(got, tt.want) {
				t.Fatalf("TPOT = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSLOMet(t *testing.T) {
	slo := SLO{TTFTms: 200, TPOTms: 50}
	tests := []struct {
		name string
		slo  SLO
		s    Sample
		want bool
	}{
		{"both within", slo, Sample{TTFTms: 200, E2Ems: 650, OutputTokens: 10}, true}, // TPOT 50: bounds are inclusive
		{"ttft over", slo, Sample{TTFTms: 201, E2Ems: 300, OutputTokens: 10}, false},
		{"tpot over", slo, Sample{TTFTms: 100, E2Ems: 1000, OutputTokens: 10}, false},
		{"one token judged by ttft", slo, Sample{TTFTms: 100, E2Ems: 100, OutputTokens: 1}, true},
		{"failed", slo, Sample{Error: "boom"}, false},
		{"no ttft bound", SLO{TPOTms: 50}, Sample{TTFTms: 1e6, E2Ems: 1e6 + 90, OutputTokens: 10}, true},
		{"no bounds", SLO{}, Sample{TTFTms: 1e6, E2Ems: 1e7, OutputTokens: 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.slo.Met(&tt.s); got != tt.want {
				t.Fatalf("Met = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Four requests over 10 s: three completed, one failed. Request 1
	// meets the SLO, request 2 misses TTFT, request 3 misses TPOT.
	samples := []Sample{
		{ID: 1, StartS: 0, EndS: 1, PromptTokens: 100, OutputTokens: 11, TTFTms: 100, E2Ems: 1000, ITLms: []float64{90, 90}},
		{ID: 2, StartS: 2, EndS: 4, PromptTokens: 200, OutputTokens: 11, TTFTms: 600, E2Ems: 2000, ITLms: []float64{140}},
		{ID: 3, StartS: 5, EndS: 10, PromptTokens: 300, OutputTokens: 21, TTFTms: 200, E2Ems: 5000, ITLms: []float64{240, 240, 240}},
		{ID: 4, StartS: 6, EndS: 7, Error: "status 503", Status: 503},
	}
	s := Summarize(samples, SLO{TTFTms: 500, TPOTms: 100})
	check := func(name string, got, want float64) {
		t.Helper()
		if !near(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if s.Requests != 4 || s.Completed != 3 || s.Failed != 1 || s.Good != 1 {
		t.Fatalf("counts %d/%d/%d good %d", s.Requests, s.Completed, s.Failed, s.Good)
	}
	check("duration", s.DurationS, 10)
	check("request rate", s.RequestRate, 0.3)
	check("output token rate", s.OutputTokenRate, 4.3)
	check("total token rate", s.TotalTokenRate, (43+600)/10.0)
	check("goodput", s.Goodput, 0.1)
	check("good fraction", s.GoodFraction, 0.25)
	check("ttft p50", s.TTFT.P50, 200)
	check("ttft max", s.TTFT.Max, 600)
	check("e2e mean", s.E2E.Mean, 8000.0/3)
	check("itl n", float64(s.ITL.N), 6)
	check("itl p50", s.ITL.P50, 190) // 90 90 140 240 240 240
	check("tpot p50", s.TPOT.P50, 140)
	check("tpot max", s.TPOT.Max, 240)
	check("prompt tokens mean", s.PromptTokens.Mean, 200)
	if z := Summarize(nil, SLO{}); z.Requests != 0 || z.Goodput != 0 || z.DurationS != 0 {
		t.Fatalf("empty summary %+v", z)
	}
}

func TestCDF(t *testing.T) {
	x, p := CDF([]float64{3, 1, 2, 2})
	wantX := []float64{1, 2, 2, 3}
	wantP := []float64{0.25, 0.5, 0.75, 1}
	for i := range wantX {
		if x[i] != wantX[i] || !near(p[i], wantP[i]) {
			t.Fatalf("CDF = %v %v, want %v %v", x, p, wantX, wantP)
		}
	}
}
