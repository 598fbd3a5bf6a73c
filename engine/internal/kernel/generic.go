package kernel

import (
	"encoding/binary"
	"math"
)

// The pure-Go implementation. It is the fallback on machines without the
// vector instructions and under the purego build tag, and it computes the
// canonical reduction order literally, one output element at a time, with
// the exact fma32.

func f32At(b []byte, i int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
}

func u16At(b []byte, i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }

// tree16 is the canonical final reduction of the 16 partial sums.
func tree16(p *[16]float32) float32 {
	for l := 0; l < 8; l++ {
		p[l] += p[l+8]
	}
	for l := 0; l < 4; l++ {
		p[l] += p[l+4]
	}
	for l := 0; l < 2; l++ {
		p[l] += p[l+2]
	}
	return p[0] + p[1]
}

// dotGeneric is Dot in pure Go. len(w) >= RowBytes(t, len(x)).
func dotGeneric(t DType, w []byte, x []float32) float32 {
	var p [16]float32
	k := len(x)
	switch t {
	case F32:
		w = w[:4*k]
		for k0 := 0; k0 < k; k0 += 16 {
			for l := 0; l < 16 && k0+l < k; l++ {
				p[l] = fma32(f32At(w, k0+l), x[k0+l], p[l])
			}
		}
	case F16:
		w = w[:2*k]
		for k0 := 0; k0 < k; k0 += 16 {
			for l := 0; l < 16 && k0+l < k; l++ {
				p[l] = fma32(f16ToF32(u16At(w, k0+l)), x[k0+l], p[l])
			}
		}
	case BF16:
		w = w[:2*k]
		for k0 := 0; k0 < k; k0 += 16 {
			for l := 0; l < 16 && k0+l < k; l++ {
				p[l] = fma32(bf16ToF32(u16At(w, k0+l)), x[k0+l], p[l])
			}
		}
	case I8:
		w = w[:k]
		for k0 := 0; k0 < k; k0 += 16 {
			for l := 0; l < 16 && k0+l < k; l++ {
				p[l] = fma32(float32(int8(w[k0+l])), x[k0+l], p[l])
			}
		}
	case Q8_0:
		for j := 0; j < k/Q8Block; j++ {
			blk := w[j*Q8BlockBytes : (j+1)*Q8BlockBytes]
			d := f16ToF32(u16At(blk, 0))
			q := blk[2:]
			xb := x[j*Q8Block : (j+1)*Q8Block]
			for l := 0; l < 16; l++ {
				t := mul32(float32(int8(q[l])), xb[l])
				t = fma32(float32(int8(q[16+l])), xb[16+l], t)
				p[l] = fma32(t, d, p[l])
			}
		}
	default:
		panic("kernel: unknown dtype " + t.String())
	}
	return tree16(&p)
}

func matMulRowsGeneric(dst []float32, w Mat, x []float32, n, r0, r1 int) {
	k := w.Cols
	for r := r0; r < r1; r++ {
		row := w.Row(r)
		for b := 0; b < n; b++ {
			dst[b*w.Rows+r] = dotGeneric(w.Type, row, x[b*k:(b+1)*k])
		}
	}
}

func axpyGeneric(t DType, dst []float32, a float32, x []byte) {
	switch t {
	case F32:
		x = x[:4*len(dst)]
		for i := range dst {
			dst[i] = fma32(a, f32At(x, i), dst[i])
		}
	case F16:
		x = x[:2*len(dst)]
		for i := range dst {
			dst[i] = fma32(a, f16ToF32(u16At(x, i)), dst[i])
		}
	case BF16:
		x = x[:2*len(dst)]
		for i := range dst {
			dst[i] = fma32(a, bf16ToF32(u16At(x, i)), dst[i])
		}
	case I8:
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = fma32(a, float32(int8(x[i])), dst[i])
		}
	default:
		panic("kernel: Axpy does not take " + t.String())
	}
}

func axpyF32Generic(dst []float32, a float32, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = fma32(a, x[i], dst[i])
	}
}

func toF32Generic(t DType, dst []float32, src []byte) {
	switch t {
	case F32:
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] = f32At(src, i)
		}
	case F16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = f16ToF32(u16At(src, i))
		}
	case BF16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = bf16ToF32(u16At(src, i))
		}
	case I8:
		src = src[:len(dst)]
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case Q8_0:
		for j := 0; j < len(dst)/Q8Block; j++ {
			blk := src[j*Q8BlockBytes : (j+1)*Q8BlockBytes]
			d := f16ToF32(u16At(blk, 0))
			out := dst[j*Q8Block : (j+1)*Q8Block]
			for l := range out {
				out[l] = mul32(d, float32(int8(blk[2+l])))
			}
		}
	default:
		panic("kernel: unknown dtype " + t.String())
	}
}

func f32ToF16Generic(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], f32ToF16(v))
	}
}
