package pd

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/duet-llm/duet/bench/internal/load"
)

// AddFlags registers the flags of duet-bench-pd, with c's values as
// defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.BinDir, "bin", c.BinDir, "folder holding duet-router, duet-prefill and duet-decode")
	fs.StringVar(&c.Model, "model", c.Model, "GGUF model (default: the synthetic 110M model, written into --cache once)")
	fs.StringVar(&c.ModelsDir, "models-dir", c.ModelsDir, "folder of the shared models (tokenizer of the synthetic model)")
	fs.StringVar(&c.CacheDir, "cache", c.CacheDir, "folder of the synthetic model")
	fs.StringVar(&c.OutDir, "out", c.OutDir, "folder for the results, plots and cluster logs")
	fs.IntVar(&c.Cores, "cores", c.Cores, "cores every deployment gets (colocated: all on one node; PD: split)")
	fs.BoolVar(&c.Pin, "pin", c.Pin, "pin nodes to CPUs with taskset")
	fs.Func("phases", "phases to run, comma-separated: overhead, lowload, mixed (default "+strings.Join(c.Phases, ",")+")", func(s string) error {
		c.Phases = strings.Split(s, ",")
		return nil
	})
	fs.Func("kv-memory", "KV pool of every node (default "+strings.Join(c.NodeArgs[1:2], "")+")", func(s string) error {
		c.NodeArgs[1] = s
		return nil
	})
	fs.Func("node-flag", "an extra flag for every node, repeatable, e.g. --node-flag=--kv-dtype=int8", func(s string) error {
		if !strings.HasPrefix(s, "-") {
			return fmt.Errorf("%q is not a flag", s)
		}
		c.NodeArgs = append(c.NodeArgs, s)
		return nil
	})
	fs.Func("mixed-rates", "mixed phase: Poisson arrival rates in req/s, comma-separated, a stage each; the middle one heads the comparison (default "+joinFloats(c.MixedRates)+")", func(s string) error {
		v, err := parseFloats(s)
		c.MixedRates = v
		return err
	})
	fs.IntVar(&c.MixedRequests, "mixed-requests", c.MixedRequests, "mixed phase: requests per rate")
	fs.DurationVar(&c.MixedDuration, "mixed-duration", c.MixedDuration, "mixed phase: most time spent sending at each rate")
	replaced := false
	fs.Func("class", "mixed phase: a request class, repeatable (replaces the default chat and long classes): name=long,weight=1,prompt=1024:2048,output=16", func(s string) error {
		cl, err := load.ParseClass(s)
		if err != nil {
			return err
		}
		if !replaced {
			c.Mixed, replaced = nil, true
		}
		c.Mixed = append(c.Mixed, cl)
		return nil
	})
	fs.Func("lowload-prompts", "low-load phase: prompt lengths, comma-separated (default "+joinInts(c.LowLoadPrompts)+")", func(s string) error {
		v, err := parseInts(s)
		c.LowLoadPrompts = v
		return err
	})
	fs.IntVar(&c.LowLoadReps, "lowload-reps", c.LowLoadReps, "low-load phase: rounds of every length")
	fs.IntVar(&c.OverheadRequests, "overhead-requests", c.OverheadRequests, "overhead phase: requests (each sent both ways)")
	fs.Func("slo-ttft", fmt.Sprintf("goodput SLO: TTFT at most (default %v)", msDuration(c.SLO.TTFTms)), func(s string) error {
		d, err := time.ParseDuration(s)
		c.SLO.TTFTms = float64(d) / float64(time.Millisecond)
		return err
	})
	fs.Func("slo-tpot", fmt.Sprintf("goodput SLO: TPOT at most (default %v)", msDuration(c.SLO.TPOTms)), func(s string) error {
		d, err := time.ParseDuration(s)
		c.SLO.TPOTms = float64(d) / float64(time.Millisecond)
		return err
	})
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "workload seed")
	fs.DurationVar(&c.Budget, "budget", c.Budget, "most time the whole comparison may take; what is done by then is reported, marked incomplete (0: no limit)")
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive length", part)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(x > 0) || x > 1e6 {
			return nil, fmt.Errorf("%q is not a positive rate", part)
		}
		out = append(out, x)
	}
	return out, nil
}
