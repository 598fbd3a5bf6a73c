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

// WeightedSum adds to each of nq rows of dst a weighted sum of nk rows of
// v, one row at a time in order, as nk calls of Axpy would: for q < nq,
// c < cols and j = 0, 1, ..., nk-1,
//
//	dst[q*ds+c] = fma32(a[j*as+q], V[j][c], dst[q*ds+c])
//
// where V[j] is row j of v: cols elements of type t (F32, F16, BF16 or I8),
// rows RowBytes(t, cols) bytes apart. The weights are stored key-major
// (a[j*as+q]) so that one key's weights for all rows are adjacent. It is
// attention's sum of values: each output element sees the same sequence
// of single-rounding FMAs whatever nq and the tiling are.
func WeightedSum(t DType, dst []float32, ds int, a []float32, as int, v []byte, nq, nk, cols int) {
	if t == Q8_0 || !t.Valid() {
		panic("kernel: WeightedSum does not take " + t.String())
	}
	if nq < 0 || nk < 0 || cols < 0 {
		panic(fmt.Sprintf("kernel: WeightedSum: %d rows, %d keys, %d columns", nq, nk, cols))
	}
	if nq == 0 || nk == 0 || cols == 0 {
		return
	}
	rb := RowBytes(t, cols)
	switch {
	case ds < cols || len(dst) < (nq-1)*ds+cols:
		panic(fmt.Sprintf("kernel: WeightedSum: dst of %d floats, stride %d, for %d rows of %d", len(dst), ds, nq, cols))
	case as < nq || len(a) < (nk-1)*as+nq:
		panic(fmt.Sprintf("kernel: WeightedSum: %d weights, stride %d, for %d keys of %d rows", len(a), as, nk, nq))
	case len(v)/rb < nk:
		panic(fmt.Sprintf("kernel: WeightedSum: %d bytes of values for %d %s rows of %d", len(v), nk, t, cols))
	}
	if vi := cur().vec; vi != nil {
		vi.weightedSum(t, dst, ds, a, as, v, rb, nq, nk, cols)
		return
	}
	weightedSumGeneric(t, dst, ds, a, as, v, rb, nq, nk, cols)
}

// TileLanes is the number of queries SoftmaxTile takes at once: the
// lanes of its rows.
const TileLanes = 16

// SoftmaxTile is attention's softmax for a tile of up to TileLanes queries
// whose scores are stored position-major: s[p*TileLanes+q] is query q's
// score for key position p, for p < n. Query q (q < nq) attends to
// positions 0..first+q (first+nq >= n). For each query, in position
// order, exactly as the scalar loop
//
//	m := -Inf; for each p: if s > m { m = s }
//	sum := float32(0); for each p: e_p = float32(math.Exp(float64(s_p - m))); sum += e_p
//	inv := 1 / sum; w_p = float32(e_p * inv)  (then float32(w_p * vs[p]) when vs != nil)
//
// it writes w[p*TileLanes+q]. Entries of w for queries at or past nq, or
// positions past a query's last, are unspecified. s is not modified.
func SoftmaxTile(w, s []float32, n, nq, first int, vs []float32) {
	switch {
	case n < 0 || nq < 0 || nq > TileLanes || first < 0 || (n > 0 && first+nq < n):
		panic(fmt.Sprintf("kernel: SoftmaxTile: %d positions, %d queries from %d", n, nq, first))
	case len(s) < n*TileLanes || len(w) < n*TileLanes:
		panic(fmt.Sprintf("kernel: SoftmaxTile: %d positions need %d floats, have %d and %d", n, n*TileLanes, len(s), len(w)))
	case vs != nil && len(vs) < n:
		panic(fmt.Sprintf("kernel: SoftmaxTile: %d scales for %d positions", len(vs), n))
	}
	if n == 0 || nq == 0 {
		return
	}
	if vi := cur().vec; vi != nil {
		vi.softmaxTile(w, s, n, nq, first, vs)
		return
	}
	softmaxTileGeneric(w, s, n, nq, first, vs)
}

// scoreOrder is the order in which the score kernels compute the 16
// partial sums of the canonical dot product: the order that folds the
// canonical tree in as they come (see internal/asmgen/scores.go).
var scoreOrder = [16]int{0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15}

// QueriesLen is the length of the buffer TransposeQueries fills for a head
// dimension of hd.
func QueriesLen(hd int) int { return TileLanes * 16 * ((hd + 15) / 16) }

// TransposeQueries stores nq (at most TileLanes) query rows of hd floats,
// q[i*hd:(i+1)*hd], into qt (QueriesLen(hd) floats) in the layout
// AttnScores reads: for the 16 partial sums of the dot product, each
// dimension's TileLanes queries side by side. Lanes past nq are zero.
func TransposeQueries(qt, q []float32, nq, hd int) {
	if nq < 0 || nq > TileLanes || hd < 0 || len(q) < nq*hd || len(qt) < QueriesLen(hd) {
		panic(fmt.Sprintf("kernel: TransposeQueries: %d queries of %d into %d floats from %d", nq, hd, len(qt), len(q)))
	}
	nblk := (hd + 15) / 16
	clear(qt[:QueriesLen(hd)])
	for s, l := range scoreOrder {
		for blk := 0; blk < nblk; blk++ {
			d := 16*blk + l
			if d >= hd {
				continue
			}
			dst := qt[(s*nblk+blk)*TileLanes:]
			for i := 0; i < nq; i++ {
				dst[i] = q[i*hd+d]
			}
		}
	}
}

// AttnScores computes attention scores for nk keys against a tile of nq
// queries stored by TransposeQueries: for k < nk and q < nq,
//
//	dst[k*TileLanes+q] = float32(Dot(F32, K[k], Q[q]) * scale)
//
// or, when kscale is not nil, float32(float32(dot*kscale[k]) * scale).
// K[k] is k[k*ks : k*ks+hd]. Each dot product has the canonical bits.
// Lanes at or past nq are written with unspecified values.
func AttnScores(dst, k []float32, ks, nk int, qt []float32, nq, hd int, scale float32, kscale []float32) {
	switch {
	case nk < 0 || hd < 0 || ks < hd || nq < 0 || nq > TileLanes:
		panic(fmt.Sprintf("kernel: AttnScores: %d keys of %d, stride %d", nk, hd, ks))
	case nk == 0:
		return
	case len(k) < (nk-1)*ks+hd || len(qt) < QueriesLen(hd) || len(dst) < nk*TileLanes || (kscale != nil && len(kscale) < nk):
		panic(fmt.Sprintf("kernel: AttnScores: %d keys of %d need %d floats (have %d), %d queries (have %d), %d outputs (have %d)",
			nk, hd, (nk-1)*ks+hd, len(k), QueriesLen(hd), len(qt), nk*TileLanes, len(dst)))
	}
	if hd == 0 {
		for i := range dst[:nk*TileLanes] {
			v := float32(0)
			if kscale != nil {
				v = float32(v * kscale[i/TileLanes])
			}
			dst[i] = float32(v * scale)
		}
		return
	}
	if vi := cur().vec; vi != nil {
		vi.attnScores(dst, k, ks, nk, qt, hd, scale, kscale)
		return
	}
	attnScoresGeneric(dst, k, ks, nk, qt, nq, hd, scale, kscale)
}

// SoftmaxRow is attention's softmax for one query whose raw dot products
// with positions 0..n-1 are s[:n]: with x_p = float32(s[p]*scale), or
// float32(float32(s[p]*ks[p])*scale) when ks is not nil, it computes, as
// the scalar loop
//
//	m := -Inf; for each p: if x_p > m { m = x_p }
//	sum := float32(0); for each p: e_p = float32(math.Exp(float64(x_p - m))); sum += e_p
//	inv := 1 / sum; w[p] = float32(e_p * inv)  (then float32(w[p] * vs[p]) when vs != nil)
//
// does. s is not modified.
func SoftmaxRow(w, s []float32, n int, scale float32, ks, vs []float32) {
	switch {
	case n < 0 || len(s) < n || len(w) < n:
		panic(fmt.Sprintf("kernel: SoftmaxRow: %d positions, have %d scores and %d outputs", n, len(s), len(w)))
	case (ks != nil && len(ks) < n) || (vs != nil && len(vs) < n):
		panic(fmt.Sprintf("kernel: SoftmaxRow: %d positions, have %d key and %d value scales", n, len(ks), len(vs)))
	}
	if n == 0 {
		return
	}
	if vi := cur().vec; vi != nil {
		vi.softmaxRow(w, s, n, scale, ks, vs)
		return
	}
	softmaxRowGeneric(w, s, n, scale, ks, vs)
}

// DotRows computes dst[k] = Dot(F32, K[k], q) for k < nk, where the keys
// K[k] = keys[k*len(q) : (k+1)*len(q)] are contiguous float32 rows: the
// scores of one query (a decode step), with the canonical bits. Unlike
// MatMulRows it has no per-call setup, which matters for the short rows
// (a head dimension of 8) and the many calls of decode attention.
func DotRows(dst, keys []float32, nk int, q []float32) {
	hd := len(q)
	if nk < 0 || len(dst) < nk || len(keys) < nk*hd {
		panic(fmt.Sprintf("kernel: DotRows: %d rows of %d need %d floats and %d outputs, have %d and %d", nk, hd, nk*hd, nk, len(keys), len(dst)))
	}
	if nk == 0 {
		return
	}
	if hd == 0 {
		clear(dst[:nk])
		return
	}
	if vi := cur().vec; vi != nil {
		vi.dotRows(dst, keys, nk, q)
		return
	}
	for k := 0; k < nk; k++ {
		dst[k] = dotF32(keys[k*hd:(k+1)*hd], q)
	}
}

// ExpF32 sets dst[i] = float32(math.Exp(float64(src[i]))) for i <
// len(dst), with the bits of the math package's Exp.
func ExpF32(dst, src []float32) {
	if len(src) < len(dst) {
		panic(fmt.Sprintf("kernel: ExpF32: %d inputs for %d outputs", len(src), len(dst)))
	}
	if vi := cur().vec; vi != nil {
		vi.expF32(dst, src)
		return
	}
	expF32Generic(dst, src)
}

// SwiGLU sets g[i] = silu(g[i]) * u[i] for i < len(g), rounded as
//
//	float32(float32(g / float32(1+float32(math.Exp(float64(-g))))) * u)
func SwiGLU(g, u []float32) {
	if len(u) < len(g) {
		panic(fmt.Sprintf("kernel: SwiGLU: %d up values for %d gates", len(u), len(g)))
	}
	if vi := cur().vec; vi != nil {
		vi.swiGLU(g, u)
		return
	}
	swiGLUGeneric(g, u)
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
