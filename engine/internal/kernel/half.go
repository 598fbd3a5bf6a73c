package kernel

import "math"

// f16ToF32 converts an IEEE binary16 value exactly, as VCVTPH2PS does:
// subnormals are normalised, a NaN keeps its payload and becomes quiet.
func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch exp {
	case 0x1f:
		if man == 0 {
			return math.Float32frombits(sign | 0x7f800000)
		}
		return math.Float32frombits(sign | 0x7fc00000 | man<<13)
	case 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		e := uint32(127 - 14)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// f32ToF16 rounds a float32 to the nearest binary16 (ties to even), as
// VCVTPS2PH with rounding control 0 does: overflow goes to Inf, a NaN keeps
// the top of its payload and becomes quiet.
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(man>>13)
	}
	if exp == 0 {
		// float32 subnormals are below half the smallest binary16 subnormal.
		return sign
	}
	m := man | 0x800000 // 24-bit significand; value m * 2^(exp-150)
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	shift := 13
	var h uint32
	if e >= 1 {
		h = uint32(e)<<10 | (m>>13)&0x3ff
	} else {
		shift = 14 - e
		if shift >= 32 {
			return sign
		}
		h = m >> shift
	}
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && h&1 == 1) {
		h++ // a carry moves into the exponent, up to Inf
	}
	return sign | uint16(h)
}

// bf16ToF32 converts a bfloat16 value exactly: it is the top half of a
// float32.
func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
