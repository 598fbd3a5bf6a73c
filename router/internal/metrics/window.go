package metrics

import (
	"slices"
	"sync"
	"time"
)

// window keeps the latest samples of one series, at most cap of them, and
// answers percentiles and counts over those younger than a span.
type window struct {
	mu   sync.Mutex
	at   []int64 // unix nanoseconds, a ring
	val  []float64
	next int
	full bool
}

func newWindow(capacity int) *window {
	return &window{at: make([]int64, capacity), val: make([]float64, capacity)}
}

func (w *window) add(t time.Time, v float64) {
	w.mu.Lock()
	w.at[w.next], w.val[w.next] = t.UnixNano(), v
	w.next++
	if w.next == len(w.at) {
		w.next, w.full = 0, true
	}
	w.mu.Unlock()
}

// since returns the values of the samples at or after t, sorted, and their
// sum.
func (w *window) since(t time.Time) (vals []float64, sum float64) {
	from := t.UnixNano()
	w.mu.Lock()
	n := w.next
	if w.full {
		n = len(w.at)
	}
	vals = make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if w.at[i] >= from {
			vals = append(vals, w.val[i])
			sum += w.val[i]
		}
	}
	w.mu.Unlock()
	slices.Sort(vals)
	return vals, sum
}

// Percentiles are a series' percentiles over the recent window, in
// seconds; zero with N zero.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentiles summarizes sorted values with the nearest-rank method: the
// p-th percentile is the smallest value with at least p% of the values at
// or below it.
func percentiles(sorted []float64) Percentiles {
	n := len(sorted)
	if n == 0 {
		return Percentiles{}
	}
	return Percentiles{N: n, P50: rank(sorted, 50), P90: rank(sorted, 90), P99: rank(sorted, 99), Max: sorted[n-1]}
}

func rank(sorted []float64, p int) float64 {
	n := len(sorted)
	k := (p*n + 99) / 100 // ceil(p/100 * n), 1-based
	return sorted[max(k, 1)-1]
}
