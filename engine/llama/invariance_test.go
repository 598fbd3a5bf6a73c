package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/kvcache"
)

// The batch-invariance contract: a sequence's logits are bit-identical
// whatever else is in its batch, however its prompt was chunked, and
// whether its KV was computed here or installed from another instance.

const decodeSteps = 6

// trace is the logits of a sequence after its prompt and after each
// greedy decode step.
type trace [][]float32

func prompts(vocab int, seed uint64) [][]int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	lens := []int{1, 2, 5, 16, 17, 31, 48, 70, 3, 100, 9, 33}
	out := make([][]int32, len(lens))
	for i, n := range lens {
		p := []int32{1}
		for len(p) < n {
			p = append(p, int32(3+r.IntN(vocab-3)))
		}
		out[i] = p
	}
	return out
}

// alone runs each prompt by itself, in one prefill call, then decodes.
func alone(t *testing.T, fx *fixture, ps [][]int32) []trace {
	out := make([]trace, len(ps))
	for i, p := range ps {
		seq := &kvcache.Seq{}
		if err := fx.pool.Grow(seq, len(p)+decodeSteps); err != nil {
			t.Fatal(err)
		}
		lg := make([]float32, fx.m.Vocab)
		must(t, fx.state.Forward([]Step{{Seq: seq, Tokens: p, Logits: lg}}, nil))
		out[i] = append(out[i], append([]float32(nil), lg...))
		for range decodeSteps {
			must(t, fx.state.Forward([]Step{{Seq: seq, Tokens: []int32{argmax(lg)}, Logits: lg}}, nil))
			out[i] = append(out[i], append([]float32(nil), lg...))
		}
		must(t, fx.pool.Release(seq))
	}
	return out
}

// together prefills prompts in chunks of chunk tokens, batching every
// sequence's chunk into one call, starting sequence i only after i
// calls (so prefill chunks share batches with other sequences' decode
// steps), and decodes all of them in shared batches.
func together(t *testing.T, fx *fixture, ps [][]int32, chunk int) []trace {
	n := len(ps)
	seqs := make([]*kvcache.Seq, n)
	done := make([]int, n) // prompt tokens consumed
	lg := make([][]float32, n)
	out := make([]trace, n)
	for i, p := range ps {
		seqs[i] = &kvcache.Seq{}
		if err := fx.pool.Grow(seqs[i], len(p)+decodeSteps); err != nil {
			t.Fatal(err)
		}
		lg[i] = make([]float32, fx.m.Vocab)
	}
	for call := 0; ; call++ {
		var steps []Step
		var who []int
		for i, p := range ps {
			if i > call || len(out[i]) > decodeSteps {
				continue
			}
			if done[i] < len(p) {
				c := min(chunk, len(p)-done[i])
				st := Step{Seq: seqs[i], Tokens: p[done[i] : done[i]+c]}
				if done[i]+c == len(p) {
					st.Logits = lg[i]
				}
				done[i] += c
				steps = append(steps, st)
			} else {
				steps = append(steps, Step{Seq: seqs[i], Tokens: []int32{argmax(lg[i])}, Logits: lg[i]})
			}
			who = append(who, i)
		}
		if len(steps) == 0 {
			break
		}
		must(t, fx.state.Forward(steps, nil))
		for k, st := range steps {
			if st.Logits != nil {
				out[who[k]] = append(out[who[k]], append([]float32(nil), lg[who[k]]...))
			}
		}
	}
	for _, s := range seqs {
		must(t, fx.pool.Release(s))
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sameTrace(t *testing.T, what string, want, got []trace) {
	t.Helper()
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s: sequence %d has %d steps, want %d", what, i, len(got[i]), len(want[i]))
		}
		for s := range want[i] {
			for v := range want[i][s] {
				if math.Float32bits(want[i][s][v]) != math.Float32bits(got[i][s][v]) {
					t.Fatalf("%s: sequence %d step %d logit %d: %v != %v", what, i, s, v, got[i][s][v], want[i][s][v])
				}
			}
		}
	}
}

func TestBatchAndChunkInvariance(t *testing.T) {
	for _, model := range []string{enginetest.Stories260K, enginetest.TinyRandomF16} {
		for _, dt := range []kvcache.DType{kvcache.F32, kvcache.F16, kvcache.I8} {
			t.Run(fmt.Sprintf("%s/%s", model, dt), func(t *testing.T) {
				fx := load(t, model, dt, 256, StateConfig{MaxTokens: 512, MaxSteps: 16})
				ps := prompts(fx.m.Vocab, uint64(dt)+7)
				want := alone(t, fx, ps)
				for _, chunk := range []int{1, 7, 16, 512} {
					sameTrace(t, fmt.Sprintf("chunk %d", chunk), want, together(t, fx, ps, chunk))
				}
			})
		}
	}
}

// TestBatchOf16 decodes 16 sequences in one batch.
func TestBatchOf16(t *testing.T) {
	fx := load(t, enginetest.Stories260K, kvcache.F16, 256, StateConfig{MaxTokens: 1024, MaxSteps: 16})
	ps := append(prompts(fx.m.Vocab, 3), prompts(fx.m.Vocab, 4)[:4]...)
	if len(ps) != 16 {
		t.Fatalf("%d prompts", len(ps))
	}
	sameTrace(t, "batch 16", alone(t, fx, ps), together(t, fx, ps, 1024))
}

// TestExportInstall prefills in one instance, ships each layer's slots as
// the layer completes into blocks reserved in a second instance, and
// decodes there: the logits equal decoding in the first.
func TestExportInstall(t *testing.T) {
	for _, dt := range []kvcache.DType{kvcache.F32, kvcache.F16, kvcache.I8} {
		t.Run(dt.String(), func(t *testing.T) {
			a := load(t, enginetest.Stories260K, dt, 64, StateConfig{MaxTokens: 256, MaxSteps: 4})
			b := load(t, enginetest.Stories260K, dt, 96, StateConfig{MaxTokens: 256, MaxSteps: 4})
			// Occupy some of b's blocks so the reserved ids differ from a's.
			if _, err := b.pool.Alloc(13); err != nil {
				t.Fatal(err)
			}
			for _, p := range prompts(a.m.Vocab, 11)[5:9] {
				want := alone(t, a, [][]int32{p})[0]

				src, dst := &kvcache.Seq{}, &kvcache.Seq{}
				must(t, a.pool.Grow(src, len(p)+decodeSteps))
				must(t, b.pool.Grow(dst, len(p)+decodeSteps))
				lg := make([]float32, a.m.Vocab)
				shipped := 0
				var slots [][]byte
				must(t, a.state.Forward([]Step{{Seq: src, Tokens: p, Logits: lg}}, func(layer int) {
					slots = a.pool.LayerSlots(slots[:0], src, layer)
					for i, s := range slots {
						must(t, b.pool.Install(layer, dst.Blocks[i], s))
					}
					shipped++
				}))
				if shipped != a.m.Layers {
					t.Fatalf("onLayer called %d times for %d layers", shipped, a.m.Layers)
				}
				dst.Len = src.Len
				got := trace{append([]float32(nil), lg...)}
				for range decodeSteps {
					must(t, b.state.Forward([]Step{{Seq: dst, Tokens: []int32{argmax(lg)}, Logits: lg}}, nil))
					got = append(got, append([]float32(nil), lg...))
				}
				sameTrace(t, "installed", []trace{want}, []trace{got})
				must(t, a.pool.Release(src))
				must(t, b.pool.Release(dst))
			}
		})
	}
}
