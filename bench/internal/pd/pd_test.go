package pd

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/bench/internal/load"
	"github.com/duet-llm/duet/bench/internal/report"
	"github.com/duet-llm/duet/bench/internal/stats"
	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/engine/enginetest"
)

func TestCPUCount(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1": 2, "0-3,6": 5, "2,4,6-7": 4, "": 0, "x": 0, "3-1": 0} {
		if got := cpuCount(in); got != want {
			t.Errorf("cpuCount(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestStandardDeployments(t *testing.T) {
	tests := []struct {
		cores           int
		pin             bool
		colo, pd, pdAll string
	}{
		{2, true, "1 both (2 threads, CPUs 0-1)", "1 prefill (1 thread, CPUs 0) + 1 decode (1 thread, CPUs 1)",
			"1 prefill (2 threads, CPUs 0-1) + 1 decode (1 thread, CPUs 0-1)"},
		{4, true, "1 both (4 threads, CPUs 0-3)", "1 prefill (2 threads, CPUs 0-1) + 1 decode (2 threads, CPUs 2-3)",
			"1 prefill (4 threads, CPUs 0-3) + 1 decode (2 threads, CPUs 0-3)"},
		{3, false, "1 both (3 threads)", "1 prefill (1 thread) + 1 decode (2 threads)", "1 prefill (3 threads) + 1 decode (1 thread)"},
	}
	for _, tt := range tests {
		c, p, a := StandardDeployments(tt.cores, tt.pin)
		if c.Describe() != tt.colo || p.Describe() != tt.pd || a.Describe() != tt.pdAll {
			t.Errorf("%d cores: %q / %q / %q", tt.cores, c.Describe(), p.Describe(), a.Describe())
		}
		// Same total cores: colocated and PD use every core once.
		if c.Threads() != tt.cores || p.Threads() != tt.cores {
			t.Errorf("%d cores: threads %d and %d", tt.cores, c.Threads(), p.Threads())
		}
	}
}

func TestOptionsWrappers(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset")
	}
	_, p, _ := StandardDeployments(2, true)
	wrap := filepath.Join(t.TempDir(), "wrap")
	o, err := p.options("/opt/duet/bin", "/m.gguf", wrap, []string{"--kv-memory", "1GiB"}, []string{"--x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.BinDir != wrap || o.Prefill != 1 || o.Decode != 1 || o.Both != 0 {
		t.Fatalf("options %+v", o)
	}
	if got := strings.Join(o.RoleArgs[cluster.RolePrefill], " "); got != "--threads 1" {
		t.Fatalf("prefill args %q", got)
	}
	for bin, want := range map[string]string{
		"duet-prefill": "GOMAXPROCS=2 exec '", "duet-decode": "' -c '1' '/opt/duet/bin/duet-decode' \"$@\"", "duet-router": "exec '/opt/duet/bin/duet-router' \"$@\"",
	} {
		b, err := os.ReadFile(filepath.Join(wrap, bin))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s wrapper:\n%s\nwant %q", bin, b, want)
		}
	}
	// Unpinned: the real folder, no wrappers.
	_, up, _ := StandardDeployments(2, false)
	if o, err := up.options("/opt/duet/bin", "/m.gguf", filepath.Join(t.TempDir(), "w2"), nil, nil, nil); err != nil || o.BinDir != "/opt/duet/bin" {
		t.Fatalf("unpinned: %v %q", err, o.BinDir)
	}
	bad := Deployment{Name: "x", Nodes: []NodeSpec{{cluster.RoleBoth, 1, "0"}, {cluster.RoleDecode, 1, "1"}}}
	if _, err := bad.options("/b", "/m", filepath.Join(t.TempDir(), "w3"), nil, nil, nil); err == nil {
		t.Fatal("pinned both and decode nodes apart")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.BinDir, ok.OutDir, ok.Model = "b", "o", "m"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(c *Config){
		"no bin":      func(c *Config) { c.BinDir = "" },
		"no model":    func(c *Config) { c.Model = "" },
		"one core":    func(c *Config) { c.Cores = 1 },
		"bad phase":   func(c *Config) { c.Phases = []string{"warm"} },
		"zero rate":   func(c *Config) { c.MixedRates = []float64{0} },
		"no rates":    func(c *Config) { c.MixedRates = nil },
		"no classes":  func(c *Config) { c.Mixed = nil },
		"no prompts":  func(c *Config) { c.LowLoadPrompts = nil },
		"tiny output": func(c *Config) { c.OverheadOutput = 1 },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			c := ok
			edit(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func testResults() (Config, *Results) {
	cfg := DefaultConfig()
	cfg.LowLoadPrompts = []int{1024, 2048}
	slo := cfg.SLO
	mk := func(ttft, itl float64) []stats.Sample {
		var out []stats.Sample
		for i := range 10 {
			class := "chat"
			if i%4 == 0 {
				class = "long"
			}
			out = append(out, stats.Sample{ID: i, Class: class, StartS: float64(i), EndS: float64(i) + 2, OutputTokens: 11,
				TTFTms: ttft * float64(i+1), E2Ems: ttft*float64(i+1) + 10*itl, ITLms: []float64{itl, itl, 10 * itl}})
		}
		return out
	}
	low := func(base float64) report.Stage {
		return report.NewStage("low", 0, 1, []stats.Sample{
			{ID: 0, Class: "1024", TTFTms: base, E2Ems: base + 10, OutputTokens: 8},
			{ID: 1, Class: "2048", TTFTms: 3 * base, E2Ems: 3*base + 10, OutputTokens: 8},
		}, slo)
	}
	colo, pd, full := StandardDeployments(2, true)
	return cfg, &Results{Model: "/x/synth-110m-f32.gguf", Deployments: []Deployment{colo, pd, full},
		Mixed: map[string]report.Stage{"colocated": report.NewStage("m", 1, 0, mk(100, 50), slo), "pd": report.NewStage("m", 1, 0, mk(200, 20), slo)},
		Sweep: map[string][]report.Stage{
			"colocated": {report.NewStage("m", 0.5, 0, mk(50, 50), slo), report.NewStage("m", 1, 0, mk(100, 50), slo)},
			"pd":        {report.NewStage("m", 0.5, 0, mk(100, 20), slo), report.NewStage("m", 1, 0, mk(200, 20), slo)}},
		LowLoad:       map[string]report.Stage{"colocated": low(1000), "pd-prefill-all": low(1030)},
		BeyondCompute: map[string]map[string]stats.Dist{"colocated": {"1024": {N: 1, P50: 2}}, "pd-prefill-all": {"1024": {N: 1, P50: 12}}},
		Overhead: map[string]*Overhead{"pd": {TTFT: stats.Dist{N: 3, P50: 0.8, P99: 2.5}, Router: stats.Summary{TTFT: stats.Dist{N: 3, P50: 80}},
			Direct: stats.Summary{TTFT: stats.Dist{N: 3, P50: 79.2}}}}}
}

func TestMarkdownAndResults(t *testing.T) {
	cfg, res := testResults()
	md := Markdown(cfg, res)
	for _, want := range []string{
		"# PD vs colocated: synth-110m-f32.gguf",
		"| | colocated | pd | pd / colocated |",
		"| TTFT p50 | 550 | 1100 | 2.00 |",
		"| ITL p99 | 500.0 | 200.0 | 0.40 |",
		"| TTFT p99, long | 892 | 1784 | 2.00 |",
		"| 1024 | 1000 | 1030 | +3.0% | +3.0% (1 rounds) | 2.0 | 12.0 | +1.00% |",
		"| 2048 | 3000 | 3090 | +3.0% | +3.0% (1 rounds) | - | - | - |",
		"RESULT lowload_pd_ttft_overhead_beyond_compute_1024 1 %",
		"| pd | 80.00 | 79.20 | 0.80 | 2.50 |",
		"RESULT mixed_pd_itl_p99 200 ms",
		"RESULT lowload_pd_ttft_overhead_2048 3 %",
		"RESULT router_added_ttft_p50_pd 0.8 ms",
		"| 0.5 | 0.909 | 0.909 | 100% | 100% | 0 | 0 | 496 | 991 | 500.0 | 200.0 | 50.0 | 20.0 |",
		"RESULT mixed_pd_rate0p5_itl_p99 200 ms",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	res.Incomplete = "context deadline exceeded"
	if md := Markdown(cfg, res); !strings.Contains(md, "**Incomplete**: context deadline exceeded.") {
		t.Fatal("an incomplete run is not marked")
	}
	lines := ResultLines(res)
	want := []string{"mixed_colocated_ttft_p99", "mixed_colocated_itl_p99", "mixed_colocated_goodput", "mixed_pd_ttft_p99", "mixed_pd_itl_p99", "mixed_pd_goodput"}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "RESULT "+w+" ") {
			t.Fatalf("line %d %q, want %s", i, lines[i], w)
		}
	}
}

func TestWrite(t *testing.T) {
	cfg, res := testResults()
	cfg.OutDir = t.TempDir()
	_, paths, err := Write(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range paths {
		names[filepath.Base(p)] = true
	}
	for _, n := range []string{ComparisonFile, SummaryFile, "mixed_itl_cdf.png", "mixed_ttft_cdf.png", "mixed_tpot_cdf.png", "lowload_ttft.png",
		"mixed_goodput_vs_rate.png", "mixed_itl_p99_vs_rate.png", "mixed_ttft_p99_vs_rate.png"} {
		if !names[n] {
			t.Fatalf("%s not written: %v", n, paths)
		}
	}
	b, _ := os.ReadFile(filepath.Join(cfg.OutDir, SummaryFile))
	if strings.Contains(string(b), `"itl_ms": [`) {
		t.Fatal("the summary JSON carries raw samples")
	}
}

// TestRunSmall runs the whole comparison at toy size on stories260K:
// three deployments of real processes (pinned through the taskset
// wrappers when taskset exists), each phase, and the files.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three clusters")
	}
	model := enginetest.ModelPath(t, enginetest.Stories260K)
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+"/",
		"github.com/duet-llm/duet/router/cmd/duet-router",
		"github.com/duet-llm/duet/prefill-node/cmd/duet-prefill",
		"github.com/duet-llm/duet/decode-node/cmd/duet-decode")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := DefaultConfig()
	cfg.BinDir, cfg.Model, cfg.OutDir = bin, model, t.TempDir()
	_, err := exec.LookPath("taskset")
	cfg.Pin = err == nil
	cfg.NodeArgs = []string{"--kv-memory", "64MiB"}
	cfg.Vocab = 512
	cfg.OverheadRequests, cfg.OverheadPrompt, cfg.OverheadOutput = 3, 16, 8
	cfg.LowLoadPrompts, cfg.LowLoadReps, cfg.LowLoadOutput = []int{64, 256}, 1, 4
	// Short requests on stories260K can end before the router's Attach
	// reaches the decode node: that must still work.
	cfg.Mixed = []load.Class{{Name: "chat", Weight: 1, Prompt: load.Fixed(16), Output: load.Fixed(24)},
		{Name: "long", Weight: 1, Prompt: load.Fixed(300), Output: load.Fixed(4)}}
	cfg.MixedRates, cfg.MixedRequests, cfg.MixedDuration = []float64{20}, 10, 10*time.Second
	var progress strings.Builder
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg, nil)
	if err != nil {
		for _, name := range []string{"colocated", "pd", "colocated-lowload", "pd-prefill-all-lowload"} {
			if b, rerr := os.ReadFile(filepath.Join(cfg.OutDir, name+".log")); rerr == nil {
				t.Logf("%s.log:\n%s", name, tail(string(b), 60))
			}
		}
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(res.Deployments) != 3 || len(res.Mixed) != 2 || len(res.LowLoad) != 2 || len(res.Overhead) != 2 {
		t.Fatalf("results: %d deployments, %d mixed, %d lowload, %d overhead", len(res.Deployments), len(res.Mixed), len(res.LowLoad), len(res.Overhead))
	}
	for name, st := range res.Mixed {
		if st.Summary.Completed != 10 || len(st.Classes) != 2 {
			t.Fatalf("mixed on %s: %d completed, %d classes", name, st.Summary.Completed, len(st.Classes))
		}
	}
	for _, name := range []string{"colocated", "pd-prefill-all"} {
		if b := res.BeyondCompute[name]; len(b) != 2 || b["256"].N != 1 {
			t.Fatalf("beyond compute on %s: %+v", name, b)
		}
	}
	// The same seed sends the same requests to each deployment.
	a, b := res.Mixed["colocated"].Samples, res.Mixed["pd"].Samples
	for i := range a {
		if a[i].Class != b[i].Class || a[i].PromptTokens != b[i].PromptTokens || a[i].ScheduledS != b[i].ScheduledS {
			t.Fatalf("request %d differs between deployments: %+v / %+v", i, a[i], b[i])
		}
	}
	for name, o := range res.Overhead {
		// The direct path returns exactly as many tokens as the router.
		if o.Router.Completed != 3 || o.Direct.Completed != 3 || o.Router.OutputTokens.Mean != o.Direct.OutputTokens.Mean {
			t.Fatalf("overhead on %s: router %+v direct %+v", name, o.Router, o.Direct)
		}
		if o.Compute.N != 3 || o.Compute.P50 <= 0 {
			t.Fatalf("overhead on %s: no compute time reported: %+v", name, o.Compute)
		}
	}
	md, paths, err := Write(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md, "RESULT mixed_pd_itl_p99 ") || !strings.Contains(md, "RESULT lowload_pd_ttft_overhead_256 ") || len(paths) != 9 {
		t.Fatalf("comparison:\n%s\n%v", md, paths)
	}
	for _, f := range []string{"colocated/mixed/result.json", "pd/mixed/summary.md", "pd-prefill-all/lowload/ttft_cdf.png", "colocated.log"} {
		if _, err := os.Stat(filepath.Join(cfg.OutDir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	c.AddFlags(fs)
	err := fs.Parse([]string{"--phases", "mixed", "--kv-memory", "1GiB", "--class", "name=a,prompt=8,output=4", "--class", "name=b,prompt=9,output=5",
		"--lowload-prompts", "100,200", "--slo-ttft", "2s", "--slo-tpot", "50ms", "--node-flag=--kv-dtype=int8", "--mixed-rates", "1,3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Phases) != 1 || strings.Join(c.NodeArgs, " ") != "--kv-memory 1GiB --kv-dtype=int8" || len(c.Mixed) != 2 || c.Mixed[1].Name != "b" || len(c.MixedRates) != 2 ||
		len(c.LowLoadPrompts) != 2 || c.SLO.TTFTms != 2000 || c.SLO.TPOTms != 50 {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range [][]string{{"--class", "prompt=1"}, {"--lowload-prompts", "0"}, {"--slo-ttft", "soon"}, {"--node-flag", "x"}, {"--mixed-rates", "1,-2"}} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		c.AddFlags(fs)
		if fs.Parse(bad) == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
