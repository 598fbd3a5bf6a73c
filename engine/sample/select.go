package sample

import (
	"math"
	"slices"
)

// Workspace is the vocabulary-sized scratch memory a Sampler uses while it
// samples one token (probabilities, sort keys, the mass histogram). It keeps
// nothing between calls, so the samplers of a decode batch that sample one
// after the other can share one Workspace instead of holding about 12 bytes
// per vocabulary entry each. A Workspace must not be used by two Sample calls
// at the same time.
type Workspace struct {
	vocab int
	probs []float32
	keys  []uint64
	hist  [nBucket]uint64
	// The bucket whose sorted keys are in keys[:nkeys], or -1: top-p and
	// the draw often cut in the same bucket.
	gathered int
	nkeys    int
	// probs holds exp(logit - max) of the current row (temperature 1), so
	// the logprobs can reuse them.
	probsT1 bool
}

// NewWorkspace allocates the scratch memory for a vocabulary of that size.
func NewWorkspace(vocab int) (*Workspace, error) {
	if vocab <= 0 || vocab > MaxVocab {
		return nil, errVocab(vocab)
	}
	return &Workspace{
		vocab: vocab,
		probs: make([]float32, vocab),
		keys:  make([]uint64, vocab),
	}, nil
}

// Vocab returns the vocabulary size the workspace was made for.
func (w *Workspace) Vocab() int { return w.vocab }

// argmax returns the index of the largest logit, the lowest index on ties,
// skipping NaN; -1 when every logit is NaN or -Inf. Four independent lanes
// keep the comparisons from waiting on each other; each lane keeps the first
// index of its maximum, and the merge takes the lowest index among equal
// maxima, which is the first index overall.
func argmax(l []float32) int {
	b0, b1, b2, b3 := float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1))
	i0, i1, i2, i3 := -1, -1, -1, -1
	i := 0
	for ; i+4 <= len(l); i += 4 {
		v := l[i : i+4 : i+4]
		if v[0] > b0 {
			b0, i0 = v[0], i
		}
		if v[1] > b1 {
			b1, i1 = v[1], i+1
		}
		if v[2] > b2 {
			b2, i2 = v[2], i+2
		}
		if v[3] > b3 {
			b3, i3 = v[3], i+3
		}
	}
	for ; i < len(l); i++ {
		if l[i] > b0 {
			b0, i0 = l[i], i
		}
	}
	best, bi := b0, i0
	for _, c := range [3]struct {
		b float32
		i int
	}{{b1, i1}, {b2, i2}, {b3, i3}} {
		if c.i >= 0 && (bi < 0 || c.b > best || (c.b == best && c.i < bi)) {
			best, bi = c.b, c.i
		}
	}
	return bi
}

// maxLogit returns the largest non-NaN logit (-Inf when there is none).
func maxLogit(l []float32) float32 {
	m0, m1, m2, m3 := float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1))
	i := 0
	for ; i+4 <= len(l); i += 4 {
		v := l[i : i+4 : i+4]
		if v[0] > m0 {
			m0 = v[0]
		}
		if v[1] > m1 {
			m1 = v[1]
		}
		if v[2] > m2 {
			m2 = v[2]
		}
		if v[3] > m3 {
			m3 = v[3]
		}
	}
	for ; i < len(l); i++ {
		if l[i] > m0 {
			m0 = l[i]
		}
	}
	return max(m0, m1, m2, m3)
}

// topLogits puts into heap[:n] the keys (logitKey) of the n best tokens of l,
// NaN never included, sorted best first, and returns how many it found (fewer
// than n when l has fewer non-NaN entries). heap must hold n entries. One pass
// with a min-heap of the n best so far: most entries are rejected by a single
// float comparison against the worst kept logit.
func topLogits(l []float32, n int, heap []uint64) int {
	h := heap[:0:n]
	i := 0
	for ; i < len(l) && len(h) < n; i++ {
		if v := l[i]; v == v {
			h = append(h, logitKey(v, int32(i)))
			siftUp(h, len(h)-1)
		}
	}
	if len(h) == n && n > 0 {
		worst := logitKeyValue(h[0])
		for ; i < len(l); i++ {
			v := l[i]
			if !(v >= worst) { // also skips NaN
				continue
			}
			k := logitKey(v, int32(i))
			if k <= h[0] {
				continue
			}
			h[0] = k
			siftDown(h, 0)
			worst = logitKeyValue(h[0])
		}
	}
	slices.Sort(h)
	slices.Reverse(h)
	return len(h)
}

func siftUp(h []uint64, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if h[p] <= h[j] {
			return
		}
		h[p], h[j] = h[j], h[p]
		j = p
	}
}

func siftDown(h []uint64, j int) {
	n := len(h)
	for {
		c := 2*j + 1
		if c >= n {
			return
		}
		if c+1 < n && h[c+1] < h[c] {
			c++
		}
		if h[j] <= h[c] {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}

// fillProbs writes prob((l[i]-lmax)*invT) into probs, adds every token's
// mass into hist by bucket, and returns the total mass. lmax must be the
// largest non-NaN logit and finite, so every argument of prob is <= 0 and
// every probability is <= 1.
//
// The body is prob, mass and bucket written out by hand (the compiler does
// not inline prob); it must stay the same sequence of operations, which
// TestFillProbsMatchesProb checks bit for bit.
func fillProbs(l, probs []float32, lmax, invT float32, hist *[nBucket]uint64) uint64 {
	probs = probs[:len(l)]
	var z uint64
	for i, v := range l {
		x := float32(v-lmax) * invT
		var p float32
		if x >= probCutoff { // false for NaN
			t := float32(x * log2e)
			n := int32(t - 0.5)
			fn := float32(n)
			r := x - float32(fn*expC1)
			r -= float32(fn * expC2)
			r2 := r * r
			a := 1 + r
			b := float32(r*(1.0/6)) + 0.5
			c := float32(r*(1.0/120)) + 1.0/24
			c += float32(r2 * (1.0 / 720))
			r4 := r2 * r2
			e := a + float32(r2*b)
			e += float32(r4 * c)
			pb := math.Float32bits(e) + uint32(n)<<23
			p = math.Float32frombits(pb)
			q := uint64(int64(p * (1 << massShift)))
			hist[(pb>>20)&(nBucket-1)] += q
			z += q
		}
		probs[i] = p
	}
	return z
}

// gatherBucket puts the probKey of every token whose probability falls in
// bucket b into keys, sorted (probability descending, id ascending), and
// returns them.
func gatherBucket(probs []float32, b uint32, keys []uint64) []uint64 {
	k := keys[:0]
	lo := b << 20
	for i, p := range probs {
		// bucket(p) == b; p <= 1, so the bits are below 1<<30 and the
		// bucket is just bits>>20.
		if math.Float32bits(p)-lo < 1<<20 {
			k = append(k, probKey(p, int32(i)))
		}
	}
	slices.Sort(k)
	return k
}

// sumProbs returns the sum of probs in float64, in a fixed order (four
// interleaved partial sums, then added in lane order).
func sumProbs(probs []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(probs); i += 4 {
		v := probs[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(probs); i++ {
		s0 += float64(probs[i])
	}
	return s0 + s1 + s2 + s3
}

// massAtLeast returns the total mass of the tokens whose probability is at
// least t.
func massAtLeast(probs []float32, t float32) uint64 {
	var z uint64
	for _, p := range probs {
		if p >= t {
			z += mass(p)
		}
	}
	return z
}
