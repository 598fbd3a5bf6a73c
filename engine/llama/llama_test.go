package llama

import (
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/parallel"
	"github.com/duet-llm/duet/engine/kvcache"
)

// golden is llama2.c's greedy output for "Once upon a time" on stories260K
// (../shared/models/README.md): the prompt's 4 tokens after BOS, then 60
// generated tokens.
var golden = []int32{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310}

type fixture struct {
	m     *Model
	pool  *kvcache.Pool
	state *State
	par   *parallel.Pool
}

func load(t testing.TB, name string, dt kvcache.DType, blocks int, cfg StateConfig) *fixture {
	t.Helper()
	f, err := gguf.Open(enginetest.ModelPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := kvcache.NewPool(kvcache.Layout{DType: dt, BlockTokens: 16, Layers: m.Layers, KVHeads: m.KVHeads, HeadDim: m.HeadDim}, blocks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	par := parallel.New(0)
	t.Cleanup(par.Close)
	st, err := NewState(m, pool, par, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{m: m, pool: pool, state: st, par: par}
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

func TestGoldenGreedy(t *testing.T) {
	fx := load(t, enginetest.Stories260K, kvcache.F32, 64, StateConfig{MaxTokens: 64, MaxSteps: 4})
	seq := &kvcache.Seq{}
	prompt := append([]int32{1}, golden[:4]...)
	if err := fx.pool.Grow(seq, len(golden)+1); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, fx.m.Vocab)
	if err := fx.state.Forward([]Step{{Seq: seq, Tokens: prompt, Logits: logits}}, nil); err != nil {
		t.Fatal(err)
	}
	got := append([]int32(nil), golden[:4]...)
	for len(got) < len(golden) {
		tok := argmax(logits)
		got = append(got, tok)
		if len(got) == len(golden) {
			break
		}
		if err := fx.state.Forward([]Step{{Seq: seq, Tokens: []int32{tok}, Logits: logits}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range golden {
		if got[i] != golden[i] {
			t.Fatalf("token %d: got %d want %d\n got %v\nwant %v", i, got[i], golden[i], got, golden)
		}
	}
}
