package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/bench/internal/load"
	"github.com/duet-llm/duet/bench/internal/report"
	"github.com/duet-llm/duet/bench/internal/stats"
	"github.com/duet-llm/duet/cluster/envflag"
)

// EnvPrefix is the prefix of the environment variables that set flags
// (--slo-ttft is also DUET_BENCH_SLO_TTFT).
const EnvPrefix = "DUET_BENCH_"

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("duet-bench: bad configuration")

// Config is duet-bench's configuration.
type Config struct {
	URL, API, Model, APIKey string

	Arrival     string
	Rates       []float64 // open loop: one stage per rate
	Concurrency []int     // closed loop: one stage per level
	Requests    int
	Duration    time.Duration
	Warmup      int

	PromptTokens, OutputTokens string
	Classes                    []string
	PromptFile                 string
	PromptIDs                  bool
	Vocab, FirstID             int
	Temperature                float64
	IgnoreEOS                  bool
	Seed                       uint64

	SLOTTFT, SLOTPOT time.Duration
	Timeout          time.Duration
	MaxInFlight      int

	Out      string
	Progress bool
}

// DefaultConfig is the configuration the flags start from.
func DefaultConfig() Config {
	return Config{URL: "http://127.0.0.1:8080", API: "completions", Arrival: "poisson", Rates: []float64{1},
		Requests: 100, PromptTokens: "512", OutputTokens: "128", Vocab: 32000, FirstID: 3,
		Seed: 1, SLOTTFT: 2 * time.Second, SLOTPOT: 100 * time.Millisecond, Timeout: 10 * time.Minute,
		Out: "bench-out", Progress: true}
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", c.URL, "base URL of the OpenAI-compatible server")
	fs.StringVar(&c.API, "api", c.API, "endpoint: completions (/v1/completions) or chat (/v1/chat/completions)")
	fs.StringVar(&c.Model, "model", c.Model, "model name (default: the first of GET /v1/models)")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "API key sent as a bearer token (or DUET_BENCH_API_KEY)")
	fs.StringVar(&c.Arrival, "arrival", c.Arrival, "open-loop arrivals: poisson or constant (ignored with --concurrency)")
	fs.Var(floatList{&c.Rates}, "rate", "request rate(s) in requests/s, comma-separated: one stage each")
	fs.Var(intList{&c.Concurrency}, "concurrency", "closed loop instead: requests in flight, comma-separated: one stage each")
	fs.IntVar(&c.Requests, "requests", c.Requests, "requests per stage")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop sending after this long in each stage (0: send every request)")
	fs.IntVar(&c.Warmup, "warmup", c.Warmup, "requests sent one at a time before the first stage and not counted")
	fs.StringVar(&c.PromptTokens, "prompt-tokens", c.PromptTokens, "prompt length in tokens: N or MIN:MAX (uniform)")
	fs.StringVar(&c.OutputTokens, "output-tokens", c.OutputTokens, "max_tokens: N or MIN:MAX (uniform)")
	fs.Var(stringList{&c.Classes}, "class", "a request class of a mixed workload, repeatable: name=long,weight=1,prompt=1024:4096,output=16 (replaces --prompt-tokens/--output-tokens)")
	fs.StringVar(&c.PromptFile, "prompts", c.PromptFile, `JSONL file of prompts, one {"prompt": "text" or [ids], "max_tokens": N} per line, used in turn`)
	fs.BoolVar(&c.PromptIDs, "prompt-ids", c.PromptIDs, "send prompts as random token ids (exact lengths; duet and vLLM take them) instead of text")
	fs.IntVar(&c.Vocab, "vocab", c.Vocab, "vocabulary size for --prompt-ids (ids are drawn from [first-id, vocab))")
	fs.IntVar(&c.FirstID, "first-id", c.FirstID, "smallest id for --prompt-ids (skips special tokens)")
	fs.Float64Var(&c.Temperature, "temperature", c.Temperature, "sampling temperature sent with every request")
	fs.BoolVar(&c.IgnoreEOS, "ignore-eos", c.IgnoreEOS, `send "ignore_eos": true so outputs run to max_tokens (vLLM; not every server accepts it)`)
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the workload (same seed, same requests)")
	fs.DurationVar(&c.SLOTTFT, "slo-ttft", c.SLOTTFT, "goodput SLO: time to first token at most this (0: not checked)")
	fs.DurationVar(&c.SLOTPOT, "slo-tpot", c.SLOTPOT, "goodput SLO: time per output token at most this (0: not checked)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "limit of one request")
	fs.IntVar(&c.MaxInFlight, "max-inflight", c.MaxInFlight, "open loop: most requests in flight (0: 4096)")
	fs.StringVar(&c.Out, "out", c.Out, "folder for result.json, summary.md and the plots")
	fs.BoolVar(&c.Progress, "progress", c.Progress, "show a progress bar on stderr")
}

// FromEnv fills flags not given on the command line from DUET_BENCH_*.
func (c *Config) FromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	return envflag.Apply(fs, EnvPrefix, lookup)
}

// Validate checks the configuration and the workloads it makes.
func (c *Config) Validate() error {
	t := c.target("m")
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if len(c.Concurrency) == 0 && len(c.Rates) == 0 {
		return fmt.Errorf("%w: give --rate or --concurrency", ErrConfig)
	}
	if c.Out == "" {
		return fmt.Errorf("%w: --out is empty", ErrConfig)
	}
	if c.Warmup < 0 {
		return fmt.Errorf("%w: --warmup %d", ErrConfig, c.Warmup)
	}
	if c.PromptIDs && c.API == string(load.Chat) {
		return fmt.Errorf("%w: --prompt-ids needs --api completions (chat takes text)", ErrConfig)
	}
	if _, err := c.classes(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, w := range c.workloads(nil) {
		if err := w.Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	return nil
}

func (c *Config) target(model string) load.Target {
	return load.Target{URL: c.URL, API: load.API(c.API), Model: model, APIKey: c.APIKey,
		Temperature: c.Temperature, IgnoreEOS: c.IgnoreEOS, Timeout: c.Timeout}
}

func (c *Config) classes() ([]load.Class, error) {
	if len(c.Classes) == 0 {
		p, err := load.ParseLengths(c.PromptTokens)
		if err != nil && c.PromptFile == "" {
			return nil, err
		}
		o, err := load.ParseLengths(c.OutputTokens)
		if err != nil {
			return nil, err
		}
		return []load.Class{{Name: "default", Weight: 1, Prompt: p, Output: o}}, nil
	}
	var out []load.Class
	for _, s := range c.Classes {
		cl, err := load.ParseClass(s)
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

// stageSpec is one stage's load level.
type stageSpec struct {
	label       string
	rate        float64
	concurrency int
}

func (c *Config) stages() []stageSpec {
	var out []stageSpec
	for _, n := range c.Concurrency {
		out = append(out, stageSpec{label: fmt.Sprintf("concurrency %d", n), concurrency: n})
	}
	if len(out) > 0 {
		return out
	}
	for _, r := range c.Rates {
		out = append(out, stageSpec{label: fmt.Sprintf("%s %g req/s", c.Arrival, r), rate: r})
	}
	return out
}

// workloads returns one workload per stage (with placeholder classes when
// the class flags do not parse: Validate reports that).
func (c *Config) workloads(prompts []load.FilePrompt) []load.Workload {
	cls, err := c.classes()
	if err != nil {
		cls = []load.Class{{Name: "invalid"}}
	}
	var out []load.Workload
	for _, st := range c.stages() {
		w := load.Workload{Classes: cls, Prompts: prompts, Arrival: load.Arrival(c.Arrival), Rate: st.rate,
			Concurrency: st.concurrency, Requests: c.Requests, Duration: c.Duration, Seed: c.Seed,
			PromptIDs: c.PromptIDs, Vocab: c.Vocab, FirstID: c.FirstID}
		if st.concurrency > 0 {
			w.Arrival = load.Closed
		}
		if c.PromptFile != "" && prompts == nil {
			w.Prompts = []load.FilePrompt{{Text: "validation placeholder"}}
		}
		out = append(out, w)
	}
	return out
}

// Run runs every stage and writes the results into cfg.Out. Progress goes
// to progress (a terminal when tty).
func Run(ctx context.Context, cfg Config, progress io.Writer, tty bool, lg *zap.Logger) (*report.Result, []string, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	var prompts []load.FilePrompt
	if cfg.PromptFile != "" {
		f, err := os.Open(cfg.PromptFile)
		if err != nil {
			return nil, nil, err
		}
		prompts, err = load.ReadPrompts(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", cfg.PromptFile, err)
		}
	}
	model := cfg.Model
	if model == "" {
		var err error
		if model, err = FirstModel(ctx, cfg.URL, cfg.APIKey); err != nil {
			return nil, nil, err
		}
	}
	client := load.NewClient(cfg.target(model))
	defer client.Close()
	if !cfg.Progress {
		progress = nil
	}
	slo := stats.SLO{TTFTms: ms(cfg.SLOTTFT), TPOTms: ms(cfg.SLOTPOT)}
	res := &report.Result{Tool: "duet-bench", Started: time.Now(), SLO: slo,
		Target: report.Target{URL: cfg.URL, API: cfg.API, Model: model},
		Workload: report.Workload{Arrival: cfg.Arrival, Classes: cfg.Classes, PromptFile: cfg.PromptFile, PromptIDs: cfg.PromptIDs,
			Requests: cfg.Requests, DurationS: cfg.Duration.Seconds(), Seed: cfg.Seed, Temperature: cfg.Temperature}}
	if len(cfg.Concurrency) > 0 {
		res.Workload.Arrival = string(load.Closed)
	}
	if len(cfg.Classes) == 0 {
		res.Workload.Classes = []string{fmt.Sprintf("prompt %s tokens, output %s tokens", cfg.PromptTokens, cfg.OutputTokens)}
	}

	wls := cfg.workloads(prompts)
	if cfg.Warmup > 0 {
		w := wls[0]
		w.Arrival, w.Concurrency, w.Requests, w.Duration, w.Seed = load.Closed, 1, cfg.Warmup, 0, w.Seed^0x5741524d // "WARM"
		if _, err := runStage(ctx, w, client, progress, tty, "warmup", cfg.MaxInFlight, lg); err != nil {
			return nil, nil, err
		}
	}
	var runErr error
	for i, st := range cfg.stages() {
		samples, err := runStage(ctx, wls[i], client, progress, tty, st.label, cfg.MaxInFlight, lg)
		if len(samples) > 0 {
			res.Stages = append(res.Stages, report.NewStage(st.label, st.rate, st.concurrency, samples, slo))
		}
		if err != nil {
			runErr = err
			break
		}
	}
	if len(res.Stages) == 0 {
		return res, nil, runErr
	}
	paths, err := report.Write(cfg.Out, res)
	return res, paths, errors.Join(runErr, err)
}

func runStage(ctx context.Context, w load.Workload, snd load.Sender, progress io.Writer, tty bool, label string, maxInFlight int, lg *zap.Logger) ([]stats.Sample, error) {
	r, err := load.New(load.Config{Workload: w, Sender: snd, Progress: progress, ProgressTTY: tty, Label: label, MaxInFlight: maxInFlight}, lg)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// FirstModel asks the server's GET /v1/models for the first model id.
func FirstModel(ctx context.Context, base, apiKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/v1") + "/v1/models"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("list models: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("list models: %s (give --model)", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil || len(list.Data) == 0 || list.Data[0].ID == "" {
		return "", fmt.Errorf("list models: no model in the answer (give --model)")
	}
	return list.Data[0].ID, nil
}

// Flag types for comma-separated lists and repeatable flags.
type (
	floatList  struct{ p *[]float64 }
	intList    struct{ p *[]int }
	stringList struct{ p *[]string }
)

func (f floatList) String() string {
	if f.p == nil {
		return ""
	}
	var s []string
	for _, v := range *f.p {
		s = append(s, strconv.FormatFloat(v, 'g', -1, 64))
	}
	return strings.Join(s, ",")
}

func (f floatList) Set(v string) error {
	var out []float64
	for part := range strings.SplitSeq(v, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(x > 0) || x > 1e6 {
			return fmt.Errorf("%q is not a positive rate", part)
		}
		out = append(out, x)
	}
	*f.p = out
	return nil
}

func (f intList) String() string {
	if f.p == nil {
		return ""
	}
	var s []string
	for _, v := range *f.p {
		s = append(s, strconv.Itoa(v))
	}
	return strings.Join(s, ",")
}

func (f intList) Set(v string) error {
	var out []int
	for part := range strings.SplitSeq(v, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || x < 1 || x > 100000 {
			return fmt.Errorf("%q is not a concurrency from 1 to 100000", part)
		}
		out = append(out, x)
	}
	*f.p = out
	return nil
}

func (f stringList) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, " ")
}

func (f stringList) Set(v string) error { *f.p = append(*f.p, v); return nil }
