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

// dotF32 is the canonical dot product of two float32 vectors.
func dotF32(w, x []float32) float32 {
	var p [16]float32
	w = w[:len(x)]
	for k0 := 0; k0 < len(x); k0 += 16 {
		for l := 0; l < 16 && k0+l < len(x); l++ {
			p[l] = fma32(w[k0+l], x[k0+l], p[l])
		}
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

// weightedSumGeneric is WeightedSum in pure Go over value rows rb bytes
// apart (a row may be wider than cols: the AVX2 driver passes the
// columns it leaves over).
func weightedSumGeneric(t DType, dst []float32, ds int, a []float32, as int, v []byte, rb, nq, nk, cols int) {
	n := RowBytes(t, cols)
	for j := 0; j < nk; j++ {
		row := v[j*rb : j*rb+n]
		for q := 0; q < nq; q++ {
			axpyGeneric(t, dst[q*ds:q*ds+cols], a[j*as+q], row)
		}
	}
}

func attnScoresGeneric(dst, k []float32, ks, nk int, qt []float32, nq, hd int, scale float32, kscale []float32) {
	nblk := (hd + 15) / 16
	for key := 0; key < nk; key++ {
		row := k[key*ks : key*ks+hd]
		for q := 0; q < nq; q++ {
			var p [16]float32
			for s, l := range scoreOrder {
				for blk := 0; 16*blk+l < hd; blk++ {
					p[l] = fma32(row[16*blk+l], qt[(s*nblk+blk)*TileLanes+q], p[l])
				}
			}
			v := tree16(&p)
			if kscale != nil {
				v = float32(v * kscale[key])
			}
			dst[key*TileLanes+q] = float32(v * scale)
		}
	}
}

func softmaxTileGeneric(w, s []float32, n, nq, first int, vs []float32) {
	softmaxTileWith(w, s, n, nq, first, vs, expF32Generic)
}

func softmaxRowGeneric(w, s []float32, n int, scale float32, ks, vs []float32) {
	softmaxRowWith(w, s, n, scale, ks, vs, expF32Generic)
}

// softmaxTileWith is SoftmaxTile in Go around an ExpF32 implementation:
// the passes of the specification, each query's maximum and sum over its
// positions in order, the exponentials of the whole tile in one call
// (lanes a query does not see get values nobody reads).
func softmaxTileWith(w, s []float32, n, nq, first int, vs []float32, exp func(dst, src []float32)) {
	const L = TileLanes
	var m, inv [L]float32
	for q := range m {
		m[q] = float32(math.Inf(-1))
	}
	for p := 0; p < n; p++ {
		for q := max(0, p-first); q < nq; q++ {
			if v := s[p*L+q]; v > m[q] {
				m[q] = v
			}
		}
	}
	for p := 0; p < n; p++ {
		for q := 0; q < L; q++ {
			w[p*L+q] = s[p*L+q] - m[q]
		}
	}
	exp(w[:n*L], w[:n*L])
	var sum [L]float32
	for p := 0; p < n; p++ {
		for q := max(0, p-first); q < nq; q++ {
			sum[q] += w[p*L+q]
		}
	}
	for q := range inv {
		inv[q] = 1 / sum[q]
	}
	for p := 0; p < n; p++ {
		for q := max(0, p-first); q < nq; q++ {
			w[p*L+q] = float32(w[p*L+q] * inv[q])
			if vs != nil {
				w[p*L+q] = float32(w[p*L+q] * vs[p])
			}
		}
	}
}

// softmaxRowWith is SoftmaxRow in Go around an ExpF32 implementation.
func softmaxRowWith(w, s []float32, n int, scale float32, ks, vs []float32, exp func(dst, src []float32)) {
	w, s = w[:n], s[:n]
	for p, v := range s {
		if ks != nil {
			v = float32(v * ks[p])
		}
		w[p] = float32(v * scale)
	}
	m := float32(math.Inf(-1))
	for _, v := range w {
		if v > m {
			m = v
		}
	}
	for p := range w {
		w[p] -= m
	}
	exp(w, w)
	var sum float32
	for _, e := range w {
		sum += e
	}
	inv := 1 / sum
	for p := range w {
		w[p] = float32(w[p] * inv)
		if vs != nil {
			w[p] = float32(w[p] * vs[p])
		}
	}
}

func expF32Generic(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = float32(math.Exp(float64(v)))
	}
}

func swiGLUGeneric(g, u []float32) {
	u = u[:len(g)]
	for i, v := range g {
		silu := float32(v / float32(1+float32(math.Exp(float64(-v)))))
		g[i] = float32(silu * u[i])
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
