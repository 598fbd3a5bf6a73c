package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/duet-llm/duet/bench/internal/plot"
	"github.com/duet-llm/duet/bench/internal/stats"
)

// Result is a whole benchmark run: what was measured against what, and
// every sample.
type Result struct {
	Tool     string    `json:"tool"`
	Started  time.Time `json:"started"`
	Target   Target    `json:"target"`
	Workload Workload  `json:"workload"`
	SLO      stats.SLO `json:"slo"`
	Stages   []Stage   `json:"stages"`
}

// Target is the server measured.
type Target struct {
	URL   string `json:"url"`
	API   string `json:"api"`
	Model string `json:"model"`
}

// Workload describes the requests sent (for the reader; the samples hold
// what was actually sent).
type Workload struct {
	Arrival     string   `json:"arrival"`
	Classes     []string `json:"classes,omitempty"`
	PromptFile  string   `json:"prompt_file,omitempty"`
	PromptIDs   bool     `json:"prompt_ids"`
	Requests    int      `json:"requests"`
	DurationS   float64  `json:"duration_s,omitempty"`
	Seed        uint64   `json:"seed"`
	Temperature float64  `json:"temperature"`
}

// Stage is one load level of a run: one request rate or concurrency.
type Stage struct {
	Label string `json:"label"`
	// Rate is the offered open-loop rate, Concurrency the closed-loop
	// level; one is zero.
	Rate        float64                  `json:"rate,omitempty"`
	Concurrency int                      `json:"concurrency,omitempty"`
	Summary     stats.Summary            `json:"summary"`
	Classes     map[string]stats.Summary `json:"classes,omitempty"`
	Samples     []stats.Sample           `json:"samples"`
}

// NewStage summarizes samples, in total and per class when there are
// several classes.
func NewStage(label string, rate float64, concurrency int, samples []stats.Sample, slo stats.SLO) Stage {
	st := Stage{Label: label, Rate: rate, Concurrency: concurrency, Samples: samples, Summary: stats.Summarize(samples, slo)}
	byClass := map[string][]stats.Sample{}
	for _, s := range samples {
		byClass[s.Class] = append(byClass[s.Class], s)
	}
	if len(byClass) > 1 {
		st.Classes = map[string]stats.Summary{}
		for c, ss := range byClass {
			st.Classes[c] = stats.Summarize(ss, slo)
		}
	}
	return st
}

// File names written by Write.
const (
	JSONFile     = "result.json"
	MarkdownFile = "summary.md"
)

// Write writes the JSON, the markdown summary and the plots into dir
// (created if needed) and returns the paths written.
func Write(dir string, r *Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for name, fn := range map[string]func(io.Writer, *Result) error{JSONFile: WriteJSON, MarkdownFile: WriteMarkdown} {
		p := filepath.Join(dir, name)
		if err := writeFile(p, func(w io.Writer) error { return fn(w, r) }); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	pp, err := WritePlots(dir, r)
	paths = append(paths, pp...)
	slices.Sort(paths)
	return paths, err
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = fn(f)
	return errors.Join(err, f.Close())
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a result written by WriteJSON.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &r, nil
}

// WriteMarkdown writes the human summary: the run, a table with a row
// per stage, and each stage's latency distributions.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s at %s\n\n", r.Tool, r.Target.Model, r.Target.URL)
	fmt.Fprintf(&b, "- started %s, API /v1/%s, streaming\n", r.Started.UTC().Format(time.RFC3339), r.Target.API)
	wl := r.Workload
	fmt.Fprintf(&b, "- workload: %s arrivals, %d requests per stage", wl.Arrival, wl.Requests)
	if wl.DurationS > 0 {
		fmt.Fprintf(&b, " (at most %gs)", wl.DurationS)
	}
	fmt.Fprintf(&b, ", seed %d, temperature %g\n", wl.Seed, wl.Temperature)
	if wl.PromptFile != "" {
		fmt.Fprintf(&b, "- prompts from %s\n", wl.PromptFile)
	}
	for _, c := range wl.Classes {
		fmt.Fprintf(&b, "- class %s\n", c)
	}
	fmt.Fprintf(&b, "- SLO: %s\n\n", sloText(r.SLO))

	b.WriteString("## Summary\n\n")
	b.WriteString("Latencies in ms. Goodput counts requests that met the SLO, per second.\n\n")
	b.WriteString("| stage | ok / sent | req/s | out tok/s | goodput req/s (good) | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | TPOT p50 | TPOT p99 | E2E p50 | E2E p99 |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, st := range r.Stages {
		s := st.Summary
		fmt.Fprintf(&b, "| %s | %d / %d | %.2f | %.1f | %.2f (%.0f%%) | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			st.Label, s.Completed, s.Requests, s.RequestRate, s.OutputTokenRate, s.Goodput, 100*s.GoodFraction,
			num(s.TTFT.P50, s.TTFT.N), num(s.TTFT.P99, s.TTFT.N), num(s.ITL.P50, s.ITL.N), num(s.ITL.P99, s.ITL.N),
			num(s.TPOT.P50, s.TPOT.N), num(s.TPOT.P99, s.TPOT.N), num(s.E2E.P50, s.E2E.N), num(s.E2E.P99, s.E2E.N))
	}
	for _, st := range r.Stages {
		fmt.Fprintf(&b, "\n## %s\n\n", st.Label)
		s := st.Summary
		fmt.Fprintf(&b, "%d sent, %d completed, %d failed in %.1f s: %.2f req/s, %.1f output tok/s, %.1f total tok/s; goodput %.2f req/s (%d good).\n\n",
			s.Requests, s.Completed, s.Failed, s.DurationS, s.RequestRate, s.OutputTokenRate, s.TotalTokenRate, s.Goodput, s.Good)
		DistTable(&b, []string{"TTFT", "ITL", "TPOT", "E2E"}, []stats.Dist{s.TTFT, s.ITL, s.TPOT, s.E2E})
		if len(st.Classes) > 0 {
			b.WriteString("\nBy class:\n\n| class | ok / sent | prompt tokens (mean) | output tokens (mean) | TTFT p50 | TTFT p99 | ITL p99 | TPOT p99 | good |\n")
			b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
			for _, name := range sortedKeys(st.Classes) {
				c := st.Classes[name]
				fmt.Fprintf(&b, "| %s | %d / %d | %.0f | %.0f | %s | %s | %s | %s | %d |\n", name, c.Completed, c.Requests,
					c.PromptTokens.Mean, c.OutputTokens.Mean, num(c.TTFT.P50, c.TTFT.N), num(c.TTFT.P99, c.TTFT.N),
					num(c.ITL.P99, c.ITL.N), num(c.TPOT.P99, c.TPOT.N), c.Good)
			}
		}
		if errs := errorCounts(st.Samples); len(errs) > 0 {
			b.WriteString("\nErrors:\n\n")
			for _, e := range errs {
				fmt.Fprintf(&b, "- %d × %s\n", e.n, e.msg)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DistTable writes a markdown table of distributions, one row each.
func DistTable(b *strings.Builder, names []string, ds []stats.Dist) {
	b.WriteString("| ms | n | mean | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for i, d := range ds {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", names[i], d.N,
			num(d.Mean, d.N), num(d.P50, d.N), num(d.P90, d.N), num(d.P99, d.N), num(d.Max, d.N))
	}
}

func sloText(s stats.SLO) string {
	var parts []string
	if s.TTFTms > 0 {
		parts = append(parts, fmt.Sprintf("TTFT ≤ %g ms", s.TTFTms))
	}
	if s.TPOTms > 0 {
		parts = append(parts, fmt.Sprintf("TPOT ≤ %g ms", s.TPOTms))
	}
	if len(parts) == 0 {
		return "none (every completed request is good)"
	}
	return strings.Join(parts, " and ")
}

// num formats a latency in ms, or "-" when there were no values.
func num(v float64, n int) string {
	switch {
	case n == 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type errCount struct {
	msg string
	n   int
}

// errorCounts groups the failures by message, most frequent first.
func errorCounts(samples []stats.Sample) []errCount {
	n := map[string]int{}
	for _, s := range samples {
		if !s.OK() {
			msg := s.Error
			if len(msg) > 160 {
				msg = msg[:160] + "…"
			}
			n[msg]++
		}
	}
	out := make([]errCount, 0, len(n))
	for _, k := range sortedKeys(n) {
		out = append(out, errCount{k, n[k]})
	}
	slices.SortStableFunc(out, func(a, b errCount) int { return b.n - a.n })
	return out
}

// Plot file names written by WritePlots.
const (
	TTFTCDFFile      = "ttft_cdf.png"
	ITLCDFFile       = "itl_cdf.png"
	TPOTCDFFile      = "tpot_cdf.png"
	E2ECDFFile       = "e2e_cdf.png"
	GoodputRateFile  = "goodput_vs_rate.png"
	TTFTRateFile     = "ttft_vs_rate.png"
	TokenLatRateFile = "itl_tpot_vs_rate.png"
)

// WritePlots draws the latency CDFs (a line per stage) and, against the
// offered load, goodput and throughput and the p99 latencies. A chart
// with no data (e.g. no request completed) is skipped.
func WritePlots(dir string, r *Result) ([]string, error) {
	var charts []Chart
	cdf := func(file, title, xlabel string, pick func(st *Stage) []float64) {
		c := plot.Chart{Title: title, XLabel: xlabel, YLabel: "fraction", LogX: true, YMin: 0, YMax: 1.02}
		for i := range r.Stages {
			x, p := stats.CDF(pick(&r.Stages[i]))
			c.Series = append(c.Series, plot.Series{Name: r.Stages[i].Label, X: x, Y: p})
		}
		CDFRange(&c)
		charts = append(charts, Chart{file, c})
	}
	cdf(TTFTCDFFile, "TTFT CDF", "time to first token (ms)", func(st *Stage) []float64 {
		return field(st, func(s *stats.Sample) []float64 { return []float64{s.TTFTms} })
	})
	cdf(ITLCDFFile, "ITL CDF", "inter-token latency (ms)", func(st *Stage) []float64 { return field(st, func(s *stats.Sample) []float64 { return s.ITLms }) })
	cdf(TPOTCDFFile, "TPOT CDF", "time per output token (ms)", func(st *Stage) []float64 {
		return field(st, func(s *stats.Sample) []float64 {
			if v, ok := s.TPOT(); ok {
				return []float64{v}
			}
			return nil
		})
	})
	cdf(E2ECDFFile, "End-to-end latency CDF", "end-to-end latency (ms)", func(st *Stage) []float64 {
		return field(st, func(s *stats.Sample) []float64 { return []float64{s.E2Ems} })
	})

	// Against load: the offered rate, or the concurrency for closed loops.
	xlabel, load := "offered request rate (req/s)", func(st *Stage) float64 { return st.Rate }
	if len(r.Stages) > 0 && r.Stages[0].Rate == 0 {
		xlabel, load = "concurrency", func(st *Stage) float64 { return float64(st.Concurrency) }
	}
	vs := func(file, title, ylabel string, names []string, pick ...func(s *stats.Summary) (float64, int)) {
		c := plot.Chart{Title: title, XLabel: xlabel, YLabel: ylabel, Points: true}
		for i, name := range names {
			se := plot.Series{Name: name}
			for j := range r.Stages {
				if v, n := pick[i](&r.Stages[j].Summary); n > 0 {
					se.X = append(se.X, load(&r.Stages[j]))
					se.Y = append(se.Y, v)
				}
			}
			c.Series = append(c.Series, se)
		}
		charts = append(charts, Chart{file, c})
	}
	vs(GoodputRateFile, "Goodput and throughput", "requests per second", []string{"goodput (" + sloText(r.SLO) + ")", "completed requests"},
		func(s *stats.Summary) (float64, int) { return s.Goodput, 1 },
		func(s *stats.Summary) (float64, int) { return s.RequestRate, 1 })
	vs(TTFTRateFile, "Time to first token", "TTFT (ms)", []string{"p50", "p90", "p99"},
		func(s *stats.Summary) (float64, int) { return s.TTFT.P50, s.TTFT.N },
		func(s *stats.Summary) (float64, int) { return s.TTFT.P90, s.TTFT.N },
		func(s *stats.Summary) (float64, int) { return s.TTFT.P99, s.TTFT.N })
	vs(TokenLatRateFile, "Inter-token latency and time per output token", "ms", []string{"ITL p50", "ITL p99", "TPOT p50", "TPOT p99"},
		func(s *stats.Summary) (float64, int) { return s.ITL.P50, s.ITL.N },
		func(s *stats.Summary) (float64, int) { return s.ITL.P99, s.ITL.N },
		func(s *stats.Summary) (float64, int) { return s.TPOT.P50, s.TPOT.N },
		func(s *stats.Summary) (float64, int) { return s.TPOT.P99, s.TPOT.N })
	return WriteCharts(dir, charts)
}

// Chart is a chart and the file it is written to.
type Chart struct {
	File  string
	Chart plot.Chart
}

// WriteCharts renders each chart into dir; charts without data are
// skipped.
func WriteCharts(dir string, charts []Chart) ([]string, error) {
	var paths []string
	for _, c := range charts {
		p := filepath.Join(dir, c.File)
		err := writeFile(p, func(w io.Writer) error { return c.Chart.WritePNG(w) })
		if errors.Is(err, plot.ErrNoData) {
			os.Remove(p)
			continue
		}
		if err != nil {
			return paths, fmt.Errorf("plot %s: %w", c.File, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// CDFRange sets a log-x CDF chart's x range from its series: from the
// 1st percentile of all values (over 3, on a round decade) to the largest.
// Without it, a few near-zero values (text chunks that arrived in one
// read) would stretch the axis over decades that hold nothing.
func CDFRange(c *plot.Chart) {
	var all []float64
	for _, s := range c.Series {
		for _, x := range s.X {
			if x > 0 {
				all = append(all, x)
			}
		}
	}
	if len(all) == 0 {
		return
	}
	d := stats.Describe(all)
	lo := stats.Quantile(stats.Sorted(all), 0.01) / 3
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	if hi := d.Max * 1.1; hi > lo {
		c.XMin, c.XMax = lo, hi
	}
}

// field gathers values of the completed samples of a stage.
func field(st *Stage, f func(s *stats.Sample) []float64) []float64 {
	var out []float64
	for i := range st.Samples {
		if st.Samples[i].OK() {
			out = append(out, f(&st.Samples[i])...)
		}
	}
	return out
}
