package llama

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/internal/parallel"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/synth"
)

// TestGoldenLogits pins the exact bits of the forward pass: for every KV
// dtype, on the shared real models and on synthetic models whose head
// dimensions exercise the kernels' full and partial vectors, a few prompts
// (one longer than several KV blocks and query tiles) are prefilled in
// chunks and decoded; the SHA-256 of all their logits must equal the one
// recorded in testdata/golden_logits.txt. A kernel or forward-pass change
// that moves a single bit fails here, whichever implementation runs.
//
// Record new hashes (only for an intended change of the arithmetic) with
//
//	go test ./engine/llama -run TestGoldenLogits -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden_logits.txt")

const goldenFile = "testdata/golden_logits.txt"

// goldenModel is one model of the golden suite: a shared file, or a
// synthetic spec written in memory with stories260K's tokenizer.
type goldenModel struct {
	name  string
	file  string
	spec  synth.Spec
	long  int // length of the long prompt
	chunk int // prefill chunk
}

var goldenModels = []goldenModel{
	{name: "stories260K", file: enginetest.Stories260K, long: 300, chunk: 64},
	{name: "tiny-random-f16", file: enginetest.TinyRandomF16, long: 200, chunk: 48},
	// Head dimension 64 (two heads share one KV head): full 16-lane vectors.
	{name: "synth-hd64", spec: synth.Spec{Name: "g64", Layers: 2, Dim: 128, Heads: 2, KVHeads: 1, FFN: 160, ContextLen: 512, Type: gguf.TypeF16, Seed: 5}, long: 330, chunk: 100},
	// Head dimension 40: two full vectors and a partial one.
	{name: "synth-hd40", spec: synth.Spec{Name: "g40", Layers: 2, Dim: 120, Heads: 3, KVHeads: 3, FFN: 96, ContextLen: 512, Type: gguf.TypeF32, Seed: 6}, long: 150, chunk: 37},
}

func TestGoldenLogits(t *testing.T) {
	impls := kernel.Available()
	if *updateGolden {
		impls = impls[:1]
	}
	prev := kernel.Name()
	defer kernel.Use(prev)
	for _, impl := range impls {
		if err := kernel.Use(impl); err != nil {
			t.Fatal(err)
		}
		t.Run(impl, testGolden)
	}
}

func testGolden(t *testing.T) {
	got := map[string]string{}
	for _, gm := range goldenModels {
		m := goldenLoad(t, gm)
		for _, dt := range []kvcache.DType{kvcache.F32, kvcache.F16, kvcache.I8} {
			got[gm.name+"/"+dt.String()] = goldenRun(t, m, dt, gm.long, gm.chunk)
		}
	}
	if *updateGolden {
		var b strings.Builder
		b.WriteString("# SHA-256 of the logits of TestGoldenLogits (model/kv-dtype); regenerate with -update-golden\n")
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %s\n", k, got[k])
		}
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (kernel %s)", goldenFile, kernel.Name())
		return
	}
	want := readGolden(t)
	for k, h := range got {
		w, ok := want[k]
		if !ok {
			t.Errorf("%s: no recorded hash (run with -update-golden)", k)
			continue
		}
		if h != w {
			t.Errorf("%s: logits hash %s, recorded %s (kernel %s)", k, h, w, kernel.Name())
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("%s: recorded but not computed", k)
		}
	}
}

func readGolden(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s: bad line %q", goldenFile, line)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func goldenLoad(t *testing.T, gm goldenModel) *Model {
	t.Helper()
	var f *gguf.File
	var err error
	if gm.file != "" {
		f, err = gguf.Open(enginetest.ModelPath(t, gm.file))
	} else {
		var src *gguf.File
		src, err = gguf.Open(enginetest.ModelPath(t, enginetest.Stories260K))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		err = synth.Write(&buf, gm.spec, &src.Metadata)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		f, err = gguf.Parse(buf.Bytes())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// goldenRun prefills three prompts (1 token, 21 tokens, long tokens) in
// chunks, the two short ones in one batch with the long one's first
// chunk, then decodes all three together for a few steps, and returns the
// hash of every logit produced.
func goldenRun(t *testing.T, m *Model, dt kvcache.DType, long, chunk int) string {
	t.Helper()
	const decode = 4
	pool, err := kvcache.NewPool(kvcache.Layout{DType: dt, BlockTokens: 16, Layers: m.Layers, KVHeads: m.KVHeads, HeadDim: m.HeadDim}, 3*((long+decode)/16+2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	par := parallel.New(0)
	defer par.Close()
	st, err := NewState(m, pool, par, StateConfig{MaxTokens: chunk + 32, MaxSteps: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(long), uint64(m.Vocab)))
	var ps [3][]int32
	for i, n := range []int{1, 21, long} {
		ps[i] = []int32{1}
		for len(ps[i]) < n {
			ps[i] = append(ps[i], int32(3+r.IntN(m.Vocab-3)))
		}
	}
	h := sha256.New()
	var seqs [3]*kvcache.Seq
	var lg [3][]float32
	for i := range seqs {
		seqs[i] = &kvcache.Seq{}
		must(t, pool.Grow(seqs[i], len(ps[i])+decode))
		lg[i] = make([]float32, m.Vocab)
	}
	emit := func(x []float32) {
		for _, v := range x {
			binary.Write(h, binary.LittleEndian, math.Float32bits(v))
		}
	}
	// Prefill: the short prompts ride along with the long one's first chunk.
	must(t, st.Forward([]Step{
		{Seq: seqs[0], Tokens: ps[0], Logits: lg[0]},
		{Seq: seqs[2], Tokens: ps[2][:chunk]},
		{Seq: seqs[1], Tokens: ps[1], Logits: lg[1]},
	}, nil))
	emit(lg[0])
	emit(lg[1])
	for done := chunk; done < long; done += chunk {
		end := min(done+chunk, long)
		s := Step{Seq: seqs[2], Tokens: ps[2][done:end]}
		if end == long {
			s.Logits = lg[2]
		}
		must(t, st.Forward([]Step{s}, nil))
	}
	emit(lg[2])
	for range decode {
		steps := make([]Step, 3)
		for i := range steps {
			steps[i] = Step{Seq: seqs[i], Tokens: []int32{argmax(lg[i])}, Logits: lg[i]}
		}
		must(t, st.Forward(steps, nil))
		for i := range lg {
			emit(lg[i])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
