package pd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/bench/internal/direct"
	"github.com/duet-llm/duet/bench/internal/load"
	"github.com/duet-llm/duet/bench/internal/report"
	"github.com/duet-llm/duet/bench/internal/stats"
	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/tests/localcluster"
)

// Errors of the comparison.
var (
	ErrConfig = errors.New("pd: bad configuration")
)

// Phases.
const (
	PhaseOverhead = "overhead" // router vs direct gRPC, one request at a time
	PhaseLowLoad  = "lowload"  // TTFT of long prompts, one at a time
	PhaseMixed    = "mixed"    // long prompts arriving while others decode, open loop
)

// Config configures the comparison.
type Config struct {
	// BinDir holds duet-router, duet-prefill and duet-decode.
	BinDir string
	// Model is the GGUF model (default: the synthetic 110M model written
	// into CacheDir from the tokenizer in ModelsDir).
	Model, ModelsDir, CacheDir string
	// OutDir receives every result, the comparison and the cluster logs.
	OutDir string
	// Cores is the machine share every deployment gets; Pin pins nodes to
	// CPUs with taskset.
	Cores int
	Pin   bool
	// NodeArgs are extra flags of every node (e.g. --kv-memory).
	NodeArgs []string
	// Phases to run, in order.
	Phases []string
	// Vocab bounds the random prompt token ids; StopTokens end outputs.
	Vocab      int
	StopTokens []int32
	Seed       uint64

	// Router overhead: requests (each sent both ways), prompt and output.
	OverheadRequests, OverheadPrompt, OverheadOutput int
	// Low load: prompt lengths, repetitions of each, output length.
	LowLoadPrompts             []int
	LowLoadReps, LowLoadOutput int
	// Mixed: request classes, Poisson rates (a stage each; the middle one
	// is the headline), requests per stage and a cap on each stage's
	// sending time; SLO for goodput.
	Mixed         []load.Class
	MixedRates    []float64
	MixedRequests int
	MixedDuration time.Duration
	SLO           stats.SLO
	// PhaseGrace bounds how long a mixed stage may run past its sending
	// time (requests still in flight are then canceled and count as
	// failed); Budget bounds the whole run (what is done by then is
	// reported, marked incomplete).
	PhaseGrace time.Duration
	Budget     time.Duration

	// Progress receives progress lines (a terminal when TTY).
	Progress io.Writer
	TTY      bool
}

// DefaultConfig is sized to finish in under 10 minutes on a 2-core
// machine with the 110M model.
func DefaultConfig() Config {
	return Config{Cores: 2, Pin: true, NodeArgs: []string{"--kv-memory", "2GiB"},
		Phases: []string{PhaseOverhead, PhaseLowLoad, PhaseMixed}, Vocab: 32000, StopTokens: []int32{2}, Seed: 1,
		OverheadRequests: 30, OverheadPrompt: 64, OverheadOutput: 16,
		LowLoadPrompts: []int{1024, 2048, 4000}, LowLoadReps: 3, LowLoadOutput: 4,
		Mixed: []load.Class{
			{Name: "chat", Weight: 3, Prompt: load.Lengths{Min: 64, Max: 256}, Output: load.Lengths{Min: 64, Max: 128}},
			{Name: "long", Weight: 1, Prompt: load.Lengths{Min: 1024, Max: 2048}, Output: load.Lengths{Min: 16, Max: 32}},
		},
		MixedRates: []float64{0.5, 1, 2}, MixedRequests: 30, MixedDuration: 60 * time.Second,
		SLO:        stats.SLO{TTFTms: 5000, TPOTms: 50},
		PhaseGrace: 60 * time.Second, Budget: 9 * time.Minute}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.BinDir == "" || c.OutDir == "" {
		return fmt.Errorf("%w: bin and out folders are required", ErrConfig)
	}
	if c.Model == "" && (c.ModelsDir == "" || c.CacheDir == "") {
		return fmt.Errorf("%w: give a model, or the models and cache folders to write the synthetic one", ErrConfig)
	}
	if c.Cores < 2 {
		return fmt.Errorf("%w: cores %d: a PD pair needs at least 2", ErrConfig, c.Cores)
	}
	for _, p := range c.Phases {
		if p != PhaseOverhead && p != PhaseLowLoad && p != PhaseMixed {
			return fmt.Errorf("%w: phase %q (want overhead, lowload, mixed)", ErrConfig, p)
		}
	}
	if slices.Contains(c.Phases, PhaseMixed) {
		if len(c.MixedRates) == 0 {
			return fmt.Errorf("%w: mixed phase without a rate", ErrConfig)
		}
		for _, r := range c.MixedRates {
			w := c.mixedWorkload(r)
			if err := w.Validate(); err != nil {
				return fmt.Errorf("%w: mixed workload: %v", ErrConfig, err)
			}
		}
	}
	if c.OverheadRequests < 1 || c.OverheadPrompt < 1 || c.OverheadOutput < 2 || c.LowLoadReps < 1 || c.LowLoadOutput < 1 || len(c.LowLoadPrompts) == 0 {
		return fmt.Errorf("%w: phase sizes must be positive", ErrConfig)
	}
	if c.Vocab < 4 {
		return fmt.Errorf("%w: vocab %d", ErrConfig, c.Vocab)
	}
	return nil
}

// HeadlineRate is the mixed rate whose results lead the comparison.
func (c *Config) HeadlineRate() float64 {
	if len(c.MixedRates) == 0 {
		return 0
	}
	return c.MixedRates[len(c.MixedRates)/2]
}

func (c *Config) mixedWorkload(rate float64) load.Workload {
	return load.Workload{Classes: c.Mixed, Arrival: load.Poisson, Rate: rate, Requests: c.MixedRequests,
		Duration: c.MixedDuration, Seed: c.Seed, PromptIDs: true, Vocab: c.Vocab, FirstID: 3}
}

// Results are what the comparison measured.
type Results struct {
	Model       string       `json:"model"`
	Deployments []Deployment `json:"deployments"`
	// By deployment name.
	Overhead map[string]*Overhead    `json:"overhead,omitempty"`
	LowLoad  map[string]report.Stage `json:"lowload,omitempty"`
	// BeyondCompute is, by deployment and prompt length, TTFT minus the
	// prefill compute the node reported (ms) at low load.
	BeyondCompute map[string]map[string]stats.Dist `json:"lowload_beyond_compute_ms,omitempty"`
	// Mixed holds the headline rate's stage, Sweep every rate's.
	Mixed map[string]report.Stage   `json:"mixed,omitempty"`
	Sweep map[string][]report.Stage `json:"sweep,omitempty"`
	// LoadAvg is the machine's 1-minute load average before and after.
	LoadAvg [2]float64 `json:"loadavg"`
	// Incomplete says why the run stopped early ("" when it did not).
	Incomplete string  `json:"incomplete,omitempty"`
	Elapsed    float64 `json:"elapsed_s"`
}

// Overhead compares the same requests through the router and straight to
// the nodes over gRPC.
type Overhead struct {
	Router, Direct stats.Summary
	// TTFT and E2E are the paired differences router − direct (ms).
	TTFT, E2E stats.Dist
	// Compute is the prefill compute time the node reported (ms).
	Compute stats.Dist
}

// Run starts each deployment in turn, runs its phases and stops it:
// colocated (overhead, mixed), pd (overhead, mixed), then colocated and
// pd-prefill-all side by side for the low-load phase, whose requests
// alternate between the two so that whatever else the machine is doing
// weighs on both alike.
func Run(ctx context.Context, cfg Config, lg *zap.Logger) (res *Results, err error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if cfg.Budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Budget)
		defer cancel()
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	model := cfg.Model
	if model == "" {
		if model, err = SynthModel(ctx, cfg.ModelsDir, cfg.CacheDir, cfg.Progress); err != nil {
			return nil, err
		}
	}
	res = &Results{Model: model, Overhead: map[string]*Overhead{}, LowLoad: map[string]report.Stage{}, Mixed: map[string]report.Stage{},
		Sweep: map[string][]report.Stage{}, BeyondCompute: map[string]map[string]stats.Dist{}}
	res.LoadAvg[0] = loadAvg()
	defer func() {
		res.LoadAvg[1] = loadAvg()
		res.Elapsed = time.Since(t0).Seconds()
		if err != nil {
			res.Incomplete = err.Error()
		}
	}()
	colo, split, full := StandardDeployments(cfg.Cores, cfg.Pin)
	has := func(p string) bool { return slices.Contains(cfg.Phases, p) }
	if has(PhaseOverhead) || has(PhaseMixed) {
		for _, d := range []Deployment{colo, split} {
			res.Deployments = append(res.Deployments, d)
			if err := runPhases(ctx, cfg, model, d, res, lg); err != nil {
				return res, fmt.Errorf("%s: %w", d.Name, err)
			}
		}
	}
	if has(PhaseLowLoad) {
		if !slices.ContainsFunc(res.Deployments, func(d Deployment) bool { return d.Name == colo.Name }) {
			res.Deployments = append(res.Deployments, colo)
		}
		res.Deployments = append(res.Deployments, full)
		if err := runLowLoadPair(ctx, cfg, model, colo, full, res); err != nil {
			return res, fmt.Errorf("lowload: %w", err)
		}
	}
	return res, nil
}

// deployed is a running deployment.
type deployed struct {
	d      Deployment
	c      *localcluster.Cluster
	target load.Target
	router *load.Client
	logf   *os.File
}

// start starts d and waits until it serves; stop it with stop.
func start(ctx context.Context, cfg Config, model string, d Deployment, logName string) (*deployed, error) {
	logf, err := os.Create(filepath.Join(cfg.OutDir, logName+".log"))
	if err != nil {
		return nil, err
	}
	routerArgs := []string{"--http-queue-timeout", "2m", "--first-token-timeout", "2m"}
	o, err := d.options(cfg.BinDir, model, filepath.Join(cfg.OutDir, ".bin-"+d.Name), cfg.NodeArgs, routerArgs, logf)
	if err != nil {
		logf.Close()
		return nil, err
	}
	say(cfg, "== %s: %s\n", d.Name, d.Describe())
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := localcluster.Start(sctx, o)
	if err != nil {
		logf.Close()
		return nil, err
	}
	dp := &deployed{d: d, c: c, logf: logf}
	if err := c.WaitReady(sctx); err != nil {
		dp.stop(nil)
		return nil, err
	}
	modelID := strings.TrimSuffix(filepath.Base(model), filepath.Ext(model))
	dp.target = load.Target{URL: c.Endpoint, API: load.Completions, Model: modelID, Timeout: 5 * time.Minute}
	dp.router = load.NewClient(dp.target)
	// Warm up: fault the weights in and open the connections.
	warm := load.Request{PromptIDs: randomIDs(rand.New(rand.NewPCG(cfg.Seed, 99)), 256, cfg.Vocab), PromptTokens: 256, MaxTokens: 8}
	for range 2 {
		if s := dp.router.Send(ctx, warm); !s.OK() {
			dp.stop(nil)
			return nil, fmt.Errorf("warm-up request: %s", s.Error)
		}
	}
	return dp, nil
}

func (dp *deployed) stop(lg *zap.Logger) {
	if dp.router != nil {
		dp.router.Close()
	}
	if err := dp.c.StopWithin(20 * time.Second); err != nil && lg != nil {
		lg.Warn("cluster stop", zap.String("deployment", dp.d.Name), zap.Error(err))
	}
	dp.logf.Close()
}

// runPhases runs the overhead and mixed phases on d.
func runPhases(ctx context.Context, cfg Config, model string, d Deployment, res *Results, lg *zap.Logger) error {
	dp, err := start(ctx, cfg, model, d, d.Name)
	if err != nil {
		return err
	}
	defer dp.stop(lg)
	for _, ph := range cfg.Phases {
		switch ph {
		case PhaseOverhead:
			ov, err := runOverhead(ctx, cfg, dp.c, dp.target.Model, dp.router)
			if err != nil {
				return fmt.Errorf("overhead: %w", err)
			}
			res.Overhead[d.Name] = ov
		case PhaseMixed:
			var stages []report.Stage
			for _, rate := range cfg.MixedRates {
				st, err := runMixed(ctx, cfg, rate, dp.router, d.Name, lg)
				if err != nil {
					return fmt.Errorf("mixed: %w", err)
				}
				stages = append(stages, st)
				if rate == cfg.HeadlineRate() {
					res.Mixed[d.Name] = st
				}
			}
			res.Sweep[d.Name] = stages
			if err := writeStage(cfg, d, PhaseMixed, dp.target, "poisson", stages...); err != nil {
				return err
			}
		}
	}
	return nil
}

// runLowLoadPair starts a and b side by side and sends long prompts one
// at a time, each round every length to each deployment, alternating
// which deployment goes first. The requests go straight to the nodes
// (package direct), whose prefill node reports its compute time, so each
// TTFT splits into prefill compute and everything else (reservation,
// the KV transfer's tail, the commit, the hops); the router's own share
// is what the overhead phase measures.
func runLowLoadPair(ctx context.Context, cfg Config, model string, a, b Deployment, res *Results) error {
	da, err := start(ctx, cfg, model, a, a.Name+"-lowload")
	if err != nil {
		return err
	}
	defer da.stop(nil)
	db, err := start(ctx, cfg, model, b, b.Name+"-lowload")
	if err != nil {
		return err
	}
	defer db.stop(nil)
	clients := map[string]*direct.Client{}
	for _, dp := range []*deployed{da, db} {
		pair, err := nodePair(ctx, dp.c, dp.target.Model, cfg.StopTokens)
		if err != nil {
			return err
		}
		dc, err := direct.New(pair)
		if err != nil {
			return err
		}
		defer dc.Close()
		clients[dp.d.Name] = dc
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c6f77))
	samples := map[string][]stats.Sample{}
	beyond := map[string]map[string][]float64{} // deployment → class → TTFT − compute
	t0 := time.Now()
	for rep := range cfg.LowLoadReps {
		for j, n := range cfg.LowLoadPrompts {
			class := strconv.Itoa(n)
			req := load.Request{ID: rep*len(cfg.LowLoadPrompts) + j, Class: class, PromptIDs: randomIDs(rng, n, cfg.Vocab), PromptTokens: n, MaxTokens: cfg.LowLoadOutput}
			order := []*deployed{da, db}
			if (rep+j)%2 == 1 {
				order[0], order[1] = db, da
			}
			line := fmt.Sprintf("   low load, round %d, %d-token prompt:", rep+1, n)
			for _, dp := range order {
				name := dp.d.Name
				st := time.Since(t0).Seconds()
				s, tm := clients[name].Generate(ctx, req)
				s.StartS, s.EndS = st, time.Since(t0).Seconds()
				samples[name] = append(samples[name], s)
				if !s.OK() {
					line += fmt.Sprintf(" %s failed (%s)", name, s.Error)
					continue
				}
				compute := float64(tm.Compute) / float64(time.Millisecond)
				if beyond[name] == nil {
					beyond[name] = map[string][]float64{}
				}
				beyond[name][class] = append(beyond[name][class], s.TTFTms-compute)
				line += fmt.Sprintf(" %s %.0f ms (compute %.0f)", name, s.TTFTms, compute)
			}
			say(cfg, "%s\n", line)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	for _, dp := range []*deployed{da, db} {
		name := dp.d.Name
		st := report.NewStage("low load, one at a time", 0, 1, samples[name], cfg.SLO)
		res.LowLoad[name] = st
		res.BeyondCompute[name] = map[string]stats.Dist{}
		for class, v := range beyond[name] {
			res.BeyondCompute[name][class] = stats.Describe(v)
		}
		if err := writeStage(cfg, dp.d, PhaseLowLoad, dp.target, "closed", st); err != nil {
			return err
		}
	}
	return nil
}

func say(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format, args...)
	}
}

// writeStage writes one phase's result like duet-bench does.
func writeStage(cfg Config, d Deployment, phase string, t load.Target, arrival string, st ...report.Stage) error {
	r := &report.Result{Tool: "duet-bench-pd " + phase, Started: time.Now(), SLO: cfg.SLO,
		Target:   report.Target{URL: t.URL + " (" + d.Name + ": " + d.Describe() + ")", API: string(t.API), Model: t.Model},
		Workload: report.Workload{Arrival: arrival, PromptIDs: true, Requests: st[0].Summary.Requests, Seed: cfg.Seed},
		Stages:   st}
	if phase == PhaseMixed {
		for _, c := range cfg.Mixed {
			r.Workload.Classes = append(r.Workload.Classes, fmt.Sprintf("%s: weight %g, prompt %s, output %s", c.Name, c.Weight, c.Prompt, c.Output))
		}
	}
	_, err := report.Write(filepath.Join(cfg.OutDir, d.Name, phase), r)
	return err
}

func randomIDs(r *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(3 + r.IntN(vocab-3))
	}
	return ids
}

// runOverhead sends each request through the router and straight to the
// deployment's nodes, alternating which goes first.
func runOverhead(ctx context.Context, cfg Config, c *localcluster.Cluster, modelID string, router load.Sender) (*Overhead, error) {
	pair, err := nodePair(ctx, c, modelID, cfg.StopTokens)
	if err != nil {
		return nil, err
	}
	dc, err := direct.New(pair)
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6f76))
	var viaRouter, viaDirect []stats.Sample
	var dTTFT, dE2E, compute []float64
	t0 := time.Now()
	for i := range cfg.OverheadRequests {
		req := load.Request{ID: i, PromptIDs: randomIDs(rng, cfg.OverheadPrompt, cfg.Vocab), PromptTokens: cfg.OverheadPrompt, MaxTokens: cfg.OverheadOutput}
		var rs, ds stats.Sample
		var tm direct.Timing
		send := func(first bool) {
			st := time.Since(t0).Seconds()
			if first {
				rs = router.Send(ctx, req)
				rs.StartS, rs.EndS = st, time.Since(t0).Seconds()
			} else {
				ds, tm = dc.Generate(ctx, req)
				ds.StartS, ds.EndS = st, time.Since(t0).Seconds()
			}
		}
		send(i%2 == 0)
		send(i%2 != 0)
		if !rs.OK() || !ds.OK() {
			return nil, fmt.Errorf("request %d: router: %q, direct: %q", i, rs.Error, ds.Error)
		}
		viaRouter, viaDirect = append(viaRouter, rs), append(viaDirect, ds)
		dTTFT = append(dTTFT, rs.TTFTms-ds.TTFTms)
		dE2E = append(dE2E, rs.E2Ems-ds.E2Ems)
		compute = append(compute, float64(tm.Compute)/float64(time.Millisecond))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	ov := &Overhead{Router: stats.Summarize(viaRouter, stats.SLO{}), Direct: stats.Summarize(viaDirect, stats.SLO{}),
		TTFT: stats.Describe(dTTFT), E2E: stats.Describe(dE2E), Compute: stats.Describe(compute)}
	say(cfg, "   router vs direct: TTFT p50 %.2f vs %.2f ms, added p50 %.2f p99 %.2f ms\n", ov.Router.TTFT.P50, ov.Direct.TTFT.P50, ov.TTFT.P50, ov.TTFT.P99)
	return ov, nil
}

// nodePair finds the deployment's prefill and decode nodes in etcd.
func nodePair(ctx context.Context, c *localcluster.Cluster, modelID string, stop []int32) (direct.Pair, error) {
	p := direct.Pair{Model: modelID, StopTokens: stop}
	for _, n := range c.Nodes() {
		desc, err := c.WaitRegistered(ctx, n)
		if err != nil {
			return p, err
		}
		p.Model = desc.ModelID
		switch n.Role {
		case cluster.RoleBoth:
			p.PrefillAddr, p.DecodeAddr, p.Local = desc.GRPCAddr, desc.GRPCAddr, true
		case cluster.RolePrefill:
			p.PrefillAddr = desc.GRPCAddr
		case cluster.RoleDecode:
			p.DecodeAddr = desc.GRPCAddr
		}
	}
	if p.PrefillAddr == "" || p.DecodeAddr == "" {
		return p, errors.New("no node pair registered")
	}
	return p, nil
}

// runMixed runs the open-loop mixed workload at rate.
func runMixed(ctx context.Context, cfg Config, rate float64, router load.Sender, name string, lg *zap.Logger) (report.Stage, error) {
	w := cfg.mixedWorkload(rate)
	r, err := load.New(load.Config{Workload: w, Sender: router, Progress: cfg.Progress, ProgressTTY: cfg.TTY,
		Label: fmt.Sprintf("   mixed on %s, %g req/s", name, rate)}, lg)
	if err != nil {
		return report.Stage{}, err
	}
	// Sending takes about Requests/Rate (at most Duration); what is still
	// running PhaseGrace later is canceled.
	send := min(time.Duration(float64(w.Requests)/w.Rate*float64(time.Second)), w.Duration)
	if w.Duration == 0 {
		send = time.Duration(float64(w.Requests) / w.Rate * float64(time.Second))
	}
	pctx, cancel := context.WithTimeout(ctx, send+cfg.PhaseGrace)
	defer cancel()
	samples, err := r.Run(pctx)
	if err != nil && ctx.Err() != nil {
		return report.Stage{}, err
	}
	return report.NewStage(fmt.Sprintf("mixed, poisson %g req/s", w.Rate), w.Rate, 0, samples, cfg.SLO), nil
}

// loadAvg reads the 1-minute load average (0 where unavailable).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
