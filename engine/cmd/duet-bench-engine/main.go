// Command duet-bench-engine measures the engine's decode and prefill speed
// on real and synthetic models, each beside the machine limit measured in
// the same run: decode against weight bytes per token over memory read
// bandwidth, prefill against peak FMA throughput.
//
// Decode runs at the batch sizes of -batches (default 1 and 16), prefill
// one prompt per length of -prefill-tokens (default 512 and 2048, the
// latter where attention over the prompt is a large share of the work).
// -cpuprofile writes a profile of the measurements.
//
// Headline figures are printed as `RESULT <name> <value> <unit>` lines:
// <model>_decode_b<N>, <model>_prefill (512 tokens), <model>_prefill_<N>
// for other lengths, each followed by its ratio to the limit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/synth"
)

func main() { os.Exit(run()) }

type config struct {
	modelsDir, cacheDir, only, kernel string
	cpuProfile                        string
	workers                           int
	batches, prefills                 []int
	measure                           time.Duration
}

func run() int {
	var c config
	flag.StringVar(&c.modelsDir, "models-dir", "../shared/models", "folder of the shared real models")
	flag.StringVar(&c.cacheDir, "cache", ".cache/models", "folder for the synthetic models (written once, reused)")
	flag.StringVar(&c.only, "only", "", "run only the model with this name")
	flag.StringVar(&c.kernel, "kernel", "", "force a kernel implementation (avx512, avx2, generic)")
	flag.IntVar(&c.workers, "workers", 0, "compute goroutines (0: GOMAXPROCS)")
	batches := flag.String("batches", "1,16", "decode batch sizes to measure (comma-separated; empty for none)")
	prefills := flag.String("prefill-tokens", "512,2048", "prompt lengths for the prefill measurements, each one forward call (capped by the context)")
	flag.DurationVar(&c.measure, "time", 3*time.Second, "time spent on each measurement")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurements to this file")
	flag.Parse()
	var err error
	if c.batches, err = intList(*batches); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-engine: -batches:", err)
		return 2
	}
	if c.prefills, err = intList(*prefills); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-engine: -prefill-tokens:", err)
		return 2
	}
	if c.workers == 0 {
		c.workers = runtime.GOMAXPROCS(0)
	}
	if c.kernel != "" {
		if err := kernel.Use(c.kernel); err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench-engine:", err)
			return 2
		}
	}
	models, err := prepare(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-engine:", err)
		return 1
	}

	fmt.Printf("kernel %s, %d workers, GOMAXPROCS %d\n", kernel.Name(), c.workers, runtime.GOMAXPROCS(0))
	bw := kernel.ReadBandwidth(c.workers, 512<<20, 2*time.Second)
	peak := kernel.PeakFMA(c.workers, 2*time.Second)
	fmt.Printf("limits: memory read bandwidth %.1f GB/s, peak FMA %.1f GFLOP/s\n", bw, peak)
	fmt.Printf("RESULT mem_read_bandwidth %.2f GB/s\nRESULT peak_fma %.1f GFLOP/s\n\n", bw, peak)

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench-engine:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench-engine:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("%-16s %-12s %12s %12s %8s %12s %12s %8s\n", "model", "measure", "tokens/s", "bound tok/s", "ratio", "GB/s", "GFLOP/s", "of peak")
	for _, mm := range models {
		if c.only != "" && mm.name != c.only {
			continue
		}
		if err := benchModel(c, mm, bw, peak); err != nil {
			fmt.Fprintf(os.Stderr, "duet-bench-engine: %s: %v\n", mm.name, err)
			return 1
		}
	}
	return 0
}

type modelRef struct{ name, path string }

// prepare finds the real model and writes the synthetic ones if missing.
func prepare(c config) ([]modelRef, error) {
	stories := filepath.Join(c.modelsDir, "stories260K.gguf")
	vocabSrc := filepath.Join(c.modelsDir, "llama-2-tiny-random.gguf")
	out := []modelRef{{"stories260K", stories}}
	for _, dt := range []string{"f32", "f16"} {
		name := "synth-110m-" + dt
		path := filepath.Join(c.cacheDir, name+".gguf")
		out = append(out, modelRef{name, path})
		if c.only != "" && c.only != name {
			continue
		}
		if _, err := os.Stat(path); err == nil {
			continue
		}
		src, err := gguf.Open(vocabSrc)
		if err != nil {
			return nil, fmt.Errorf("tokenizer source for synthetic models: %w", err)
		}
		spec := synth.Presets["110m"]
		spec.Type, _ = synth.ParseType(dt)
		spec.Seed = 1
		fmt.Printf("writing %s …\n", path)
		err = synth.WriteFile(path, spec, &src.Metadata)
		src.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func benchModel(c config, bm modelRef, bw, peak float64) error {
	m, err := engine.OpenModel(bm.path)
	if err != nil {
		return err
	}
	defer m.Close()
	lm := m.LM
	opts := engine.DefaultOptions()
	opts.KVDType = kvcache.F32
	opts.Workers = c.workers
	longest, widest := 0, 0
	for _, n := range c.prefills {
		longest = max(longest, n)
	}
	for _, b := range c.batches {
		widest = max(widest, b)
	}
	opts.MaxSeqs = max(widest, 1)
	opts.MaxBatchTokens = max(longest, 16*widest, 16) // decode's sequences start with 16-token prompts
	opts.MaxContext = min(lm.ContextLen, max(2048, longest))
	opts.KVMemory = 0
	opts.KVBlocks = 17 * opts.MaxContext / opts.BlockTokens
	eng, err := engine.New(m, opts)
	if err != nil {
		return err
	}
	defer eng.Close()
	wbytes := float64(lm.WeightBytes())
	flopsTok := float64(lm.FlopsPerToken())

	// Decode: each sequence has a 16-token prompt, then decodes greedily;
	// only the decode steps are timed.
	for _, batch := range c.batches {
		tps, err := decodeRate(eng, batch, c.measure)
		if err != nil {
			return err
		}
		bound := bw * 1e9 / wbytes * float64(batch) // weights read once per step
		if cbound := peak * 1e9 / flopsTok; bound > cbound {
			bound = cbound
		}
		gbs := tps / float64(batch) * wbytes / 1e9
		gfl := tps * flopsTok / 1e9
		fmt.Printf("%-16s %-12s %12.1f %12.1f %8.2f %12.2f %12.2f %8.2f\n", bm.name, fmt.Sprintf("decode b%d", batch), tps, bound, tps/bound, gbs, gfl, gfl/peak)
		fmt.Printf("RESULT %s_decode_b%d %.2f tokens/s\n", bm.name, batch, tps)
		fmt.Printf("RESULT %s_decode_b%d_vs_bound %.3f ratio\n", bm.name, batch, tps/bound)
	}
	// Prefill: one prompt per length, in one forward call (capped by the
	// context; a length the cap makes equal to an earlier one is skipped).
	// The FLOP rate counts the matrix products only, as the bound does;
	// the attention over the prompt is extra work the ratio does not
	// credit, which at 2048 tokens on the 110M shape is about a sixth more.
	done := map[int]bool{}
	for i, want := range c.prefills {
		n := min(want, opts.MaxContext)
		if done[n] || n <= 0 {
			continue
		}
		done[n] = true
		tps, err := prefillRate(eng, n, c.measure)
		if err != nil {
			return err
		}
		gfl := tps * flopsTok / 1e9
		bound := peak * 1e9 / flopsTok
		fmt.Printf("%-16s %-12s %12.1f %12.1f %8.2f %12s %12.2f %8.2f\n", bm.name, fmt.Sprintf("prefill %d", n), tps, bound, tps/bound, "-", gfl, gfl/peak)
		name := bm.name + "_prefill"
		if i > 0 || want != 512 {
			name = fmt.Sprintf("%s_prefill_%d", bm.name, want)
		}
		fmt.Printf("RESULT %s %.1f tokens/s\n", name, tps)
		fmt.Printf("RESULT %s_vs_peak_fma %.3f ratio\n", name, gfl/peak)
	}
	return nil
}

// intList parses a comma-separated list of non-negative integers.
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a non-negative integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func tokens(n, vocab int, seed int) []int32 {
	p := make([]int32, n)
	p[0] = 1
	for i := 1; i < n; i++ {
		p[i] = int32(3 + (i*7919+seed*104729)%(vocab-3))
	}
	return p
}

func decodeRate(eng *engine.Engine, batch int, d time.Duration) (float64, error) {
	vocab := eng.Model().LM.Vocab
	pool := eng.Pool()
	seqs := make([]*kvcache.Seq, batch)
	steps := make([]engine.Step, batch)
	maxLen := eng.MaxContext()
	for i := range seqs {
		seqs[i] = &kvcache.Seq{}
		if err := pool.Grow(seqs[i], maxLen); err != nil {
			return 0, err
		}
		steps[i] = engine.Step{Seq: seqs[i], Tokens: tokens(16, vocab, i), Logits: make([]float32, vocab)}
	}
	defer func() {
		for _, s := range seqs {
			pool.Release(s)
		}
	}()
	if err := eng.Forward(steps, nil); err != nil {
		return 0, err
	}
	next := make([][]int32, batch)
	for i := range next {
		next[i] = make([]int32, 1)
	}
	n := 0
	start := time.Now()
	for time.Since(start) < d && seqs[0].Len < maxLen-1 {
		for i := range steps {
			next[i][0] = argmax(steps[i].Logits)
			steps[i].Tokens = next[i]
		}
		if err := eng.Forward(steps, nil); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n*batch) / time.Since(start).Seconds(), nil
}

func prefillRate(eng *engine.Engine, n int, d time.Duration) (float64, error) {
	vocab := eng.Model().LM.Vocab
	prompt := tokens(n, vocab, 99)
	logits := make([]float32, vocab)
	total, runs := time.Duration(0), 0
	for total < d || runs < 2 {
		seq := &kvcache.Seq{}
		if err := eng.Pool().Grow(seq, n); err != nil {
			return 0, err
		}
		start := time.Now()
		err := eng.Prefill(context.Background(), seq, prompt, logits, nil)
		if runs > 0 { // the first run warms caches and page-ins
			total += time.Since(start)
		}
		eng.Pool().Release(seq)
		if err != nil {
			return 0, err
		}
		runs++
	}
	return float64(n*(runs-1)) / total.Seconds(), nil
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
