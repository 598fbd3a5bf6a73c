package sample

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// lmRow makes a row shaped like a language model's: most logits spread
// around 0, a few tokens well above them.
func lmRow(vocab int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	l := make([]float32, vocab)
	for i := range l {
		l[i] = float32(r.NormFloat64() * 2.5)
	}
	for range 20 {
		l[r.IntN(vocab)] += 8 + float32(r.Float64()*6)
	}
	return l
}

// BenchmarkSample measures one Sample call (one output token) at the
// vocabulary sizes of Llama 2 (32000) and Llama 3 (128256). ns/token is the
// figure that matters; "scan" is the floor: one max pass over the row.
func BenchmarkSample(b *testing.B) {
	for _, vocab := range []int{32000, 128256} {
		rows := [4][]float32{}
		for i := range rows {
			rows[i] = lmRow(vocab, uint64(i))
		}
		b.Run(fmt.Sprintf("vocab=%d/scan", vocab), func(b *testing.B) {
			var sink float32
			for i := 0; b.Loop(); i++ {
				sink += maxLogit(rows[i%len(rows)])
			}
			report(b, vocab)
			_ = sink
		})
		for _, c := range []struct {
			name string
			set  func(*Params)
		}{
			{"greedy", func(p *Params) { p.Temperature = 0 }},
			{"top_k=40", func(p *Params) { p.TopK = 40 }},
			{"top_p=0.9", func(p *Params) { p.TopP = 0.9 }},
			{"temperature=0.7", func(p *Params) { p.Temperature = 0.7 }},
			{"min_p=0.05", func(p *Params) { p.MinP = 0.05 }},
			{"top_p=0.9+logprobs=5", func(p *Params) { p.TopP = 0.9; p.Logprobs = true; p.TopLogprobs = 5 }},
			{"top_k=40+penalties", func(p *Params) {
				p.TopK = 40
				p.FrequencyPenalty = 0.5
				p.PresencePenalty = 0.5
				p.RepetitionPenalty = 1.1
			}},
		} {
			b.Run(fmt.Sprintf("vocab=%d/%s", vocab, c.name), func(b *testing.B) {
				p := params(c.set)
				p.Seed = seedp(1)
				s := mustNew(b, p, vocab)
				prompt := make([]int32, 512)
				for i := range prompt {
					prompt[i] = int32(i * 7 % vocab)
				}
				if err := s.Restore(prompt, prompt[:256]); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := s.Sample(rows[i%len(rows)]); err != nil {
						b.Fatal(err)
					}
				}
				report(b, vocab)
			})
		}
	}
}

func report(b *testing.B, vocab int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns, "ns/token")
	b.ReportMetric(ns/float64(vocab), "ns/entry")
}

func BenchmarkStopper(b *testing.B) {
	pieces := []string{"Once", " upon", " a", " time", ",", " there", " was", " a", " <", "/", "x", ">", "\n"}
	b.ReportAllocs()
	for b.Loop() {
		s, _ := NewStopper([]string{"</s>", "\n\n", "###", "User:"})
		for _, p := range pieces {
			s.Push(p)
		}
		s.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pieces)), "ns/push")
}
