package sample

import (
	"math"
	"math/bits"
)

// This file holds the arithmetic that decides which token is drawn. Every
// function here must give bit-identical results on every platform, so:
// no math.Exp (it has per-architecture assembly), and every product that is
// followed by an addition is explicitly rounded with float32(...), which the
// Go spec says forbids fusing it into an FMA.

const (
	// probCutoff: below it exp underflows the fixed-point mass anyway
	// (e^-30 < 2^-43), so prob returns 0 without computing it.
	probCutoff = -30
	// massShift: the probability 1 (the most likely token) is 2^massShift
	// units of mass; MaxVocab*2^massShift = 2^63 cannot overflow a uint64.
	massShift = 43
	// Cody-Waite split of ln 2: expC1 has few significant bits so n*expC1 is
	// exact for every n prob can see.
	expC1   = 0.693359375
	expC2   = -2.12194440e-4
	log2e   = 1.44269504088896341
	nBucket = 1024
)

// prob returns e^x for x <= 0, computed in float32 with a fixed sequence of
// IEEE operations (range reduction x = n ln2 + r, |r| <= ln2/2, degree-6
// Taylor polynomial for e^r, then scaling by 2^n in the exponent bits). It is
// within about 2 ulp of e^x, prob(0) == 1 exactly, and it returns 0 for x
// below probCutoff and for NaN.
func prob(x float32) float32 {
	if !(x >= probCutoff) {
		return 0
	}
	t := float32(x * log2e)
	n := int32(t - 0.5) // t <= 0: truncation toward zero rounds to nearest
	fn := float32(n)
	r := x - float32(fn*expC1)
	r -= float32(fn * expC2)
	// 1 + r + r²/2 + r³/6 + r⁴/24 + r⁵/120 + r⁶/720, Estrin's scheme: a
	// shorter chain of dependent operations than Horner's.
	r2 := r * r
	a := 1 + r
	b := float32(r*(1.0/6)) + 0.5
	c := float32(r*(1.0/120)) + 1.0/24
	c += float32(r2 * (1.0 / 720))
	r4 := r2 * r2
	e := a + float32(r2*b)
	e += float32(r4 * c)
	return math.Float32frombits(math.Float32bits(e) + uint32(n)<<23)
}

// mass is p's fixed-point mass: floor(p * 2^massShift). Exact for p >= 2^-23.
// Sums of masses are exact integers, so they do not depend on the order in
// which they are added; that is what lets the sampler add them bucket by
// bucket and still draw the token a full sort would give.
func mass(p float32) uint64 { return uint64(int64(p * (1 << massShift))) }

// bucket is p's histogram bucket: its exponent and 3 leading mantissa bits.
// It is monotone in p for p >= 0, and below 1024 for p <= 1.
func bucket(p float32) uint32 { return (math.Float32bits(p) >> 20) & (nBucket - 1) }

// probKey orders tokens by probability descending, then token id ascending,
// when the keys are sorted ascending. p must be >= 0.
func probKey(p float32, id int32) uint64 {
	return uint64(^math.Float32bits(p))<<32 | uint64(uint32(id))
}

func keyProb(k uint64) float32 { return math.Float32frombits(^uint32(k >> 32)) }
func keyID(k uint64) int32     { return int32(uint32(k)) }

// logitKey orders tokens by logit, larger is better, then by token id,
// smaller is better: the larger key is the better token. -0 counts as +0.
// Not for NaN.
func logitKey(l float32, id int32) uint64 {
	b := math.Float32bits(l)
	switch {
	case b == 1<<31: // -0
		b = 1 << 31
	case b&(1<<31) != 0:
		b = ^b
	default:
		b |= 1 << 31
	}
	return uint64(b)<<32 | uint64(^uint32(id))
}

func logitKeyValue(k uint64) float32 {
	b := uint32(k >> 32)
	if b&(1<<31) != 0 {
		b &^= 1 << 31
	} else {
		b = ^b
	}
	return math.Float32frombits(b)
}

func logitKeyID(k uint64) int32 { return int32(^uint32(k)) }

// mix64 is the SplitMix64 finalizer (Stafford's variant 13), a bijection on
// uint64 that scrambles every input bit into every output bit.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uniform24 is the random number for output token i of a completion with
// this seed, as a 24-bit integer: a counter-based generator, so it depends on
// (seed, i) only and a sampler needs no RNG state to hand over.
func uniform24(seed, i uint64) uint64 {
	return mix64(mix64(seed)+(i+1)*0x9e3779b97f4a7c15) >> 40
}

// Uniform returns the random number in [0, 1) that the sampler uses for
// output token i (0-based) of a completion with this seed. It is a multiple
// of 2^-24, exactly the same on every platform.
func Uniform(seed, i uint64) float32 {
	return float32(uniform24(seed, i)) * (1.0 / (1 << 24))
}

// scaleUniform returns floor(u * total / 2^24) for a 24-bit u, exactly.
// The result is below total.
func scaleUniform(u, total uint64) uint64 {
	hi, lo := bits.Mul64(u, total)
	return hi<<40 | lo>>24
}
