package kernel

import "math"

// fma32 returns a*b+c rounded once to float32 (round to nearest, ties to
// even), the result of the hardware VFMADD instructions.
//
// float32(math.FMA(...)) is not this: it rounds to float64 first and then to
// float32, and the two roundings can differ from one. Instead:
//   - the product of two float32 values is exact in float64 (24+24 bits fit
//     in 53, and the exponent range of float64 holds every product, subnormal
//     inputs included);
//   - s = p+c is rounded once to float64; float32(s) is then the correct
//     answer unless s lies exactly on a float32 rounding midpoint while the
//     exact sum does not (a double rounding). Only then, and when s falls in
//     the float32 subnormal range where the midpoint test below does not
//     apply, does the slow path run: it recovers the error of s with TwoSum
//     and rounds s to odd, which makes the second rounding correct
//     (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums:
//     proved algorithms using rounding to odd", 2008).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact
	s := p + float64(c)
	bits := math.Float64bits(s)
	// A float32 midpoint in the normal range has exactly the bit below the
	// 24-bit significand set among the 29 dropped bits. Biased float64
	// exponent 897 is 2^-126, the smallest normal float32.
	if bits&(1<<29-1) != 1<<28 && (bits>>52)&0x7ff >= 897 {
		return float32(s)
	}
	return fma32Slow(p, float64(c), s)
}

// fma32Slow finishes fma32 for a sum s=p+c that may have been double
// rounded; p and c are exact.
func fma32Slow(p, c, s float64) float32 {
	bits := math.Float64bits(s)
	if s == 0 || (bits>>52)&0x7ff == 0x7ff {
		// A zero s means an exact zero sum (p and c are multiples of
		// 2^-298, far above the float64 underflow); Inf and NaN pass.
		return float32(s)
	}
	// TwoSum: e is the exact rounding error, p+c = s+e.
	bb := s - p
	e := (p - (s - bb)) + (c - bb)
	if e != 0 && bits&1 == 0 {
		// Round to odd: of the two float64 neighbours of p+c, take the one
		// with an odd significand. Bit patterns are ordered by magnitude.
		if (e > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
	}
	return float32(math.Float64frombits(bits))
}

// mul32 is a*b rounded to float32. The explicit conversion keeps the
// compiler from fusing it into a following addition.
func mul32(a, b float32) float32 { return float32(a * b) }
