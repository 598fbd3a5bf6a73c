package sample

import (
	"math"
	"math/big"
	"sort"
)

// refSample is the definition of what Sample returns, written the slow and
// obvious way: penalties from maps, a full sort of the vocabulary, running
// sums with big integers. The fast paths must agree with it exactly.
func refSample(p Params, seed uint64, prompt, gen []int32, logits []float32) (int32, error) {
	l := refPenalize(p, prompt, gen, logits)
	if p.Temperature == 0 {
		best, bi := float32(math.Inf(-1)), -1
		for i, v := range l {
			if v > best {
				best, bi = v, i
			}
		}
		if bi < 0 {
			return 0, ErrNoCandidates
		}
		if math.IsInf(float64(best), 1) {
			return 0, ErrInfLogit
		}
		return int32(bi), nil
	}
	var ids []int32
	for i, v := range l {
		if !math.IsNaN(float64(v)) {
			ids = append(ids, int32(i))
		}
	}
	if len(ids) == 0 {
		return 0, ErrNoCandidates
	}
	sort.SliceStable(ids, func(a, b int) bool { return l[ids[a]] > l[ids[b]] })
	lmax := l[ids[0]]
	if math.IsInf(float64(lmax), -1) {
		return 0, ErrNoCandidates
	}
	if math.IsInf(float64(lmax), 1) {
		return 0, ErrInfLogit
	}
	if p.TopK > 0 && p.TopK < len(l) && p.TopK < len(ids) {
		ids = ids[:p.TopK]
	}
	invT := 1 / p.Temperature
	pr := make(map[int32]float32, len(ids))
	for _, id := range ids {
		pr[id] = prob(float32(l[id]-lmax) * invT)
	}
	sort.Slice(ids, func(a, b int) bool {
		pa, pb := pr[ids[a]], pr[ids[b]]
		return pa > pb || (pa == pb && ids[a] < ids[b])
	})
	cum := make([]uint64, len(ids))
	var c uint64
	for j, id := range ids {
		c += uint64(math.Floor(float64(pr[id]) * (1 << massShift)))
		cum[j] = c
	}
	z := c
	kept := z
	if p.TopP < 1 {
		tgt := uint64(math.Ceil(float64(p.TopP) * float64(z)))
		tgt = max(1, min(tgt, z))
		for _, cj := range cum {
			if cj >= tgt {
				kept = cj
				break
			}
		}
	}
	if p.MinP > 0 {
		var cm uint64
		for j, id := range ids {
			if pr[id] >= p.MinP {
				cm = cum[j]
			}
		}
		kept = min(kept, cm)
	}
	u := new(big.Int).SetUint64(mix64(mix64(seed)+uint64(len(gen)+1)*0x9e3779b97f4a7c15) >> 40)
	r := u.Mul(u, new(big.Int).SetUint64(kept))
	r.Rsh(r, 24)
	for j, cj := range cum {
		if new(big.Int).SetUint64(cj).Cmp(r) > 0 {
			return ids[j], nil
		}
	}
	panic("reference: draw point beyond the kept mass")
}

// refPenalize returns penalized copies of the logits, from maps.
func refPenalize(p Params, prompt, gen []int32, logits []float32) []float32 {
	l := append([]float32(nil), logits...)
	count := map[int32]int{}
	for _, id := range gen {
		count[id]++
	}
	if p.RepetitionPenalty != 1 {
		seen := map[int32]bool{}
		for _, id := range append(append([]int32(nil), prompt...), gen...) {
			if seen[id] {
				continue
			}
			seen[id] = true
			if l[id] > 0 {
				l[id] /= p.RepetitionPenalty
			} else {
				l[id] *= p.RepetitionPenalty
			}
		}
	}
	for id, c := range count {
		v := l[id] - float32(float32(c)*p.FrequencyPenalty)
		l[id] = v - p.PresencePenalty
	}
	return l
}

// refLogprobs is the log-softmax in float64 with math.Exp.
func refLogprobs(l []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range l {
		if float64(v) > m {
			m = float64(v)
		}
	}
	var s float64
	for _, v := range l {
		if !math.IsNaN(float64(v)) {
			s += math.Exp(float64(v) - m)
		}
	}
	out := make([]float64, len(l))
	for i, v := range l {
		out[i] = float64(v) - m - math.Log(s)
	}
	return out
}
