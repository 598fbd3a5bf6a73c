package llama

import (
	"fmt"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/kvcache"
)

// BenchmarkDecode is one greedy decode step of stories260K at batch 1 and
// 16, over contexts of 16 to 272 tokens: the per-step costs around the
// arithmetic (dispatch, attention setup) dominate a model this small, and
// the local cluster and the tests run it. It reports tokens/s.
func BenchmarkDecode(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("stories260K/b%d", batch), func(b *testing.B) {
			fx := load(b, enginetest.Stories260K, kvcache.F16, 18*batch+1, StateConfig{MaxTokens: 16 * batch, MaxSteps: batch})
			const prompt, steps = 16, 256
			seqs := make([]*kvcache.Seq, batch)
			lg := make([][]float32, batch)
			toks := make([][]int32, batch)
			for i := range seqs {
				seqs[i] = &kvcache.Seq{}
				if err := fx.pool.Grow(seqs[i], prompt+steps); err != nil {
					b.Fatal(err)
				}
				lg[i] = make([]float32, fx.m.Vocab)
				toks[i] = make([]int32, 1)
			}
			st := make([]Step, batch)
			run := func() {
				for i := range st {
					seqs[i].Len = 0
					p := make([]int32, prompt)
					for j := range p {
						p[j] = int32(1 + (j*31+i*7)%(fx.m.Vocab-1))
					}
					st[i] = Step{Seq: seqs[i], Tokens: p, Logits: lg[i]}
				}
				if err := fx.state.Forward(st, nil); err != nil {
					b.Fatal(err)
				}
				for range steps {
					for i := range st {
						toks[i][0] = argmax(lg[i])
						st[i].Tokens = toks[i]
					}
					if err := fx.state.Forward(st, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			run()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				run()
				n++
			}
			b.ReportMetric(float64(n*steps*batch)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
