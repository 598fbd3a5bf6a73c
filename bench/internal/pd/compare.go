package pd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/duet-llm/duet/bench/internal/plot"
	"github.com/duet-llm/duet/bench/internal/report"
	"github.com/duet-llm/duet/bench/internal/stats"
)

// Files the comparison writes into OutDir.
const (
	ComparisonFile = "bench-pd.md"
	SummaryFile    = "bench-pd.json"
)

// Write writes the comparison (markdown and JSON) and its charts into
// cfg.OutDir and returns the markdown.
func Write(cfg Config, res *Results) (string, []string, error) {
	md := Markdown(cfg, res)
	var paths []string
	p := filepath.Join(cfg.OutDir, ComparisonFile)
	if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
		return md, nil, err
	}
	paths = append(paths, p)
	b, err := json.MarshalIndent(summaryOnly(res), "", "  ")
	if err != nil {
		return md, paths, err
	}
	p = filepath.Join(cfg.OutDir, SummaryFile)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return md, paths, err
	}
	paths = append(paths, p)
	pp, err := report.WriteCharts(cfg.OutDir, charts(res))
	return md, append(paths, pp...), err
}

// summaryOnly drops the raw samples (each phase's result.json has them).
func summaryOnly(res *Results) *Results {
	out := *res
	strip := func(m map[string]report.Stage) map[string]report.Stage {
		o := map[string]report.Stage{}
		for k, v := range m {
			v.Samples = nil
			o[k] = v
		}
		return o
	}
	out.LowLoad, out.Mixed = strip(res.LowLoad), strip(res.Mixed)
	out.Sweep = map[string][]report.Stage{}
	for k, v := range res.Sweep {
		for _, st := range v {
			st.Samples = nil
			out.Sweep[k] = append(out.Sweep[k], st)
		}
	}
	return &out
}

// Markdown is the side-by-side comparison.
func Markdown(cfg Config, res *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# PD vs colocated: %s\n\n", filepath.Base(res.Model))
	if res.Incomplete != "" {
		fmt.Fprintf(&b, "**Incomplete**: %s. The tables hold what was measured before.\n\n", res.Incomplete)
	}
	fmt.Fprintf(&b, "%d cores per deployment; machine load average %.1f before, %.1f after; %.0f s in all.\n\n", cfg.Cores, res.LoadAvg[0], res.LoadAvg[1], res.Elapsed)
	for _, d := range res.Deployments {
		fmt.Fprintf(&b, "- **%s**: %s\n", d.Name, d.Describe())
	}
	names := []string{"colocated", "pd"}
	if len(res.Mixed) > 0 {
		fmt.Fprintf(&b, "\n## Mixed workload: long prompts arriving while others decode\n\n")
		fmt.Fprintf(&b, "Poisson arrivals at %s req/s, a stage each, %d requests per stage (at most %s of sending), the same seed for each deployment:\n", joinFloats(cfg.MixedRates), cfg.MixedRequests, cfg.MixedDuration)
		for _, c := range cfg.Mixed {
			fmt.Fprintf(&b, "%s (weight %g: prompt %s tokens, output %s tokens)", c.Name, c.Weight, c.Prompt, c.Output)
			if c.Name != cfg.Mixed[len(cfg.Mixed)-1].Name {
				b.WriteString(", ")
			}
		}
		fmt.Fprintf(&b, ". Goodput SLO: %s. Latencies in ms.\n\n", sloText(cfg.SLO))
		if len(cfg.MixedRates) > 1 {
			b.WriteString("By rate:\n\n")
			b.WriteString(SweepTable(res, names))
			fmt.Fprintf(&b, "\nAt %g req/s, side by side:\n\n", cfg.HeadlineRate())
		}
		b.WriteString(MixedTable(res, names))
	}
	if len(res.LowLoad) > 0 {
		b.WriteString("\n## TTFT at low load: one long prompt at a time\n\n")
		fmt.Fprintf(&b, "Equal prefill compute: the colocated node and the PD prefill node have the same threads. Both deployments run side by side and each round sends every prompt to one, then the other (alternating which goes first); %d rounds, output %d tokens. Requests go straight to the nodes over gRPC, so TTFT (ms, from Reserve to the first token) excludes the router's share, measured below; \"beyond compute\" is TTFT minus the prefill compute the node reported for the same request.\n\n", cfg.LowLoadReps, cfg.LowLoadOutput)
		b.WriteString(LowLoadTable(cfg, res))
	}
	if len(res.Overhead) > 0 {
		b.WriteString("\n## Router-added latency\n\n")
		fmt.Fprintf(&b, "%d requests one at a time (prompt %d tokens, output %d), each sent through the router (HTTP, SSE) and straight to the nodes over gRPC (Reserve, Attach, Prefill), alternating which goes first. Added = router − direct, paired per request; ms.\n\n",
			cfg.OverheadRequests, cfg.OverheadPrompt, cfg.OverheadOutput)
		b.WriteString(OverheadTable(res))
	}
	b.WriteString("\n")
	for _, l := range ResultLines(res) {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

func sloText(s stats.SLO) string {
	return fmt.Sprintf("TTFT ≤ %g ms and TPOT ≤ %g ms", s.TTFTms, s.TPOTms)
}

// MixedTable is the side-by-side table of the mixed phase.
func MixedTable(res *Results, names []string) string {
	var present []string
	for _, n := range names {
		if _, ok := res.Mixed[n]; ok {
			present = append(present, n)
		}
	}
	var b strings.Builder
	b.WriteString("| |")
	for _, n := range present {
		b.WriteString(" " + n + " |")
	}
	ratio := len(present) == 2
	if ratio {
		fmt.Fprintf(&b, " %s / %s |", present[1], present[0])
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(present)+btoi(ratio)) + "\n")
	row := func(label string, f func(s *report.Stage) (float64, bool), format string) {
		b.WriteString("| " + label + " |")
		var v []float64
		for _, n := range present {
			st := res.Mixed[n]
			x, ok := f(&st)
			if !ok {
				b.WriteString(" - |")
				v = append(v, 0)
				continue
			}
			fmt.Fprintf(&b, " "+format+" |", x)
			v = append(v, x)
		}
		if ratio {
			if v[0] > 0 {
				fmt.Fprintf(&b, " %.2f |", v[1]/v[0])
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString("\n")
	}
	sum := func(f func(s *stats.Summary) float64) func(*report.Stage) (float64, bool) {
		return func(st *report.Stage) (float64, bool) { return f(&st.Summary), true }
	}
	dist := func(f func(s *stats.Summary) stats.Dist, q func(d stats.Dist) float64) func(*report.Stage) (float64, bool) {
		return func(st *report.Stage) (float64, bool) {
			d := f(&st.Summary)
			return q(d), d.N > 0
		}
	}
	p50 := func(d stats.Dist) float64 { return d.P50 }
	p90 := func(d stats.Dist) float64 { return d.P90 }
	p99 := func(d stats.Dist) float64 { return d.P99 }
	mx := func(d stats.Dist) float64 { return d.Max }
	ttft := func(s *stats.Summary) stats.Dist { return s.TTFT }
	itl := func(s *stats.Summary) stats.Dist { return s.ITL }
	tpot := func(s *stats.Summary) stats.Dist { return s.TPOT }
	e2e := func(s *stats.Summary) stats.Dist { return s.E2E }

	row("requests completed", sum(func(s *stats.Summary) float64 { return float64(s.Completed) }), "%.0f")
	row("requests failed", sum(func(s *stats.Summary) float64 { return float64(s.Failed) }), "%.0f")
	row("TTFT p50", dist(ttft, p50), "%.0f")
	row("TTFT p90", dist(ttft, p90), "%.0f")
	row("TTFT p99", dist(ttft, p99), "%.0f")
	for _, class := range classNames(res) {
		c := class
		row("TTFT p99, "+c, func(st *report.Stage) (float64, bool) {
			s, ok := st.Classes[c]
			return s.TTFT.P99, ok && s.TTFT.N > 0
		}, "%.0f")
	}
	row("ITL p50", dist(itl, p50), "%.1f")
	row("ITL p90", dist(itl, p90), "%.1f")
	row("ITL p99", dist(itl, p99), "%.1f")
	row("ITL max", dist(itl, mx), "%.0f")
	row("TPOT p50", dist(tpot, p50), "%.1f")
	row("TPOT p99", dist(tpot, p99), "%.1f")
	row("E2E p50", dist(e2e, p50), "%.0f")
	row("E2E p99", dist(e2e, p99), "%.0f")
	row("throughput (req/s)", sum(func(s *stats.Summary) float64 { return s.RequestRate }), "%.3f")
	row("output tokens/s", sum(func(s *stats.Summary) float64 { return s.OutputTokenRate }), "%.1f")
	row("goodput (req/s)", sum(func(s *stats.Summary) float64 { return s.Goodput }), "%.3f")
	row("requests within SLO (%)", sum(func(s *stats.Summary) float64 { return 100 * s.GoodFraction }), "%.0f")
	return b.String()
}

// SweepTable has a row per mixed rate and, per deployment, goodput and
// the p99 latencies.
func SweepTable(res *Results, names []string) string {
	var present []string
	for _, n := range names {
		if len(res.Sweep[n]) > 0 {
			present = append(present, n)
		}
	}
	var b strings.Builder
	b.WriteString("| req/s |")
	for _, col := range []string{"goodput", "within SLO", "failed", "TTFT p99", "ITL p99", "TPOT p99"} {
		for _, n := range present {
			fmt.Fprintf(&b, " %s, %s |", col, n)
		}
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", 6*len(present)) + "\n")
	if len(present) == 0 {
		return b.String()
	}
	for i, st := range res.Sweep[present[0]] {
		fmt.Fprintf(&b, "| %g |", st.Rate)
		cell := func(f func(s *stats.Summary) string) {
			for _, n := range present {
				if i < len(res.Sweep[n]) {
					b.WriteString(" " + f(&res.Sweep[n][i].Summary) + " |")
				} else {
					b.WriteString(" - |")
				}
			}
		}
		cell(func(s *stats.Summary) string { return fmt.Sprintf("%.3f", s.Goodput) })
		cell(func(s *stats.Summary) string { return fmt.Sprintf("%.0f%%", 100*s.GoodFraction) })
		cell(func(s *stats.Summary) string { return strconv.Itoa(s.Failed) })
		cell(func(s *stats.Summary) string { return distText(s.TTFT, s.TTFT.P99, "%.0f") })
		cell(func(s *stats.Summary) string { return distText(s.ITL, s.ITL.P99, "%.1f") })
		cell(func(s *stats.Summary) string { return distText(s.TPOT, s.TPOT.P99, "%.1f") })
		b.WriteString("\n")
	}
	return b.String()
}

func distText(d stats.Dist, v float64, format string) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func classNames(res *Results) []string {
	set := map[string]bool{}
	for _, st := range res.Mixed {
		for c := range st.Classes {
			set[c] = true
		}
	}
	var out []string
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// lowLoadPairs are the deployments compared at low load: the colocated
// node and the PD pair with the same prefill threads.
var lowLoadPairs = [2]string{"colocated", "pd-prefill-all"}

// LowLoadTable compares TTFT per prompt length at low load: the best of
// the rounds (the run least disturbed by anything else on the machine),
// the median of the per-round ratios (each round sends the same prompt to
// both deployments back to back), and what each TTFT holds beyond the
// prefill compute the node reported, which no other load on the machine
// can blur: the cost of disaggregation on the critical path.
func LowLoadTable(cfg Config, res *Results) string {
	var b strings.Builder
	a, p := lowLoadPairs[0], lowLoadPairs[1]
	fmt.Fprintf(&b, "| prompt tokens | %s TTFT (best) | %s TTFT (best) | PD overhead, best vs best | PD overhead, median of rounds | beyond compute, %s (median) | beyond compute, %s (median) | PD overhead beyond compute |\n", a, p, a, p)
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range cfg.LowLoadPrompts {
		c := strconv.Itoa(n)
		ca, cp := res.LowLoad[a].Classes[c], res.LowLoad[p].Classes[c]
		ba, bp := res.BeyondCompute[a][c], res.BeyondCompute[p][c]
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", n, best(ca.TTFT), best(cp.TTFT), overheadText(ca.TTFT, cp.TTFT), pairedText(res, c),
			median(ba), median(bp), beyondText(ca.TTFT, ba, bp))
	}
	return b.String()
}

func median(d stats.Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", d.P50)
}

// beyondOverhead is how much longer PD's TTFT is than colocated's outside
// the prefill compute, in % of colocated's best TTFT.
func beyondOverhead(colo stats.Dist, ba, bp stats.Dist) (float64, bool) {
	if colo.N == 0 || ba.N == 0 || bp.N == 0 || colo.Min <= 0 {
		return 0, false
	}
	return 100 * (bp.P50 - ba.P50) / colo.Min, true
}

func beyondText(colo stats.Dist, ba, bp stats.Dist) string {
	v, ok := beyondOverhead(colo, ba, bp)
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%+.2f%%", v)
}

func best(d stats.Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", d.Min)
}

// lowLoadOverhead is PD's TTFT over colocated's, best against best, in %.
func lowLoadOverhead(a, p stats.Dist) (float64, bool) {
	if a.N == 0 || p.N == 0 || a.Min <= 0 {
		return 0, false
	}
	return 100 * (p.Min - a.Min) / a.Min, true
}

func overheadText(a, p stats.Dist) string {
	v, ok := lowLoadOverhead(a, p)
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", v)
}

// pairedText is the median over rounds of PD's TTFT over colocated's for
// the same prompt.
func pairedText(res *Results, class string) string {
	byID := map[int]float64{}
	for _, s := range res.LowLoad[lowLoadPairs[0]].Samples {
		if s.OK() && s.Class == class {
			byID[s.ID] = s.TTFTms
		}
	}
	var r []float64
	for _, s := range res.LowLoad[lowLoadPairs[1]].Samples {
		if a, ok := byID[s.ID]; ok && s.OK() && a > 0 {
			r = append(r, 100*(s.TTFTms-a)/a)
		}
	}
	if len(r) == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%% (%d rounds)", stats.Describe(r).P50, len(r))
}

// OverheadTable is the router-vs-direct table.
func OverheadTable(res *Results) string {
	var b strings.Builder
	b.WriteString("| deployment | TTFT router p50 | TTFT direct p50 | added TTFT p50 | added TTFT p99 | E2E router p50 | E2E direct p50 | added E2E p50 | added E2E p99 | prefill compute p50 |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range sortedKeys(res.Overhead) {
		o := res.Overhead[name]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f | %.2f | %.2f |\n", name,
			o.Router.TTFT.P50, o.Direct.TTFT.P50, o.TTFT.P50, o.TTFT.P99, o.Router.E2E.P50, o.Direct.E2E.P50, o.E2E.P50, o.E2E.P99, o.Compute.P50)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ResultLines are the headline figures as `RESULT <name> <value> <unit>`.
func ResultLines(res *Results) []string {
	var out []string
	add := func(name string, v float64, unit string) {
		out = append(out, fmt.Sprintf("RESULT %s %.4g %s", name, v, unit))
	}
	for _, n := range sortedKeys(res.Mixed) {
		s := res.Mixed[n].Summary
		add("mixed_"+ident(n)+"_ttft_p99", s.TTFT.P99, "ms")
		add("mixed_"+ident(n)+"_itl_p99", s.ITL.P99, "ms")
		add("mixed_"+ident(n)+"_goodput", s.Goodput, "req/s")
	}
	for _, n := range sortedKeys(res.Sweep) {
		if len(res.Sweep[n]) < 2 {
			continue
		}
		for _, st := range res.Sweep[n] {
			r := "_rate" + strings.ReplaceAll(strconv.FormatFloat(st.Rate, 'g', -1, 64), ".", "p")
			add("mixed_"+ident(n)+r+"_ttft_p99", st.Summary.TTFT.P99, "ms")
			add("mixed_"+ident(n)+r+"_itl_p99", st.Summary.ITL.P99, "ms")
			add("mixed_"+ident(n)+r+"_goodput", st.Summary.Goodput, "req/s")
		}
	}
	a, p := res.LowLoad[lowLoadPairs[0]], res.LowLoad[lowLoadPairs[1]]
	for _, c := range sortedKeys(a.Classes) {
		if v, ok := lowLoadOverhead(a.Classes[c].TTFT, p.Classes[c].TTFT); ok {
			add("lowload_pd_ttft_overhead_"+c, v, "%")
		}
		if v, ok := beyondOverhead(a.Classes[c].TTFT, res.BeyondCompute[lowLoadPairs[0]][c], res.BeyondCompute[lowLoadPairs[1]][c]); ok {
			add("lowload_pd_ttft_overhead_beyond_compute_"+c, v, "%")
		}
	}
	for _, n := range sortedKeys(res.Overhead) {
		o := res.Overhead[n]
		add("router_added_ttft_p50_"+ident(n), o.TTFT.P50, "ms")
		add("router_added_ttft_p99_"+ident(n), o.TTFT.P99, "ms")
	}
	return out
}

func ident(s string) string { return strings.ReplaceAll(s, "-", "_") }

// charts are the comparison's charts: the mixed phase's CDFs with a line
// per deployment, and TTFT against prompt length at low load.
func charts(res *Results) []report.Chart {
	var out []report.Chart
	cdf := func(file, title, xlabel string, pick func(s *stats.Sample) []float64) {
		c := plot.Chart{Title: title, XLabel: xlabel, YLabel: "fraction", LogX: true, YMin: 0, YMax: 1.02}
		for _, n := range sortedKeys(res.Mixed) {
			var xs []float64
			for _, s := range res.Mixed[n].Samples {
				if s.OK() {
					xs = append(xs, pick(&s)...)
				}
			}
			x, p := stats.CDF(xs)
			c.Series = append(c.Series, plot.Series{Name: n, X: x, Y: p})
		}
		report.CDFRange(&c)
		out = append(out, report.Chart{File: file, Chart: c})
	}
	cdf("mixed_ttft_cdf.png", "Mixed workload, headline rate: TTFT CDF", "time to first token (ms)", func(s *stats.Sample) []float64 { return []float64{s.TTFTms} })
	cdf("mixed_itl_cdf.png", "Mixed workload, headline rate: inter-token latency CDF", "inter-token latency (ms)", func(s *stats.Sample) []float64 { return s.ITLms })
	cdf("mixed_tpot_cdf.png", "Mixed workload, headline rate: TPOT CDF", "time per output token (ms)", func(s *stats.Sample) []float64 {
		if v, ok := s.TPOT(); ok {
			return []float64{v}
		}
		return nil
	})
	vs := func(file, title, ylabel string, pick func(s *stats.Summary) (float64, bool)) {
		c := plot.Chart{Title: title, XLabel: "offered request rate (req/s)", YLabel: ylabel, Points: true}
		for _, n := range sortedKeys(res.Sweep) {
			se := plot.Series{Name: n}
			for _, st := range res.Sweep[n] {
				if v, ok := pick(&st.Summary); ok {
					se.X, se.Y = append(se.X, st.Rate), append(se.Y, v)
				}
			}
			c.Series = append(c.Series, se)
		}
		out = append(out, report.Chart{File: file, Chart: c})
	}
	if len(res.Sweep) > 0 {
		vs("mixed_goodput_vs_rate.png", "Mixed workload: goodput", "goodput (req/s)", func(s *stats.Summary) (float64, bool) { return s.Goodput, true })
		vs("mixed_itl_p99_vs_rate.png", "Mixed workload: ITL p99", "ITL p99 (ms)", func(s *stats.Summary) (float64, bool) { return s.ITL.P99, s.ITL.N > 0 })
		vs("mixed_ttft_p99_vs_rate.png", "Mixed workload: TTFT p99", "TTFT p99 (ms)", func(s *stats.Summary) (float64, bool) { return s.TTFT.P99, s.TTFT.N > 0 })
	}
	ll := plot.Chart{Title: "TTFT at low load (best of the rounds)", XLabel: "prompt tokens", YLabel: "TTFT (ms)", Points: true}
	for _, n := range sortedKeys(res.LowLoad) {
		st := res.LowLoad[n]
		se := plot.Series{Name: n}
		for _, c := range sortedKeys(st.Classes) {
			x, err := strconv.Atoi(c)
			if err == nil && st.Classes[c].TTFT.N > 0 {
				se.X, se.Y = append(se.X, float64(x)), append(se.Y, st.Classes[c].TTFT.Min)
			}
		}
		sortXY(se.X, se.Y)
		ll.Series = append(ll.Series, se)
	}
	out = append(out, report.Chart{File: "lowload_ttft.png", Chart: ll})
	return out
}

// sortXY sorts the points by x.
func sortXY(x, y []float64) {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case x[a] < x[b]:
			return -1
		case x[a] > x[b]:
			return 1
		}
		return 0
	})
	xs, ys := slices.Clone(x), slices.Clone(y)
	for i, j := range idx {
		x[i], y[i] = xs[j], ys[j]
	}
}
