package tokenizer

import (
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
)

// loadModel builds the tokenizer of a shared model file (once per name).
func loadModel(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	path := enginetest.ModelPath(tb, name)
	modelMu.Lock()
	defer modelMu.Unlock()
	if tk, ok := models[name]; ok {
		return tk
	}
	f, err := gguf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	tk, err := FromGGUF(&f.Metadata)
	if err != nil {
		tb.Fatal(err)
	}
	models[name] = tk
	return tk
}

// availableModels returns the tokenizers of the shared model files when
// the shared folder is there, and none (without skipping) when it is not,
// so tests that also cover test-built vocabularies still run.
func availableModels(tb testing.TB) []*Tokenizer {
	tb.Helper()
	if _, ok := enginetest.ModelsDir(); !ok {
		return nil
	}
	return []*Tokenizer{loadModel(tb, enginetest.Stories260K), loadModel(tb, enginetest.TinyRandomF16)}
}

var (
	modelMu sync.Mutex
	models  = map[string]*Tokenizer{}
)

// bpeVocab describes a byte-level BPE vocabulary built in a test.
type bpeVocab struct {
	pre      string
	tokens   []string
	types    []int32
	merges   []string
	bos, eos int64 // -1: key absent
	extra    map[string]any
}

// metadata renders the vocabulary as GGUF metadata: the 256 byte-level
// characters first (ids 0..255 in byte order), then the merge results,
// then the specials.
func (v bpeVocab) metadata(tb testing.TB) *gguf.Metadata {
	tb.Helper()
	var md gguf.Metadata
	set := func(k string, x any) {
		if err := md.Set(k, x); err != nil {
			tb.Fatal(err)
		}
	}
	set("tokenizer.ggml.model", "gpt2")
	if v.pre != "" {
		set("tokenizer.ggml.pre", v.pre)
	}
	set("tokenizer.ggml.tokens", v.tokens)
	set("tokenizer.ggml.token_type", v.types)
	set("tokenizer.ggml.merges", v.merges)
	if v.bos >= 0 {
		set("tokenizer.ggml.bos_token_id", uint32(v.bos))
	}
	if v.eos >= 0 {
		set("tokenizer.ggml.eos_token_id", uint32(v.eos))
	}
	keys := make([]string, 0, len(v.extra))
	for k := range v.extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, v.extra[k])
	}
	return &md
}

func (v bpeVocab) build(tb testing.TB) *Tokenizer {
	tb.Helper()
	tk, err := FromGGUF(v.metadata(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

// newBPEVocab starts a byte-level vocabulary with the 256 byte characters
// and the given merges (each merge's result is added as a token).
func newBPEVocab(pre string, merges []string) bpeVocab {
	v := bpeVocab{pre: pre, bos: -1, eos: -1}
	seen := map[string]bool{}
	add := func(s string, ty int32) {
		if seen[s] {
			return
		}
		seen[s] = true
		v.tokens = append(v.tokens, s)
		v.types = append(v.types, ty)
	}
	for b := 0; b < 256; b++ {
		add(byteToUnicode[b], int32(TypeNormal))
	}
	for _, m := range merges {
		l, r, _ := strings.Cut(m, " ")
		add(l+r, int32(TypeNormal))
	}
	v.merges = merges
	return v
}

// withSpecial appends a token and returns its id.
func (v *bpeVocab) withSpecial(text string, ty TokenType) int64 {
	v.tokens = append(v.tokens, text)
	v.types = append(v.types, int32(ty))
	return int64(len(v.tokens) - 1)
}

// trainMerges learns n byte-level BPE merges from corpus, split with pre:
// the most frequent adjacent pair (ties: the smaller pair) merges first.
// It is a tiny reference trainer for test vocabularies, not a fast one.
func trainMerges(corpus string, pre preTokenizer, n int) []string {
	counts := map[string]int{}
	start := int32(0)
	for _, e := range pre.split(corpus, nil) {
		counts[corpus[start:e]]++
		start = e
	}
	type word struct {
		syms  []string
		count int
	}
	var words []word
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var syms []string
		for i := 0; i < len(k); i++ {
			syms = append(syms, byteToUnicode[k[i]])
		}
		words = append(words, word{syms, counts[k]})
	}
	var merges []string
	for len(merges) < n {
		pairs := map[[2]string]int{}
		for _, w := range words {
			for i := 1; i < len(w.syms); i++ {
				pairs[[2]string{w.syms[i-1], w.syms[i]}] += w.count
			}
		}
		var best [2]string
		bestN := 0
		for p, c := range pairs {
			if c > bestN || c == bestN && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bestN = p, c
			}
		}
		if bestN < 2 {
			break
		}
		merges = append(merges, best[0]+" "+best[1])
		for wi := range words {
			s := words[wi].syms
			out := s[:0:0]
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, s[i]+s[i+1])
					i++
				} else {
					out = append(out, s[i])
				}
			}
			words[wi].syms = out
		}
	}
	return merges
}

// englishText is a few KiB of plain English for training and benchmarks.
const englishText = `Once upon a time, in a small village at the edge of a great forest, there lived a girl named Lily. She loved to play outside in the park with her friends, and every morning she would run down the hill to see what the day would bring. One day, she saw a big, red ball stuck high up in a tree. "I want to play with it!" she said, but it was too high for her to reach.
Lily's mom came out of the house and looked up at the tree. "Don't worry," she said. "We'll find a way to get it down." They tried to shake the branches, they tried to throw a stick, and they even asked the tall man who lived next door. He laughed and said he'd help, but his ladder was broken.
The sun went down and the stars came out. Lily sat by the window and thought about the ball. She wasn't sad; she was thinking. In the morning she had an idea: she would ask the birds. The birds in the forest were her friends, and they knew every tree in the village.
So Lily went to the forest and sang the song her grandmother had taught her. One by one, the birds came: a blue one, a brown one, and a little yellow one with a loud voice. "Can you help me?" Lily asked. The birds flew to the tree and pushed the ball with their wings until it fell into Lily's arms.
Everyone in the village cheered. From that day on, Lily and the birds played together in the park, and the big, red ball was the best toy they ever had. The end.
In 2023 the village counted 1,234 people, 56 dogs and 789 cats; by 2024 there were 1,250 people. The school opened at 8:30 and closed at 15:45, and the bus cost $2.50 (or 2.10 EUR).
`

var (
	trainedOnce   sync.Once
	trainedMerges []string
)

// trainedVocab is a byte-level vocabulary with merges learned from
// englishText and Llama 3 style special tokens.
func trainedVocab(pre string) bpeVocab {
	trainedOnce.Do(func() { trainedMerges = trainMerges(strings.Repeat(englishText, 2), preLlama3, 600) })
	v := newBPEVocab(pre, trainedMerges)
	v.bos = v.withSpecial("<|begin_of_text|>", TypeControl)
	v.eos = v.withSpecial("<|end_of_text|>", TypeControl)
	v.withSpecial("<|start_header_id|>", TypeControl)
	v.withSpecial("<|end_header_id|>", TypeControl)
	v.withSpecial("<|eot_id|>", TypeControl)
	v.withSpecial("<|im_end|>", TypeUserDefined) // a converter's mistake: must still act as control
	v.withSpecial("<tool>", TypeUserDefined)
	v.withSpecial("<|reserved|>", TypeUnused)
	return v
}

func spmMetadata(tb testing.TB, tokens []string, types []int32, scores []float32) *gguf.Metadata {
	tb.Helper()
	var md gguf.Metadata
	for _, kv := range []struct {
		k string
		v any
	}{
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.unknown_token_id", uint32(0)},
	} {
		if err := md.Set(kv.k, kv.v); err != nil {
			tb.Fatal(err)
		}
	}
	return &md
}
