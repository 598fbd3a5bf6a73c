package sample

import (
	"math"
	"math/big"
	"testing"
)

func TestProbAccuracy(t *testing.T) {
	if prob(0) != 1 {
		t.Fatalf("prob(0) = %v, want exactly 1", prob(0))
	}
	for _, x := range []float32{float32(math.NaN()), float32(math.Inf(-1)), -30.0001, -1e30} {
		if p := prob(x); p != 0 {
			t.Errorf("prob(%v) = %v, want 0", x, p)
		}
	}
	worst := 0.0
	for i := 0; i <= 300000; i++ {
		x := -30 * float32(i) / 300000
		got := float64(prob(x))
		want := math.Exp(float64(x))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
		if got > 1 {
			t.Fatalf("prob(%v) = %v > 1", x, got)
		}
	}
	if worst > 3e-7 { // about 2.5 float32 ulp
		t.Fatalf("worst relative error %g", worst)
	}
}

// TestProbBits pins prob's exact output bits. Every platform must produce
// these: a different bit can change which token a seed draws.
func TestProbBits(t *testing.T) {
	tests := []struct {
		x    float32
		bits uint32
	}{
		{0, 0x3f800000},
		{-1e-7, 0x3f7ffffe},
		{-0.25, 0x3f475f7d},
		{-0.5, 0x3f1b4598},
		{-1, 0x3ebc5ab3},
		{-2.75, 0x3d82ec9c},
		{-10, 0x383e6bcf},
		{-29.9, 0x29e8e049},
	}
	for _, tt := range tests {
		if got := math.Float32bits(prob(tt.x)); got != tt.bits {
			t.Errorf("prob(%v) bits = %#x, want %#x", tt.x, got, tt.bits)
		}
	}
}

func TestUniform(t *testing.T) {
	// Pinned values: the random number of output token i is part of the wire
	// contract between prefill and decode nodes.
	golden := []struct {
		seed, i uint64
		bits    uint32
	}{
		{0, 0, 0x3f6220a8},
		{0, 1, 0x3edcf13c},
		{42, 0, 0x3f189b3f},
		{42, 7, 0x3e1c9010},
		{math.MaxUint64, 1000, 0x3f6dd42e},
	}
	for _, g := range golden {
		if got := Uniform(g.seed, g.i); math.Float32bits(got) != g.bits {
			t.Errorf("Uniform(%d, %d) = %v (%#x), want bits %#x", g.seed, g.i, got, math.Float32bits(got), g.bits)
		}
	}
	// Range, and a coarse check of uniformity over fixed inputs.
	var hist [16]int
	const n = 1 << 16
	for i := range uint64(n) {
		u := Uniform(i/64, i%64)
		if !(u >= 0 && u < 1) {
			t.Fatalf("Uniform = %v, outside [0, 1)", u)
		}
		hist[int(u*16)]++
	}
	for b, c := range hist {
		if want := n / 16; c < want*9/10 || c > want*11/10 {
			t.Errorf("bucket %d holds %d of %d draws", b, c, n)
		}
	}
	// Neighbouring seeds are not shifted copies of each other.
	if Uniform(1, 0) == Uniform(2, 1) && Uniform(1, 1) == Uniform(2, 2) {
		t.Fatal("seed 2 replays seed 1 shifted by one")
	}
}

func TestScaleUniform(t *testing.T) {
	for _, tc := range [][2]uint64{{0, 5}, {1<<24 - 1, 1}, {1<<24 - 1, 1 << 63}, {12345, 987654321987}, {1 << 23, 3}} {
		u, total := tc[0], tc[1]
		want := new(big.Int).Mul(new(big.Int).SetUint64(u), new(big.Int).SetUint64(total))
		want.Rsh(want, 24)
		if got := scaleUniform(u, total); got != want.Uint64() || got >= total {
			t.Errorf("scaleUniform(%d, %d) = %d, want %d (< total)", u, total, got, want)
		}
	}
}

func TestKeys(t *testing.T) {
	vals := []float32{float32(math.Inf(-1)), -1e30, -2, -1, -1e-30, 0, 1e-30, 1, 2, 1e30}
	for i := range vals {
		for j := range vals {
			a, b := logitKey(vals[i], 5), logitKey(vals[j], 5)
			if (a < b) != (i < j) {
				t.Errorf("logitKey order of %v and %v wrong", vals[i], vals[j])
			}
		}
		if got := logitKeyValue(logitKey(vals[i], 9)); got != vals[i] {
			t.Errorf("logitKeyValue(logitKey(%v)) = %v", vals[i], got)
		}
		if got := logitKeyID(logitKey(vals[i], 9)); got != 9 {
			t.Errorf("logitKeyID = %d, want 9", got)
		}
	}
	if logitKey(float32(math.Copysign(0, -1)), 3) != logitKey(0, 3) {
		t.Error("-0 and +0 must have the same key")
	}
	if logitKey(1, 3) <= logitKey(1, 4) {
		t.Error("on equal logits the lower id must have the larger key")
	}
	if probKey(0.5, 9) >= probKey(0.25, 1) || probKey(0.5, 1) >= probKey(0.5, 2) {
		t.Error("probKey must sort probability descending, then id ascending")
	}
	if keyProb(probKey(0.375, 77)) != 0.375 || keyID(probKey(0.375, 77)) != 77 {
		t.Error("probKey does not round-trip")
	}
	if mass(1) != 1<<massShift || mass(0) != 0 || mass(0.5) != 1<<(massShift-1) {
		t.Error("mass is not floor(p * 2^massShift)")
	}
}

// TestFillProbsMatchesProb checks that the hand-inlined loop in fillProbs
// computes exactly prob, mass and bucket.
func TestFillProbsMatchesProb(t *testing.T) {
	l := []float32{0, -1e-7, -0.3, -0.3465736, -0.34657362, -1, -5.5, -29.99, -30, -30.01, float32(math.Inf(-1)), float32(math.NaN())}
	for i := 0; i < 20000; i++ {
		l = append(l, -float32(i)*0.0015)
	}
	for _, invT := range []float32{1, 1 / 0.7, 1 / 1.3, 1e6} {
		probs := make([]float32, len(l))
		var hist [nBucket]uint64
		z := fillProbs(l, probs, 0, invT, &hist)
		var wz uint64
		var whist [nBucket]uint64
		for i, v := range l {
			p := prob(float32(v-0) * invT)
			if math.Float32bits(p) != math.Float32bits(probs[i]) {
				t.Fatalf("invT %v, x %v: fillProbs %v, prob %v", invT, v, probs[i], p)
			}
			whist[bucket(p)] += mass(p)
			wz += mass(p)
		}
		if z != wz || hist != whist {
			t.Fatalf("invT %v: mass or histogram differs", invT)
		}
	}
}
