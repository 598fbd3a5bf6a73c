package sample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var (
	nan  = float32(math.NaN())
	pinf = float32(math.Inf(1))
	ninf = float32(math.Inf(-1))
)

func seedp(s uint64) *uint64 { return &s }

// params returns DefaultParams changed by f.
func params(f func(*Params)) Params {
	p := DefaultParams()
	if f != nil {
		f(&p)
	}
	return p
}

func mustNew(t testing.TB, p Params, vocab int) *Sampler {
	t.Helper()
	s, err := New(p, vocab)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// logitsOf returns logits whose softmax at temperature 1 is probs.
func logitsOf(probs ...float64) []float32 {
	l := make([]float32, len(probs))
	for i, p := range probs {
		l[i] = float32(math.Log(p))
	}
	return l
}

// drawn samples output token 0 of a fresh sampler with each of n seeds and
// returns how often each token came out.
func drawn(t *testing.T, p Params, logits []float32, n int) map[int32]int {
	t.Helper()
	got := map[int32]int{}
	ws, err := NewWorkspace(len(logits))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(n) {
		p.Seed = seedp(seed)
		s, err := NewWithWorkspace(p, ws)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Sample(logits)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		got[tok.ID]++
	}
	return got
}

func keys(m map[int32]int) []int32 {
	var k []int32
	for id := range m {
		k = append(k, id)
	}
	slices.Sort(k)
	return k
}

func TestGreedy(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
		want   int32
		err    error
	}{
		{"argmax", []float32{1, 3, 2}, 1, nil},
		{"tie takes lowest id", []float32{1, 3, 3, 3}, 1, nil},
		{"tie across lanes", []float32{0, 0, 0, 0, 0, 5, 0, 0, 5, 0, 0, 5, 5}, 5, nil},
		{"tie in tail", []float32{0, 0, 0, 0, 0, 0, 0, 0, 9, 9}, 8, nil},
		{"negative", []float32{-3, -1, -2}, 1, nil},
		{"NaN skipped", []float32{nan, 1, nan, 2, nan}, 3, nil},
		{"NaN first", []float32{nan, -100}, 1, nil},
		{"-Inf and finite", []float32{ninf, ninf, -1e30}, 2, nil},
		{"-0 ties +0", []float32{float32(math.Copysign(0, -1)), 0}, 0, nil},
		{"all NaN", []float32{nan, nan, nan}, 0, ErrNoCandidates},
		{"all -Inf", []float32{ninf, ninf}, 0, ErrNoCandidates},
		{"NaN and -Inf", []float32{ninf, nan, ninf, nan, nan}, 0, ErrNoCandidates},
		{"+Inf", []float32{1, pinf, 2}, 0, ErrInfLogit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, temp := range []float32{0, 1e-40} { // 1/1e-40 overflows: greedy too
				s := mustNew(t, params(func(p *Params) { p.Temperature = temp; p.Seed = seedp(1) }), len(tt.logits))
				tok, err := s.Sample(tt.logits)
				if !errors.Is(err, tt.err) {
					t.Fatalf("T=%v: err = %v, want %v", temp, err, tt.err)
				}
				if err == nil && tok.ID != tt.want {
					t.Fatalf("T=%v: token %d, want %d", temp, tok.ID, tt.want)
				}
				if err != nil && s.Step() != 0 {
					t.Fatalf("failed Sample advanced the sampler to step %d", s.Step())
				}
			}
		})
	}
}

// TestTruncation checks which tokens can come out under each truncation
// parameter: the set drawn over many seeds must be exactly the kept set.
func TestTruncation(t *testing.T) {
	// Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
	base := logitsOf(0.5, 0.3, 0.15, 0.05)
	tests := []struct {
		name string
		set  func(*Params)
		want []int32
	}{
		{"no truncation", nil, []int32{0, 1, 2, 3}},
		{"top_k 1", func(p *Params) { p.TopK = 1 }, []int32{0}},
		{"top_k 2", func(p *Params) { p.TopK = 2 }, []int32{0, 1}},
		{"top_k 3", func(p *Params) { p.TopK = 3 }, []int32{0, 1, 2}},
		{"top_k = vocab is off", func(p *Params) { p.TopK = 4 }, []int32{0, 1, 2, 3}},
		{"top_k -1 is off", func(p *Params) { p.TopK = -1 }, []int32{0, 1, 2, 3}},
		{"top_p tiny keeps one", func(p *Params) { p.TopP = 1e-6 }, []int32{0}},
		{"top_p 0.49 reached by the first", func(p *Params) { p.TopP = 0.49 }, []int32{0}},
		{"top_p 0.51", func(p *Params) { p.TopP = 0.51 }, []int32{0, 1}},
		{"top_p 0.6", func(p *Params) { p.TopP = 0.6 }, []int32{0, 1}},
		{"top_p 0.79 reached by two", func(p *Params) { p.TopP = 0.79 }, []int32{0, 1}},
		{"top_p 0.82", func(p *Params) { p.TopP = 0.82 }, []int32{0, 1, 2}},
		{"top_p 0.81", func(p *Params) { p.TopP = 0.81 }, []int32{0, 1, 2}},
		{"top_p 0.96", func(p *Params) { p.TopP = 0.96 }, []int32{0, 1, 2, 3}},
		{"min_p 0.2 keeps p >= 0.1", func(p *Params) { p.MinP = 0.2 }, []int32{0, 1, 2}},
		{"min_p 0.5 keeps p >= 0.25", func(p *Params) { p.MinP = 0.5 }, []int32{0, 1}},
		{"min_p 0.7", func(p *Params) { p.MinP = 0.7 }, []int32{0}},
		{"min_p 1 keeps the top", func(p *Params) { p.MinP = 1 }, []int32{0}},
		// Renormalized over the top 3: 0.526, 0.316, 0.158 (cumulative 0.842).
		{"top_k 3 then top_p 0.82 of the renormalized three", func(p *Params) { p.TopK = 3; p.TopP = 0.82 }, []int32{0, 1}},
		{"top_k 3 then top_p 0.85", func(p *Params) { p.TopK = 3; p.TopP = 0.85 }, []int32{0, 1, 2}},
		{"top_p then min_p: shorter wins", func(p *Params) { p.TopP = 0.9; p.MinP = 0.5 }, []int32{0, 1}},
		{"min_p then top_p: shorter wins", func(p *Params) { p.TopP = 0.49; p.MinP = 0.2 }, []int32{0}},
		{"low temperature with top_p", func(p *Params) { p.Temperature = 0.5; p.TopP = 0.7 }, []int32{0, 1}},
		{"high temperature with top_p", func(p *Params) { p.Temperature = 2; p.TopP = 0.7 }, []int32{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, shape := range []struct {
				name   string
				logits []float32
				offset int32
			}{
				{"4 tokens", base, 0},
				// The same distribution in a bigger vocabulary of -Inf, so
				// top-k is a real cut and the histogram path sees many tokens.
				{"in 3000 tokens", embed(base, 3000, 1234), 1234},
			} {
				got := keys(drawn(t, params(tt.set), shape.logits, 800))
				want := make([]int32, len(tt.want))
				for i, id := range tt.want {
					want[i] = id + shape.offset
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: drawn %v, want %v", shape.name, got, want)
				}
			}
		})
	}
}

// embed puts l at offset in a row of n -Inf logits.
func embed(l []float32, n, offset int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = ninf
	}
	copy(out[offset:], l)
	return out
}

// TestDistribution checks that tokens are drawn with the right frequencies
// (softmax of logits/T), for the top-k path and the histogram path. The
// seeds are fixed, so the test is deterministic; the bound is 5 standard
// deviations.
func TestDistribution(t *testing.T) {
	probs := []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}
	for _, temp := range []float32{0.5, 1, 1.7} {
		for _, topK := range []int{0, 5} {
			t.Run(fmt.Sprintf("T=%v/top_k=%d", temp, topK), func(t *testing.T) {
				l := logitsOf(probs...)
				want := make([]float64, len(l))
				var z float64
				for i, v := range l {
					if topK > 0 && i >= topK {
						continue
					}
					want[i] = math.Exp(float64(v) / float64(temp))
					z += want[i]
				}
				const n = 6000
				got := drawn(t, params(func(p *Params) { p.Temperature = temp; p.TopK = topK }), l, n)
				for i := range want {
					w := want[i] / z
					f := float64(got[int32(i)]) / n
					if sd := math.Sqrt(w * (1 - w) / n); math.Abs(f-w) > 5*sd+1e-9 {
						t.Errorf("token %d: frequency %.4f, want %.4f (sd %.4f)", i, f, w, sd)
					}
				}
			})
		}
	}
}

func TestPenalties(t *testing.T) {
	// Output so far: token 1 three times, token 2 once; prompt: tokens 2, 3.
	gen := []int32{1, 2, 1, 1}
	prompt := []int32{3, 2, 3}
	logits := []float32{1, 2, -1.5, 4, -2, 0.5}
	tests := []struct {
		name string
		set  func(*Params)
		want []float32
	}{
		{"none", nil, []float32{1, 2, -1.5, 4, -2, 0.5}},
		// OpenAI: logit - count*frequency - presence, output tokens only.
		{"frequency", func(p *Params) { p.FrequencyPenalty = 0.5 }, []float32{1, 2 - 3*0.5, -1.5 - 0.5, 4, -2, 0.5}},
		{"presence", func(p *Params) { p.PresencePenalty = 0.75 }, []float32{1, 2 - 0.75, -1.5 - 0.75, 4, -2, 0.5}},
		{"negative", func(p *Params) { p.FrequencyPenalty = -1; p.PresencePenalty = -2 }, []float32{1, 2 + 3 + 2, -1.5 + 1 + 2, 4, -2, 0.5}},
		{"frequency and presence", func(p *Params) { p.FrequencyPenalty = 0.5; p.PresencePenalty = 1 }, []float32{1, 2 - 1.5 - 1, -1.5 - 0.5 - 1, 4, -2, 0.5}},
		// Repetition: once per distinct token of prompt+output, divide
		// positive, multiply negative.
		{"repetition", func(p *Params) { p.RepetitionPenalty = 2 }, []float32{1, 1, -3, 2, -2, 0.5}},
		{"repetition below 1", func(p *Params) { p.RepetitionPenalty = 0.5 }, []float32{1, 4, -0.75, 8, -2, 0.5}},
		{"repetition then frequency", func(p *Params) { p.RepetitionPenalty = 2; p.FrequencyPenalty = 0.25 }, []float32{1, 1 - 0.75, -3 - 0.25, 2, -2, 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := params(tt.set)
			s := mustNew(t, p, len(logits))
			if err := s.Restore(prompt, gen); err != nil {
				t.Fatal(err)
			}
			l := slices.Clone(logits)
			s.penalize(l)
			if !slices.Equal(l, tt.want) {
				t.Errorf("penalized %v, want %v", l, tt.want)
			}
			if ref := refPenalize(p, prompt, gen, logits); !slices.Equal(ref, tt.want) {
				t.Errorf("reference penalized %v, want %v", ref, tt.want)
			}
			s.unpenalize(l)
			if !slices.Equal(l, logits) {
				t.Errorf("after unpenalize %v, want the original %v", l, logits)
			}
		})
	}
}

// TestPenaltiesSteerGreedy checks penalties end to end: greedy decoding with
// a frequency penalty must move off a token once it has been used enough.
func TestPenaltiesSteerGreedy(t *testing.T) {
	logits := []float32{3, 2, 0}
	s := mustNew(t, params(func(p *Params) { p.Temperature = 0; p.FrequencyPenalty = 0.6 }), 3)
	var got []int32
	for range 6 {
		tok, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tok.ID)
	}
	// counts (c0, c1): logit0 = 3-0.6 c0, logit1 = 2-0.6 c1.
	want := []int32{0, 0, 1, 0, 1, 0}
	if !slices.Equal(got, want) {
		t.Fatalf("tokens %v, want %v", got, want)
	}
	if !slices.Equal(logits, []float32{3, 2, 0}) {
		t.Fatalf("Sample left the caller's logits changed: %v", logits)
	}
}

// model is a deterministic stand-in for a forward pass: logits for the next
// position as a function of the last token, spread over [-4, 4) with about
// one token in 64 lifted by 6 to 10. Built from integer hashing and exact
// float32 steps only, so it is the same on every platform (TestGolden).
type model struct{ vocab int }

func (m model) logits(last int32, out []float32) {
	for i := range out {
		h := mix64(uint64(last)<<32 | uint64(i))
		v := float32(h>>40)*(8.0/(1<<24)) - 4
		if h&63 == 0 {
			v += 6 + float32((h>>8)&3)
		}
		out[i] = v
	}
}

// generate runs s for n tokens from last and returns them.
func generate(t *testing.T, s *Sampler, m model, last int32, n int) []int32 {
	t.Helper()
	l := make([]float32, m.vocab)
	var out []int32
	for range n {
		m.logits(last, l)
		tok, err := s.Sample(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.ID)
		last = tok.ID
	}
	return out
}

func TestSeeds(t *testing.T) {
	m := model{vocab: 500}
	p := params(func(p *Params) { p.TopP = 0.95; p.Seed = seedp(42) })
	a := generate(t, mustNew(t, p, m.vocab), m, 0, 40)
	b := generate(t, mustNew(t, p, m.vocab), m, 0, 40)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different tokens:\n%v\n%v", a, b)
	}
	p.Seed = seedp(43)
	c := generate(t, mustNew(t, p, m.vocab), m, 0, 40)
	if slices.Equal(a, c) {
		t.Fatalf("seeds 42 and 43 gave the same 40 tokens %v", a)
	}

	// Without a seed New draws one; replaying with it gives the same tokens.
	p.Seed = nil
	s1 := mustNew(t, p, m.vocab)
	s2 := mustNew(t, p, m.vocab)
	if s1.Seed() == s2.Seed() {
		t.Fatalf("two unseeded samplers drew the same seed %d", s1.Seed())
	}
	d := generate(t, s1, m, 0, 40)
	p.Seed = seedp(s1.Seed())
	if e := generate(t, mustNew(t, p, m.vocab), m, 0, 40); !slices.Equal(d, e) {
		t.Fatalf("replay with the drawn seed differs:\n%v\n%v", d, e)
	}
	if got := *s1.Params().Seed; got != s1.Seed() {
		t.Fatalf("Params().Seed = %d, Seed() = %d", got, s1.Seed())
	}
}

// TestGolden pins the tokens of one seeded completion. Every machine must
// produce exactly these; a change here breaks prefill/decode handover between
// versions and replays of old requests.
func TestGolden(t *testing.T) {
	m := model{vocab: 1000}
	cases := []struct {
		name string
		set  func(*Params)
		want []int32
	}{
		{"temperature", func(p *Params) { p.Temperature = 1.3 }, nil},
		{"top_k", func(p *Params) { p.TopK = 5 }, nil},
		{"top_p min_p penalties", func(p *Params) {
			p.TopP = 0.9
			p.MinP = 0.05
			p.FrequencyPenalty = 0.5
			p.RepetitionPenalty = 1.1
		}, nil},
	}
	golden := goldenTokens
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := params(c.set)
			p.Seed = seedp(20240601)
			got := generate(t, mustNew(t, p, m.vocab), m, 7, 16)
			if !slices.Equal(got, golden[i]) {
				t.Fatalf("tokens %#v, want %#v", got, golden[i])
			}
		})
	}
}

var goldenTokens = [][]int32{
	{40, 382, 302, 631, 258, 268, 692, 450, 747, 546, 957, 62, 982, 926, 994, 163},
	{40, 382, 787, 230, 233, 796, 345, 281, 272, 958, 341, 480, 729, 118, 390, 384},
	{40, 382, 787, 230, 233, 796, 345, 281, 272, 958, 341, 480, 729, 230, 301, 964},
}

// TestRestore checks the handover: a sampler rebuilt from (params, seed,
// prompt, generated) continues exactly like the one that sampled them.
func TestRestore(t *testing.T) {
	m := model{vocab: 700}
	prompt := []int32{5, 9, 9, 100, 3}
	for _, tc := range []struct {
		name string
		set  func(*Params)
	}{
		{"greedy penalties", func(p *Params) { p.Temperature = 0; p.PresencePenalty = 0.4; p.RepetitionPenalty = 1.3 }},
		{"top_k", func(p *Params) { p.TopK = 20; p.FrequencyPenalty = 1 }},
		{"top_p min_p", func(p *Params) { p.TopP = 0.8; p.MinP = 0.01; p.RepetitionPenalty = 1.2; p.FrequencyPenalty = 0.3 }},
		{"plain", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := params(tc.set)
			p.Seed = nil
			first := mustNew(t, p, m.vocab)
			if err := first.Restore(prompt, nil); err != nil {
				t.Fatal(err)
			}
			all := generate(t, first, m, prompt[len(prompt)-1], 48)
			for _, k := range []int{0, 1, 2, 17, 47} {
				q := p
				q.Seed = seedp(first.Seed())
				s := mustNew(t, q, m.vocab)
				if err := s.Restore(prompt, all[:k]); err != nil {
					t.Fatal(err)
				}
				if s.Step() != k {
					t.Fatalf("Step() = %d after restoring %d tokens", s.Step(), k)
				}
				last := prompt[len(prompt)-1]
				if k > 0 {
					last = all[k-1]
				}
				if rest := generate(t, s, m, last, 48-k); !slices.Equal(rest, all[k:]) {
					t.Fatalf("restored at %d: %v, want %v", k, rest, all[k:])
				}
			}
		})
	}
}

func TestFinish(t *testing.T) {
	l := []float32{0, 5, 1}
	s := mustNew(t, params(func(p *Params) { p.Temperature = 0; p.MaxTokens = 3 }), 3)
	for i, want := range []Finish{NotFinished, NotFinished, FinishLength} {
		tok, err := s.Sample(l)
		if err != nil || tok.Finish != want {
			t.Fatalf("token %d: finish %v err %v, want %v", i, tok.Finish, err, want)
		}
	}
	if _, err := s.Sample(l); !errors.Is(err, ErrFinished) {
		t.Fatalf("Sample after the last token: %v, want ErrFinished", err)
	}

	s = mustNew(t, params(func(p *Params) { p.Temperature = 0; p.StopTokens = []int32{1, 1, 2} }), 3)
	tok, err := s.Sample(l)
	if err != nil || tok.ID != 1 || tok.Finish != FinishStop || tok.Finish.String() != "stop" {
		t.Fatalf("stop token: %+v, %v", tok, err)
	}
	if s.Finished() != FinishStop {
		t.Fatalf("Finished() = %v", s.Finished())
	}
	if FinishLength.String() != "length" || NotFinished.String() != "" {
		t.Fatal("finish reasons do not read as OpenAI's")
	}
}

func TestRestoreErrors(t *testing.T) {
	p := params(func(p *Params) {
		p.Temperature = 0
		p.StopTokens = []int32{2}
		p.MaxTokens = 3
		p.FrequencyPenalty = 1
	})
	tests := []struct {
		name      string
		prompt    []int32
		gen       []int32
		err       error
		finish    Finish
		wantSteps int
	}{
		{"ok", []int32{0, 1}, []int32{0, 1}, nil, NotFinished, 2},
		{"prompt out of range", []int32{5}, nil, ErrToken, NotFinished, 1},
		{"negative", nil, []int32{-1}, ErrToken, NotFinished, 1},
		{"stop before the end", nil, []int32{2, 0}, ErrHistory, NotFinished, 1},
		{"too long", nil, []int32{0, 0, 0, 0}, ErrHistory, NotFinished, 1},
		{"ends with stop", nil, []int32{0, 2}, nil, FinishStop, 2},
		{"at max tokens", nil, []int32{0, 0, 1}, nil, FinishLength, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, p, 3)
			if err := s.Restore(nil, []int32{1}); err != nil {
				t.Fatal(err)
			}
			err := s.Restore(tt.prompt, tt.gen)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if s.Step() != tt.wantSteps || s.Finished() != tt.finish {
				t.Fatalf("step %d finish %v, want %d %v", s.Step(), s.Finished(), tt.wantSteps, tt.finish)
			}
		})
	}
}

func TestSampleErrors(t *testing.T) {
	s := mustNew(t, DefaultParams(), 4)
	if _, err := s.Sample(make([]float32, 3)); !errors.Is(err, ErrLogits) {
		t.Fatalf("short row: %v", err)
	}
	for _, row := range [][]float32{{nan, nan, nan, nan}, {ninf, nan, ninf, ninf}} {
		if _, err := s.Sample(row); !errors.Is(err, ErrNoCandidates) {
			t.Fatalf("%v: %v", row, err)
		}
	}
	if _, err := s.Sample([]float32{0, pinf, 1, nan}); !errors.Is(err, ErrInfLogit) {
		t.Fatalf("+Inf: %v", err)
	}
	k := mustNew(t, params(func(p *Params) { p.TopK = 2 }), 4)
	if _, err := k.Sample([]float32{nan, nan, nan, nan}); !errors.Is(err, ErrNoCandidates) {
		t.Fatalf("top_k, all NaN: %v", err)
	}
	if _, err := k.Sample([]float32{1, pinf, nan, 0}); !errors.Is(err, ErrInfLogit) {
		t.Fatalf("top_k, +Inf: %v", err)
	}
	if s.Step() != 0 || k.Step() != 0 {
		t.Fatal("a failed Sample advanced the sampler")
	}
	// A penalty that turns the only finite logit into -Inf leaves nothing.
	pen := mustNew(t, params(func(p *Params) { p.RepetitionPenalty = 2 }), 2)
	if err := pen.Restore([]int32{0}, nil); err != nil {
		t.Fatal(err)
	}
	row := []float32{-math.MaxFloat32, nan}
	if _, err := pen.Sample(row); !errors.Is(err, ErrNoCandidates) {
		t.Fatalf("penalized to -Inf: %v", err)
	}
	if row[0] != -math.MaxFloat32 {
		t.Fatalf("failed Sample left the logit at %v", row[0])
	}
	if _, err := New(DefaultParams(), 0); !errors.Is(err, ErrVocab) {
		t.Fatalf("vocab 0: %v", err)
	}
	if _, err := New(DefaultParams(), MaxVocab+1); !errors.Is(err, ErrVocab) {
		t.Fatalf("vocab too big: %v", err)
	}
	if _, err := New(params(func(p *Params) { p.StopTokens = []int32{4} }), 4); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("stop token outside the vocabulary: %v", err)
	}
	if _, err := NewWithWorkspace(DefaultParams(), nil); !errors.Is(err, ErrWorkspace) {
		t.Fatalf("nil workspace: %v", err)
	}
}

func TestLogprobs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := make([]float32, 300)
	for i := range l {
		l[i] = float32(r.NormFloat64() * 3)
	}
	l[17], l[40], l[41] = nan, ninf, 9 // 41 is the best
	gen := []int32{41, 3, 41}
	for _, tc := range []struct {
		name string
		set  func(*Params)
	}{
		{"greedy", func(p *Params) { p.Temperature = 0 }},
		{"temperature does not change logprobs", func(p *Params) { p.Temperature = 0.3 }},
		{"top_k", func(p *Params) { p.TopK = 3; p.Temperature = 1.5 }},
		{"penalized", func(p *Params) { p.FrequencyPenalty = 2; p.PresencePenalty = 1; p.TopP = 0.5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := params(tc.set)
			p.Logprobs, p.TopLogprobs, p.Seed = true, 5, seedp(3)
			s := mustNew(t, p, len(l))
			if err := s.Restore(nil, gen); err != nil {
				t.Fatal(err)
			}
			want := refLogprobs(refPenalize(p, nil, gen, l))
			tok, err := s.Sample(l)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(float64(tok.Logprob) - want[tok.ID]); d > 1e-5 {
				t.Errorf("logprob of %d = %v, want %v", tok.ID, tok.Logprob, want[tok.ID])
			}
			order := make([]int, len(l))
			for i := range order {
				order[i] = i
			}
			order = slices.DeleteFunc(order, func(i int) bool { return math.IsNaN(want[i]) })
			slices.SortStableFunc(order, func(a, b int) int {
				switch {
				case want[a] > want[b]:
					return -1
				case want[a] < want[b]:
					return 1
				}
				return 0
			})
			if len(tok.TopLogprobs) != 5 {
				t.Fatalf("%d alternatives, want 5", len(tok.TopLogprobs))
			}
			for j, alt := range tok.TopLogprobs {
				if int(alt.ID) != order[j] || math.Abs(float64(alt.Logprob)-want[alt.ID]) > 1e-5 {
					t.Errorf("alternative %d: %+v, want id %d logprob %v", j, alt, order[j], want[order[j]])
				}
			}
		})
	}
	// Logprobs off: zero, no alternatives.
	s := mustNew(t, DefaultParams(), len(l))
	tok, err := s.Sample(l)
	if err != nil || tok.Logprob != 0 || tok.TopLogprobs != nil {
		t.Fatalf("logprobs off: %+v %v", tok, err)
	}
}

// TestMatchesReference runs the fast paths against refSample on random rows
// and parameters: they must pick exactly the same token.
func TestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	n := 400
	if testing.Short() {
		n = 100
	}
	for trial := range n {
		vocab := 1 + r.IntN(3000)
		l := randomRow(r, vocab)
		p := randomParams(r, vocab)
		prompt := randomTokens(r, vocab, r.IntN(20))
		gen := randomTokens(r, vocab, r.IntN(30))
		p.StopTokens = nil
		s, err := New(p, vocab)
		if err != nil {
			t.Fatalf("trial %d: New(%+v): %v", trial, p, err)
		}
		if err := s.Restore(prompt, gen); err != nil {
			t.Fatal(err)
		}
		want, werr := refSample(s.Params(), s.Seed(), prompt, gen, l)
		before := slices.Clone(l)
		tok, err := s.Sample(l)
		if !errors.Is(err, werr) || (err == nil && tok.ID != want) {
			t.Fatalf("trial %d (vocab %d, %+v): got %d, %v; reference %d, %v", trial, vocab, p, tok.ID, err, want, werr)
		}
		if !slices.EqualFunc(before, l, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
			t.Fatalf("trial %d: Sample changed the logits", trial)
		}
	}
}

// randomRow makes a row of one of several shapes: LM-like (a few strong
// tokens over a Gaussian), flat, with many ties, or with NaN and -Inf.
func randomRow(r *rand.Rand, n int) []float32 {
	l := make([]float32, n)
	switch r.IntN(5) {
	case 0: // LM-like
		for i := range l {
			l[i] = float32(r.NormFloat64() * 2.5)
		}
		for range 1 + r.IntN(10) {
			l[r.IntN(n)] += 5 + float32(r.Float64()*10)
		}
	case 1: // flat
		for i := range l {
			l[i] = float32(r.Float64() * 0.01)
		}
	case 2: // ties
		for i := range l {
			l[i] = float32(r.IntN(4))
		}
	case 3: // holes
		for i := range l {
			switch r.IntN(6) {
			case 0:
				l[i] = nan
			case 1:
				l[i] = ninf
			default:
				l[i] = float32(r.NormFloat64() * 4)
			}
		}
	case 4: // wide range
		for i := range l {
			l[i] = float32(r.NormFloat64() * 40)
		}
	}
	return l
}

func randomParams(r *rand.Rand, vocab int) Params {
	p := DefaultParams()
	p.Seed = seedp(r.Uint64())
	pick := func(xs ...float32) float32 { return xs[r.IntN(len(xs))] }
	p.Temperature = pick(0, 0.1, 0.7, 1, 1.5, 2)
	if r.IntN(2) == 0 {
		p.TopK = []int{1, 2, 5, 40, vocab / 2, vocab, vocab + 5}[r.IntN(7)]
	}
	p.TopP = pick(1, 1, 0.95, 0.9, 0.5, 0.1, 1e-4)
	p.MinP = pick(0, 0, 0.01, 0.05, 0.3, 1)
	p.PresencePenalty = pick(0, 0, 0.5, -1, 2)
	p.FrequencyPenalty = pick(0, 0, 0.3, -0.5, 2)
	p.RepetitionPenalty = pick(1, 1, 1.1, 1.5, 0.8)
	return p
}

func randomTokens(r *rand.Rand, vocab, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

func TestSharedWorkspace(t *testing.T) {
	m := model{vocab: 400}
	ws, err := NewWorkspace(m.vocab)
	if err != nil {
		t.Fatal(err)
	}
	p := params(func(p *Params) { p.TopP = 0.9; p.Seed = seedp(5) })
	own := generate(t, mustNew(t, p, m.vocab), m, 1, 20)
	a, err := NewWithWorkspace(p, ws)
	if err != nil {
		t.Fatal(err)
	}
	q := p
	q.Seed = seedp(6)
	b, err := NewWithWorkspace(q, ws)
	if err != nil {
		t.Fatal(err)
	}
	// Interleave a and b on one workspace; a must still match its own run.
	l := make([]float32, m.vocab)
	last := int32(1)
	for i := range 20 {
		m.logits(last, l)
		ta, err := a.Sample(l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Sample(l); err != nil {
			t.Fatal(err)
		}
		if ta.ID != own[i] {
			t.Fatalf("token %d: %d with a shared workspace, %d alone", i, ta.ID, own[i])
		}
		last = ta.ID
	}
}

// TestNoAllocs checks the decode hot path: Sample allocates nothing once the
// sampler is built, with or without logprobs and penalties.
func TestNoAllocs(t *testing.T) {
	m := model{vocab: 5000}
	l := make([]float32, m.vocab)
	m.logits(3, l)
	for _, tc := range []struct {
		name string
		set  func(*Params)
	}{
		{"greedy", func(p *Params) { p.Temperature = 0 }},
		{"top_k", func(p *Params) { p.TopK = 40 }},
		{"top_p", func(p *Params) { p.TopP = 0.9 }},
		{"min_p", func(p *Params) { p.MinP = 0.05 }},
		{"temperature only", func(p *Params) { p.Temperature = 0.8 }},
		{"logprobs", func(p *Params) { p.Logprobs = true; p.TopLogprobs = 20; p.TopP = 0.9 }},
		{"penalties", func(p *Params) {
			p.FrequencyPenalty = 0.5
			p.PresencePenalty = 0.5
			p.RepetitionPenalty = 1.2
			p.TopK = 40
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := params(tc.set)
			p.MaxTokens = 1000
			s := mustNew(t, p, m.vocab)
			if err := s.Restore([]int32{1, 2, 3, 4, 5}, nil); err != nil {
				t.Fatal(err)
			}
			if got := testing.AllocsPerRun(200, func() {
				if _, err := s.Sample(l); err != nil {
					t.Fatal(err)
				}
			}); got != 0 {
				t.Fatalf("%v allocations per Sample", got)
			}
		})
	}
}

// TestExactBoundaries checks the cuts where a running sum of mass lands
// exactly on a boundary: equal logits have equal masses, so these are exact.
func TestExactBoundaries(t *testing.T) {
	// Uniform(halfSeed, 0) is exactly 0.5.
	const halfSeed = 21486860
	if u := Uniform(halfSeed, 0); u != 0.5 {
		t.Fatalf("Uniform(halfSeed, 0) = %v", u)
	}
	for _, shape := range []struct {
		name   string
		logits []float32
		topK   int
		offset int32
	}{
		{"histogram path", []float32{0, 0}, 0, 0},
		{"top-k path", embed([]float32{0, 0}, 100, 40), 3, 40},
	} {
		t.Run(shape.name, func(t *testing.T) {
			first, second := shape.offset, shape.offset+1
			// Two tokens of mass m: the draw point is exactly m, the running
			// sum after the first; the first token whose sum exceeds it is
			// the second.
			p := params(func(p *Params) { p.TopK = shape.topK; p.Seed = seedp(halfSeed) })
			if tok, err := mustNew(t, p, len(shape.logits)).Sample(shape.logits); err != nil || tok.ID != second {
				t.Fatalf("draw at exactly half: token %d, %v; want %d", tok.ID, err, second)
			}
			// top_p 0.5 is reached exactly by the first token.
			got := keys(drawn(t, params(func(p *Params) { p.TopP = 0.5; p.TopK = shape.topK }), shape.logits, 200))
			if !slices.Equal(got, []int32{first}) {
				t.Fatalf("top_p 0.5: drawn %v, want [%d]", got, first)
			}
			// min_p 1 keeps every token tied with the most likely.
			got = keys(drawn(t, params(func(p *Params) { p.MinP = 1; p.TopK = shape.topK }), shape.logits, 200))
			if !slices.Equal(got, []int32{first, second}) {
				t.Fatalf("min_p 1: drawn %v, want [%d %d]", got, first, second)
			}
		})
	}
}
