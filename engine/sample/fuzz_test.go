package sample

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

// FuzzSample feeds request parameters and logits from raw bytes (any float
// bits, NaN and infinities included): New must reject what Validate rejects
// with an error, and Sample must never panic, must agree with the reference,
// and must leave the logits as they were.
func FuzzSample(f *testing.F) {
	f.Add([]byte("\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x80\x3f"), []byte("\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\xc0\x7f"), []byte{1, 0, 1})
	f.Add(make([]byte, 40), []byte("\x00\x00\x80\xff\x00\x00\x80\x7f"), []byte{})
	f.Fuzz(func(t *testing.T, pbytes, lbytes, hist []byte) {
		f32 := func(b []byte, i int) float32 {
			if len(b) < 4*(i+1) {
				return 0
			}
			return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		p := DefaultParams()
		p.Temperature = f32(pbytes, 0)
		p.TopP = f32(pbytes, 2)
		if len(pbytes) < 12 {
			p.TopP = 1
		}
		p.MinP = f32(pbytes, 3)
		p.PresencePenalty = f32(pbytes, 4)
		p.FrequencyPenalty = f32(pbytes, 5)
		if r := f32(pbytes, 6); r != 0 {
			p.RepetitionPenalty = r
		}
		if k := f32(pbytes, 1); k == k && k > -2 && k < 1e6 {
			p.TopK = int(k)
		}
		seed := binary.LittleEndian.Uint64(append(slices.Clone(pbytes), make([]byte, 8)...)[len(pbytes)/2:])
		p.Seed = &seed
		p.Logprobs = len(pbytes)%2 == 1
		if p.Logprobs {
			p.TopLogprobs = len(pbytes) % 21
		}
		// Keep each run short: the reference sorts with maps.
		vocab := min(len(lbytes)/4, 4096)
		hist = hist[:min(len(hist), 256)]
		logits := make([]float32, vocab)
		for i := range logits {
			logits[i] = f32(lbytes, i)
		}
		s, err := New(p, vocab)
		if vocab == 0 {
			if !errors.Is(err, ErrVocab) {
				t.Fatalf("vocab 0: %v", err)
			}
			return
		}
		if verr := p.Validate(); verr != nil {
			if !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("Validate: %v but New: %v", verr, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		var gen []int32
		for _, b := range hist {
			gen = append(gen, int32(int(b)%vocab))
		}
		if err := s.Restore(gen, gen); err != nil {
			t.Fatal(err)
		}
		before := slices.Clone(logits)
		tok, err := s.Sample(logits)
		if !slices.EqualFunc(before, logits, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
			t.Fatal("Sample changed the logits")
		}
		rp := s.Params()
		if rp.Temperature > 0 && math.IsInf(float64(1/rp.Temperature), 1) {
			rp.Temperature = 0 // the sampler reads it as greedy
		}
		want, werr := refSample(rp, s.Seed(), gen, gen, logits)
		if !errors.Is(err, werr) || (err == nil && tok.ID != want) {
			t.Fatalf("params %+v: got %d, %v; reference %d, %v", p, tok.ID, err, want, werr)
		}
		if err == nil && p.Logprobs && len(tok.TopLogprobs) != min(p.TopLogprobs, countNotNaN(refPenalize(rp, gen, gen, logits))) {
			t.Fatalf("%d alternatives for top_logprobs %d", len(tok.TopLogprobs), p.TopLogprobs)
		}
	})
}

func countNotNaN(l []float32) int {
	n := 0
	for _, v := range l {
		if v == v {
			n++
		}
	}
	return n
}
