// Command duet-synth writes a synthetic Llama model in GGUF: chosen shapes,
// deterministic pseudo-random weights, and the tokenizer of a real model.
//
//	duet-synth --preset 110m --dtype f16 --tokenizer-from ../shared/models/llama-2-tiny-random.gguf --out model.gguf
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/synth"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("duet-synth", flag.ContinueOnError)
	var (
		out    = fs.String("out", "", "path of the GGUF file to write (required)")
		preset = fs.String("preset", "", "start from a preset shape: "+presetNames())
		tokSrc = fs.String("tokenizer-from", "", "real GGUF model whose tokenizer (and vocabulary size) to copy (required)")
		dtype  = fs.String("dtype", "f32", "weight type of the matrices: f32, f16, bf16 or q8_0")
		seed   = fs.Uint64("seed", 1, "seed of the pseudo-random weights")
		s      synth.Spec
	)
	fs.IntVar(&s.Layers, "layers", 0, "transformer blocks")
	fs.IntVar(&s.Dim, "dim", 0, "embedding width")
	fs.IntVar(&s.Heads, "heads", 0, "attention heads")
	fs.IntVar(&s.KVHeads, "kv-heads", 0, "key/value heads (grouped-query attention); 0 = heads")
	fs.IntVar(&s.FFN, "ffn", 0, "feed-forward width")
	fs.IntVar(&s.ContextLen, "context", 0, "context length written to the metadata")
	fs.StringVar(&s.Name, "name", "", "general.name of the model")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || *tokSrc == "" {
		fmt.Fprintln(os.Stderr, "duet-synth: --out and --tokenizer-from are required")
		fs.Usage()
		return 2
	}
	spec := synth.Spec{ContextLen: 2048, Name: "synthetic"}
	if *preset != "" {
		p, ok := synth.Presets[*preset]
		if !ok {
			fmt.Fprintf(os.Stderr, "duet-synth: unknown preset %q (have %s)\n", *preset, presetNames())
			return 2
		}
		spec = p
	}
	override(&spec.Layers, s.Layers)
	override(&spec.Dim, s.Dim)
	override(&spec.Heads, s.Heads)
	override(&spec.KVHeads, s.KVHeads)
	override(&spec.FFN, s.FFN)
	override(&spec.ContextLen, s.ContextLen)
	if s.Name != "" {
		spec.Name = s.Name
	}
	if spec.KVHeads == 0 {
		spec.KVHeads = spec.Heads
	}
	var err error
	if spec.Type, err = synth.ParseType(*dtype); err != nil {
		fmt.Fprintln(os.Stderr, "duet-synth:", err)
		return 2
	}
	spec.Seed = *seed
	src, err := gguf.Open(*tokSrc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "duet-synth:", err)
		return 1
	}
	defer src.Close()
	if err := synth.WriteFile(*out, spec, &src.Metadata); err != nil {
		fmt.Fprintln(os.Stderr, "duet-synth:", err)
		return 1
	}
	st, _ := os.Stat(*out)
	fmt.Printf("wrote %s (%d layers, dim %d, %d/%d heads, ffn %d, %s, %.1f MiB)\n",
		*out, spec.Layers, spec.Dim, spec.Heads, spec.KVHeads, spec.FFN, spec.Type, float64(st.Size())/(1<<20))
	return 0
}

func override(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func presetNames() string {
	var names []string
	for n := range synth.Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
