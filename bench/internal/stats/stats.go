package stats

import (
	"math"
	"slices"
)

// Dist summarizes a set of values. Latencies in this module are in
// milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Describe summarizes xs (which it does not modify). An empty set gives a
// zero Dist with N 0; NaN values are ignored.
func Describe(xs []float64) Dist {
	s := Sorted(xs)
	if len(s) == 0 {
		return Dist{}
	}
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Dist{N: len(s), Mean: sum / float64(len(s)), Min: s[0],
		P50: Quantile(s, 0.50), P90: Quantile(s, 0.90), P99: Quantile(s, 0.99), Max: s[len(s)-1]}
}

// Sorted returns the values of xs in ascending order, without NaNs, in a
// new slice.
func Sorted(xs []float64) []float64 {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	slices.Sort(s)
	return s
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1, clamped) of sorted values,
// interpolating linearly between the nearest ranks (see the package
// documentation). It is NaN for an empty slice.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	h := float64(n-1) * q
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	frac := h - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// Sample is what one request measured. Times are offsets from the start
// of the run, in seconds; latencies are in milliseconds.
type Sample struct {
	ID    int    `json:"id"`
	Class string `json:"class,omitempty"`
	// ScheduledS is when the workload wanted the request sent, StartS
	// when it was sent and EndS when its answer ended (or failed).
	ScheduledS float64 `json:"scheduled_s"`
	StartS     float64 `json:"start_s"`
	EndS       float64 `json:"end_s"`
	// PromptTokens is the server's count (usage) when it sent one, else
	// the count the workload intended; MaxTokens is the output limit sent.
	PromptTokens int `json:"prompt_tokens"`
	MaxTokens    int `json:"max_tokens"`
	// OutputTokens is the server's count (usage) when it sent one, else
	// the number of content chunks.
	OutputTokens int    `json:"output_tokens"`
	Chunks       int    `json:"chunks"`
	FinishReason string `json:"finish_reason,omitempty"`
	// TTFTms is from sending to the first content chunk; E2Ems to the end
	// of the answer; ITLms holds the gaps between consecutive content
	// chunks.
	TTFTms float64   `json:"ttft_ms"`
	E2Ems  float64   `json:"e2e_ms"`
	ITLms  []float64 `json:"itl_ms,omitempty"`
	// Status is the HTTP status (0 when none came); Error is set when the
	// request failed, and a failed request has no latencies.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// OK reports whether the request completed.
func (s *Sample) OK() bool { return s.Error == "" }

// TPOT returns the time per output token after the first, in
// milliseconds; ok is false for a failed request or one with fewer than
// two output tokens.
func (s *Sample) TPOT() (ms float64, ok bool) {
	if !s.OK() || s.OutputTokens < 2 {
		return 0, false
	}
	return (s.E2Ems - s.TTFTms) / float64(s.OutputTokens-1), true
}

// SLO bounds the latency of a good request; a zero bound is not checked.
type SLO struct {
	TTFTms float64 `json:"ttft_ms"`
	TPOTms float64 `json:"tpot_ms"`
}

// Met reports whether s completed within the SLO.
func (o SLO) Met(s *Sample) bool {
	if !s.OK() {
		return false
	}
	if o.TTFTms > 0 && s.TTFTms > o.TTFTms {
		return false
	}
	if tpot, ok := s.TPOT(); ok && o.TPOTms > 0 && tpot > o.TPOTms {
		return false
	}
	return true
}

// Summary is what a set of requests measured together.
type Summary struct {
	Requests  int `json:"requests"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// DurationS is the span from the first request sent to the last one
	// ended; the rates below are per second of it.
	DurationS float64 `json:"duration_s"`
	// RequestRate counts completed requests; OutputTokenRate their output
	// tokens; TotalTokenRate their prompt and output tokens.
	RequestRate     float64 `json:"request_rate"`
	OutputTokenRate float64 `json:"output_token_rate"`
	TotalTokenRate  float64 `json:"total_token_rate"`
	PromptTokens    Dist    `json:"prompt_tokens"`
	OutputTokens    Dist    `json:"output_tokens"`
	// Latency distributions over completed requests, in milliseconds. ITL
	// pools the gaps of every request; TPOT has one value per request
	// with at least two output tokens.
	TTFT Dist `json:"ttft_ms"`
	ITL  Dist `json:"itl_ms"`
	TPOT Dist `json:"tpot_ms"`
	E2E  Dist `json:"e2e_ms"`
	// Good counts the requests that met SLO; Goodput is Good per second
	// and GoodFraction Good over Requests.
	SLO          SLO     `json:"slo"`
	Good         int     `json:"good"`
	Goodput      float64 `json:"goodput"`
	GoodFraction float64 `json:"good_fraction"`
}

// Summarize computes the summary of samples under slo.
func Summarize(samples []Sample, slo SLO) Summary {
	sum := Summary{Requests: len(samples), SLO: slo}
	var ttft, itl, tpot, e2e, pin, pout []float64
	first, last := math.Inf(1), math.Inf(-1)
	var outTok, allTok int
	for i := range samples {
		s := &samples[i]
		first = min(first, s.StartS)
		last = max(last, s.EndS)
		if !s.OK() {
			sum.Failed++
			continue
		}
		sum.Completed++
		outTok += s.OutputTokens
		allTok += s.OutputTokens + s.PromptTokens
		ttft = append(ttft, s.TTFTms)
		e2e = append(e2e, s.E2Ems)
		itl = append(itl, s.ITLms...)
		pin = append(pin, float64(s.PromptTokens))
		pout = append(pout, float64(s.OutputTokens))
		if v, ok := s.TPOT(); ok {
			tpot = append(tpot, v)
		}
		if slo.Met(s) {
			sum.Good++
		}
	}
	if len(samples) > 0 {
		sum.DurationS = max(last-first, 0)
		sum.GoodFraction = float64(sum.Good) / float64(len(samples))
	}
	if sum.DurationS > 0 {
		sum.RequestRate = float64(sum.Completed) / sum.DurationS
		sum.OutputTokenRate = float64(outTok) / sum.DurationS
		sum.TotalTokenRate = float64(allTok) / sum.DurationS
		sum.Goodput = float64(sum.Good) / sum.DurationS
	}
	sum.TTFT, sum.ITL, sum.TPOT, sum.E2E = Describe(ttft), Describe(itl), Describe(tpot), Describe(e2e)
	sum.PromptTokens, sum.OutputTokens = Describe(pin), Describe(pout)
	return sum
}

// CDF returns the points of the empirical distribution function of xs:
// the sorted values and, for each, the fraction of values at or below it.
func CDF(xs []float64) (x, p []float64) {
	x = Sorted(xs)
	p = make([]float64, len(x))
	for i := range x {
		p[i] = float64(i+1) / float64(len(x))
	}
	return x, p
}
