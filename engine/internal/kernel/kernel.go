package kernel

import (
	"fmt"
	"math"
)

// Shapes are checked before any implementation runs, so that the assembly
// kernels never read or write outside the slices they are given. A shape
// mismatch is a bug in the caller (outside bytes are checked by
// Mat.Validate when a model is loaded), so it panics with a message that
// says what did not fit.

func rowBytesOrPanic(t DType, cols int) int {
	rb := RowBytes(t, cols)
	if rb < 0 {
		panic(fmt.Sprintf("kernel: %s row of %d columns", t, cols))
	}
	return rb
}

// Dot is the canonical dot product of the weight row w (type t, len(x)
// elements) with x.
func Dot(t DType, w []byte, x []float32) float32 {
	if rb := rowBytesOrPanic(t, len(x)); len(w) < rb {
		panic(fmt.Sprintf("kernel: Dot: %s row of %d elements needs %d bytes, have %d", t, len(x), rb, len(w)))
	}
	if v := cur().vec; v != nil {
		return v.dot(t, w, x)
	}
	return dotGeneric(t, w, x)
}

// MatMulRows computes, for b in [0,n) and r in [r0,r1),
//
//	dst[b*w.Rows+r] = Dot(w.Type, w.Row(r), x[b*w.Cols:(b+1)*w.Cols])
//
// on the calling goroutine. Each element has the bits Dot gives it, whatever
// n, r0 and r1 are.
func MatMulRows(dst []float32, w Mat, x []float32, n int, r0, r1 int) {
	rb := rowBytesOrPanic(w.Type, w.Cols)
	switch {
	case w.Rows < 0 || (rb > 0 && len(w.Data)/rb < w.Rows):
		panic(fmt.Sprintf("kernel: MatMulRows: %s %dx%d matrix has %d bytes", w.Type, w.Rows, w.Cols, len(w.Data)))
	case r0 < 0 || r1 > w.Rows || r0 > r1:
		panic(fmt.Sprintf("kernel: MatMulRows: rows [%d,%d) of %d", r0, r1, w.Rows))
	case n < 0 || len(x)/max(w.Cols, 1) < n:
		panic(fmt.Sprintf("kernel: MatMulRows: %d activation rows of %d need %d floats, have %d", n, w.Cols, n*w.Cols, len(x)))
	case n > 0 && r1 > r0 && len(dst) < (n-1)*w.Rows+r1:
		panic(fmt.Sprintf("kernel: MatMulRows: dst of %d floats, need %d", len(dst), (n-1)*w.Rows+r1))
	}
	if n == 0 || r0 == r1 {
		return
	}
	if v := cur().vec; v != nil {
		v.matMulRows(dst, w, x, n, r0, r1)
		return
	}
	matMulRowsGeneric(dst, w, x, n, r0, r1)
}

// Axpy computes dst[i] = fma32(a, x[i], dst[i]) for i < len(dst), where x
// holds len(dst) elements of type t (F32, F16, BF16 or I8).
func Axpy(t DType, dst []float32, a float32, x []byte) {
	if t == Q8_0 {
		panic("kernel: Axpy does not take q8_0")
	}
	if rb := rowBytesOrPanic(t, len(dst)); len(x) < rb {
		panic(fmt.Sprintf("kernel: Axpy: %d %s elements need %d bytes, have %d", len(dst), t, rb, len(x)))
	}
	if v := cur().vec; v != nil {
		v.axpy(t, dst, a, x)
		return
	}
	axpyGeneric(t, dst, a, x)
}

// AxpyF32 computes dst[i] = fma32(a, x[i], dst[i]) for i < len(dst).
func AxpyF32(dst []float32, a float32, x []float32) {
	if len(x) < len(dst) {
		panic(fmt.Sprintf("kernel: AxpyF32: x has %d elements, dst %d", len(x), len(dst)))
	}
	if v := cur().vec; v != nil {
		v.axpyF32(dst, a, x)
		return
	}
	axpyF32Generic(dst, a, x)
}

// ToF32 converts the len(dst) elements of type t in src exactly to float32
// (Q8_0: fl32(d*q)). It is the embedding lookup.
func ToF32(t DType, dst []float32, src []byte) {
	if rb := rowBytesOrPanic(t, len(dst)); len(src) < rb {
		panic(fmt.Sprintf("kernel: ToF32: %d %s elements need %d bytes, have %d", len(dst), t, rb, len(src)))
	}
	if v := cur().vec; v != nil {
		v.toF32(t, dst, src)
		return
	}
	toF32Generic(t, dst, src)
}

// F32ToF16 rounds src to binary16 (nearest, ties to even; overflow to Inf)
// into dst, 2 bytes per element, little-endian.
func F32ToF16(dst []byte, src []float32) {
	if len(dst) < 2*len(src) {
		panic(fmt.Sprintf("kernel: F32ToF16: %d values need %d bytes, have %d", len(src), 2*len(src), len(dst)))
	}
	if v := cur().vec; v != nil {
		v.f32ToF16(dst, src)
		return
	}
	f32ToF16Generic(dst, src)
}

// QuantizeI8 quantizes src symmetrically to int8 for the int8 KV cache:
// scale = max|src|/127 (float32 division) and dst[i] = the int8 nearest to
// src[i]/scale (ties to even), so src[i] ≈ scale*int8(dst[i]). An all-zero
// src gives scale 0 and zeros. Non-finite inputs are mapped without
// failing: NaN is ignored for the maximum and stored as 0, ±Inf is ignored
// for the maximum and stored as ±127. The result depends only on src.
func QuantizeI8(dst []byte, src []float32) (scale float32) {
	if len(dst) < len(src) {
		panic(fmt.Sprintf("kernel: QuantizeI8: %d values need %d bytes, have %d", len(src), len(src), len(dst)))
	}
	var amax float32
	for _, v := range src {
		if a := float32(math.Abs(float64(v))); a > amax && a <= math.MaxFloat32 {
			amax = a
		}
	}
	scale = amax / 127
	for i, v := range src {
		var q float32
		switch {
		case v != v:
			q = 0
		case scale == 0:
			q = 0
			if math.IsInf(float64(v), 0) {
				q = float32(math.Copysign(127, float64(v)))
			}
		default:
			q = float32(math.RoundToEven(float64(v / scale)))
			q = min(max(q, -127), 127)
		}
		dst[i] = byte(int8(q))
	}
	return scale
}
