//go:build amd64 && !purego

package kernel

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFMA32MatchesHardware(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no FMA")
	}
	r := rand.New(rand.NewPCG(31, 32))
	n := 1 << 22
	if testing.Short() {
		n = 1 << 18
	}
	a, b, c, d := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range a {
		a[i], b[i], c[i] = fmaCase(r)
	}
	fmaHW(a, b, c, d)
	for i := range a {
		if got := fma32(a[i], b[i], c[i]); !same(got, d[i]) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%#x), VFMADD231PS %g (%#x)", a[i], b[i], c[i], got, math.Float32bits(got), d[i], math.Float32bits(d[i]))
		}
	}
}

func TestF16ToF32MatchesHardware(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no F16C")
	}
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	dst := make([]float32, len(src))
	f16ToF32HW(dst, src)
	for i, h := range src {
		if got := f16ToF32(h); math.Float32bits(got) != math.Float32bits(dst[i]) {
			t.Fatalf("f16ToF32(%#04x) = %#08x, VCVTPH2PS %#08x", h, math.Float32bits(got), math.Float32bits(dst[i]))
		}
	}
}

func TestF32ToF16MatchesHardware(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no F16C")
	}
	r := rand.New(rand.NewPCG(33, 34))
	// Every exponent with random and boundary significands (midpoints,
	// one either side), plus random bits.
	var src []float32
	for e := uint32(0); e < 256; e++ {
		for _, m := range []uint32{0, 1, 0x7fffff, 0x1000, 0x0fff, 0x1001, 0x3000, 0x2000, 0x400000, 0x7fe000, 0x7ff000} {
			for _, s := range []uint32{0, 1 << 31} {
				src = append(src, math.Float32frombits(s|e<<23|m))
			}
		}
		for range 512 {
			src = append(src, math.Float32frombits(r.Uint32()&0x807fffff|e<<23))
		}
	}
	for range 1 << 18 {
		src = append(src, math.Float32frombits(r.Uint32()))
	}
	src = src[:len(src)/8*8]
	dst := make([]uint16, len(src))
	f32ToF16HW(dst, src)
	for i, v := range src {
		if got := f32ToF16(v); got != dst[i] {
			t.Fatalf("f32ToF16(%#08x) = %#04x, VCVTPS2PH %#04x", math.Float32bits(v), got, dst[i])
		}
	}
}
