//go:build amd64 && !purego

package kernel

import (
	"encoding/binary"
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate go run ./internal/asmgen -out .

// hasAVX2 is the AVX2 path's requirement: AVX2, FMA and F16C, with the OS
// saving the YMM state (x/sys/cpu checks XGETBV for AVX and AVX2).
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C && cpu.X86.HasAVX

// hasAVX512 is the AVX-512 path's requirement: F, BW and VL, with the OS
// saving the ZMM and opmask state (x/sys/cpu checks XGETBV), plus the AVX2
// set for the 256-bit helpers.
var hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL

func archImpls() []*impl {
	var out []*impl
	if hasAVX512 {
		out = append(out, &impl{name: "avx512", vec: &vecImpl{avx512: true, tiles: &tilesAVX512, wsum: &wsumAVX512, lanes: 16}})
	}
	if hasAVX2 {
		out = append(out, &impl{name: "avx2", vec: &vecImpl{tiles: &tilesAVX2, wsum: &wsumAVX2, lanes: 8}})
	}
	return out
}

// maxC is the most activation rows a micro-kernel takes.
const maxC = 6

// tileSet is one element type's micro-kernels on one ISA: full[c] is the
// id (for callMM) of the kernel for r weight rows by c activation rows,
// one[c] for a single weight row, and wide the kernel for wr weight rows
// by one activation row (matrix-vector products).
type tileSet struct {
	r, c, block int
	full, one   [maxC + 1]uint16
	wr          int
	wide        uint16
}

// vecImpl is an assembly implementation: AVX-512 or AVX2.
type vecImpl struct {
	avx512 bool
	tiles  *[numTypes]tileSet
	wsum   *[numTypes]wsumSet
	lanes  int // float32 lanes per register
}

// wsumMaxQ is the most output rows a weighted-sum kernel takes.
const wsumMaxQ = 8

// wsumSet is one element type's weighted-sum kernels on one ISA: id[nv][q]
// (for callWsum) holds q output rows of nv vectors, q up to q[nv].
type wsumSet struct {
	q  [wsumMaxV + 1]int
	id [wsumMaxV + 1][wsumMaxQ + 1]uint16
}

// wsumMaxV is the most vectors per row a weighted-sum kernel takes.
const wsumMaxV = 4

func (v *vecImpl) dot(t DType, w []byte, x []float32) float32 {
	return dotTiles(v.tiles, t, w, x)
}

func (v *vecImpl) matMulRows(dst []float32, w Mat, x []float32, n, r0, r1 int) {
	matMulTiles(v.tiles, dst, w, x, n, r0, r1)
}

func (v *vecImpl) axpyBlocks(t DType, dst *float32, a float32, x *byte, nb int) {
	if v.avx512 {
		axpyAVX512(t, dst, a, x, nb)
	} else {
		axpyAVX2(t, dst, a, x, nb)
	}
}

func (v *vecImpl) axpy(t DType, dst []float32, a float32, x []byte) {
	nb := len(dst) / 16
	if nb > 0 {
		v.axpyBlocks(t, &dst[0], a, &x[0], nb)
	}
	axpyGeneric(t, dst[16*nb:], a, x[RowBytes(t, 16*nb):])
}

func (v *vecImpl) axpyF32(dst []float32, a float32, x []float32) {
	nb := len(dst) / 16
	if nb > 0 {
		v.axpyBlocks(F32, &dst[0], a, (*byte)(unsafe.Pointer(&x[0])), nb)
	}
	axpyF32Generic(dst[16*nb:], a, x[16*nb:])
}

// weightedSum runs the kernels over column groups of up to wsumMaxV
// vectors and row groups of up to the kernel's q. On AVX-512 a row's last
// vector is masked; on AVX2 the columns past the last whole vector are
// left to the pure-Go code. Every output element is computed by exactly
// one kernel call, over all nk keys in order.
func (v *vecImpl) weightedSum(t DType, dst []float32, ds int, a []float32, as int, vb []byte, rb, nq, nk, cols int) {
	if t == BF16 {
		weightedSumGeneric(t, dst, ds, a, as, vb, rb, nq, nk, cols)
		return
	}
	ws := &v.wsum[t]
	lanes := v.lanes
	es := RowBytes(t, 1)
	vecCols := cols
	if !v.avx512 {
		vecCols = cols / lanes * lanes
	}
	for c0 := 0; c0 < vecCols; c0 += wsumMaxV * lanes {
		nv := min(wsumMaxV, (vecCols-c0+lanes-1)/lanes)
		last := vecCols - c0 - (nv-1)*lanes // columns in the last vector
		mask := uint64(1)<<last - 1
		qm := ws.q[nv]
		for q0 := 0; q0 < nq; q0 += qm {
			q := min(qm, nq-q0)
			callWsum(ws.id[nv][q], &dst[q0*ds+c0], uintptr(4*ds), &a[q0], uintptr(4*as), &vb[c0*es], uintptr(rb), nk, mask)
		}
	}
	if vecCols < cols {
		weightedSumGeneric(t, dst[vecCols:], ds, a, as, vb[vecCols*es:], rb, nq, nk, cols-vecCols)
	}
}

func (v *vecImpl) softmaxTile(w, s []float32, n, nq, first int, vs []float32) {
	if !v.avx512 {
		softmaxTileWith(w, s, n, nq, first, vs, expF32Blocks2)
		return
	}
	var vp *float32
	if vs != nil {
		vp = &vs[0]
	}
	softmaxAVX512(&w[0], &s[0], n, first, uint64(1)<<nq-1, vp)
}

// attnScores runs the main score kernel over whole groups of keys and the
// one-key kernel over the rest.
func (v *vecImpl) attnScores(dst, k []float32, ks, nk int, qt []float32, hd int, scale float32, kscale []float32) {
	var sp *float32
	if kscale != nil {
		sp = &kscale[0]
	}
	kk, ksb := 1, uintptr(4*ks)
	if v.avx512 {
		kk = 4
	}
	if g := nk / kk; g > 0 {
		switch {
		case v.avx512 && sp != nil:
			scoresAVX512K4S(&dst[0], &k[0], ksb, &qt[0], hd, scale, sp, g)
		case v.avx512:
			scoresAVX512K4(&dst[0], &k[0], ksb, &qt[0], hd, scale, nil, g)
		case sp != nil:
			scoresAVX2K1S(&dst[0], &k[0], ksb, &qt[0], hd, scale, sp, g)
		default:
			scoresAVX2K1(&dst[0], &k[0], ksb, &qt[0], hd, scale, nil, g)
		}
	}
	for key := nk / kk * kk; key < nk; key++ {
		d, kr := &dst[key*TileLanes], &k[key*ks]
		switch {
		case v.avx512 && sp != nil:
			scoresAVX512K1S(d, kr, ksb, &qt[0], hd, scale, &kscale[key], 1)
		case v.avx512:
			scoresAVX512K1(d, kr, ksb, &qt[0], hd, scale, nil, 1)
		}
	}
}

func (v *vecImpl) softmaxRow(w, s []float32, n int, scale float32, ks, vs []float32) {
	if !v.avx512 {
		softmaxRowWith(w, s, n, scale, ks, vs, expF32Blocks2)
		return
	}
	var kp, vp *float32
	if ks != nil {
		kp = &ks[0]
	}
	if vs != nil {
		vp = &vs[0]
	}
	softmaxRowAVX512(&w[0], &s[0], n, scale, kp, vp)
}

func (v *vecImpl) dotRows(dst, keys []float32, nk int, q []float32) {
	hd := len(q)
	if !v.avx512 {
		w := Mat{Type: F32, Rows: nk, Cols: hd, Data: unsafe.Slice((*byte)(unsafe.Pointer(&keys[0])), 4*nk*hd)}
		matMulTiles(v.tiles, dst, w, q, 1, 0, nk)
		return
	}
	rs := uintptr(4 * hd)
	if g := nk / 4; g > 0 {
		dotRowsAVX512K4(&dst[0], &keys[0], rs, &q[0], hd, g)
	}
	if r := nk % 4; r > 0 {
		dotRowsAVX512K1(&dst[nk-r], &keys[(nk-r)*hd], rs, &q[0], hd, r)
	}
}

func (v *vecImpl) expF32(dst, src []float32) {
	if v.avx512 {
		expF32Blocks512(dst, src)
	} else {
		expF32Blocks2(dst, src)
	}
}

// expF32Blocks512 and expF32Blocks2 are ExpF32 on one ISA: the kernel on
// the blocks of 16, pure Go on the rest.
func expF32Blocks512(dst, src []float32) {
	nb := len(dst) / 16
	if nb > 0 {
		expF32AVX512(&dst[0], &src[0], nb)
	}
	expF32Generic(dst[16*nb:], src[16*nb:])
}

func expF32Blocks2(dst, src []float32) {
	nb := len(dst) / 16
	if nb > 0 {
		expF32AVX2(&dst[0], &src[0], nb)
	}
	expF32Generic(dst[16*nb:], src[16*nb:])
}

func (v *vecImpl) swiGLU(g, u []float32) {
	nb := len(g) / 16
	if nb > 0 {
		if v.avx512 {
			swigluAVX512(&g[0], &u[0], nb)
		} else {
			swigluAVX2(&g[0], &u[0], nb)
		}
	}
	swiGLUGeneric(g[16*nb:], u[16*nb:])
}

func (v *vecImpl) toF32(t DType, dst []float32, src []byte) {
	if t != F16 && t != I8 {
		toF32Generic(t, dst, src)
		return
	}
	nb := len(dst) / 16
	if nb > 0 {
		switch {
		case t == F16 && v.avx512:
			toF32F16AVX512(&dst[0], &src[0], nb)
		case t == F16:
			toF32F16AVX2(&dst[0], &src[0], nb)
		case v.avx512:
			toF32I8AVX512(&dst[0], &src[0], nb)
		default:
			toF32I8AVX2(&dst[0], &src[0], nb)
		}
	}
	toF32Generic(t, dst[16*nb:], src[RowBytes(t, 16*nb):])
}

func (v *vecImpl) f32ToF16(dst []byte, src []float32) {
	nb := len(src) / 16
	if nb > 0 {
		if v.avx512 {
			f32ToF16AVX512(&dst[0], &src[0], nb)
		} else {
			f32ToF16AVX2(&dst[0], &src[0], nb)
		}
	}
	f32ToF16Generic(dst[32*nb:], src[16*nb:])
}

func (v *vecImpl) fmaLoop(iters int) float64 {
	if v.avx512 {
		fmaLoopAVX512(iters)
	} else {
		fmaLoopAVX2(iters)
	}
	return float64(iters) * 12 * float64(v.lanes) * 2
}

func (v *vecImpl) sumBytes(b []byte) uint64 {
	n := len(b) &^ 255
	if n == 0 {
		return 0
	}
	if v.avx512 {
		return sumBytesAVX512(&b[0], n)
	}
	return sumBytesAVX2(&b[0], n)
}

// negZero pads the weights' tail: (-0)*(+0) = -0, and adding -0 leaves
// every partial sum as it was.
var negZero = float32(math.Copysign(0, -1))

// wTail converts the elements of row w from index from to k-1 into the
// first lanes of dst and pads the rest with -0. (It runs once per row and
// call, so for short rows, a head dimension of 8, it is much of the work:
// the type switch stays out of the loop.)
func wTail(t DType, dst *[16]float32, w []byte, from, k int) {
	n := k - from
	switch t {
	case F32:
		src := w[4*from : 4*k]
		for l := range n {
			dst[l] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*l:]))
		}
	case F16:
		src := w[2*from : 2*k]
		for l := range n {
			dst[l] = f16ToF32(binary.LittleEndian.Uint16(src[2*l:]))
		}
	case BF16:
		src := w[2*from : 2*k]
		for l := range n {
			dst[l] = bf16ToF32(binary.LittleEndian.Uint16(src[2*l:]))
		}
	case I8:
		src := w[from:k]
		for l := range n {
			dst[l] = float32(int8(src[l]))
		}
	}
	for l := n; l < 16; l++ {
		dst[l] = negZero
	}
}

// xTail copies x[from:] into dst and pads with +0.
func xTail(dst *[16]float32, x []float32, from int) {
	*dst = [16]float32{}
	copy(dst[:], x[from:])
}

func dotTiles(tiles *[numTypes]tileSet, t DType, w []byte, x []float32) float32 {
	k := len(x)
	if k == 0 {
		return 0
	}
	tl := &tiles[t]
	nb := k / tl.block
	var out float32
	var wt, xt [16]float32
	var wtp, xtp *float32
	if from := nb * tl.block; from < k {
		wTail(t, &wt, w, from, k)
		xTail(&xt, x, from)
		wtp, xtp = &wt[0], &xt[0]
	}
	callMM(tl.one[1], &w[0], 0, &x[0], 0, nb, wtp, xtp, &out, 0)
	return out
}

// Cache blocking of matMulTiles: activations are taken in chunks of up to
// batchBlock rows, weights in blocks of up to rowBlock rows (and about
// rowBlockBytes), so that a weight block stays in L2 while every
// micro-kernel group of activation rows (a few KiB each, in L1) passes
// over it.
const (
	batchBlock    = 64
	rowBlock      = 96
	rowBlockBytes = 192 << 10
	// smallBatchBytes is the most activation bytes taken as a small batch.
	smallBatchBytes = 64 << 10
)

func matMulTiles(tiles *[numTypes]tileSet, dst []float32, w Mat, x []float32, n, r0, r1 int) {
	k := w.Cols
	if k == 0 {
		for b := 0; b < n; b++ {
			clear(dst[b*w.Rows+r0 : b*w.Rows+r1])
		}
		return
	}
	tl := &tiles[w.Type]
	rb := RowBytes(w.Type, k)
	nb := k / tl.block
	from := nb * tl.block
	tail := from < k
	rowsPer := min(rowBlock, max(1, rowBlockBytes/rb))
	rowsPer = max(rowsPer/(tl.r*tl.wr)*(tl.r*tl.wr), tl.r*tl.wr)
	// Every kernel prefetches the tile after its own; start the first.
	prefetchLines(&w.Data[r0*rb], min(r1-r0, max(tl.wr, tl.r))*rb)
	if !tail {
		matMulBlocks(tl, dst, w, x, n, r0, r1, rowsPer, nil)
		return
	}
	// The padded tails live on this frame only when there is a tail:
	// zeroing 10 KiB on every call would cost small products (decode of
	// a small model) more than their arithmetic.
	var tb tailBufs
	matMulBlocks(tl, dst, w, x, n, r0, r1, rowsPer, &tb)
}

// tailBufs holds the padded tails of a block of weight rows and of
// activation rows (see wTail and xTail).
type tailBufs struct {
	wt [rowBlock][16]float32
	xt [batchBlock][16]float32
}

// matMulBlocks is matMulTiles' loop over cache blocks; tb is nil when K is
// a multiple of the block.
func matMulBlocks(tl *tileSet, dst []float32, w Mat, x []float32, n, r0, r1, rowsPer int, tb *tailBufs) {
	k := w.Cols
	rb := RowBytes(w.Type, k)
	nb := k / tl.block
	from := nb * tl.block
	tail := tb != nil
	var wtp, xtp *float32
	ws, xs, ds := uintptr(rb), uintptr(4*k), uintptr(4*w.Rows)
	for b0 := 0; b0 < n; b0 += batchBlock {
		b1 := min(n, b0+batchBlock)
		if tail {
			for b := b0; b < b1; b++ {
				xTail(&tb.xt[b-b0], x[b*k:(b+1)*k], from)
			}
		}
		for q0 := r0; q0 < r1; q0 += rowsPer {
			q1 := min(r1, q0+rowsPer)
			if tail {
				for r := q0; r < q1; r++ {
					wTail(w.Type, &tb.wt[r-q0], w.Data[r*rb:(r+1)*rb], from, k)
				}
			}
			// tile runs weight rows [r, r+nr) against activation rows
			// [c0, c0+cc); nr is wr (cc 1 only), r or 1.
			tile := func(r, nr, c0, cc int) {
				id := tl.one[cc]
				switch nr {
				case tl.wr:
					id = tl.wide
				case tl.r:
					id = tl.full[cc]
				}
				if tail {
					wtp, xtp = &tb.wt[r-q0][0], &tb.xt[c0-b0][0]
				}
				callMM(id, &w.Data[r*rb], ws, &x[c0*k], xs, nb, wtp, xtp, &dst[c0*w.Rows+r], ds)
			}
			if (b1-b0)*k*4 <= smallBatchBytes {
				// Few activations (decode): they stay in L1, so take each
				// weight tile once, against every group of them, and go
				// on streaming the weights.
				for r := q0; r < q1; {
					nr := tl.r
					switch {
					case b1-b0 == 1 && r+tl.wr <= q1:
						nr = tl.wr
					case r+tl.r > q1:
						nr = 1
					}
					for c0 := b0; c0 < b1; c0 += tl.c {
						tile(r, nr, c0, min(tl.c, b1-c0))
					}
					r += nr
				}
				continue
			}
			// Many activations (prefill): a group of them stays in L1
			// while it passes over the weight block, which stays in L2.
			for c0 := b0; c0 < b1; c0 += tl.c {
				cc := min(tl.c, b1-c0)
				r := q0
				for ; cc == 1 && r+tl.wr <= q1; r += tl.wr {
					tile(r, tl.wr, c0, cc)
				}
				for ; r+tl.r <= q1; r += tl.r {
					tile(r, tl.r, c0, cc)
				}
				for ; r < q1; r++ {
					tile(r, 1, c0, cc)
				}
			}
		}
	}
}
