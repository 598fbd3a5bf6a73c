// Command asmgen writes the matrix-product micro-kernels of package kernel
// for amd64: mm_amd64.s (the assembly) and mm_amd64.go (the declarations
// and the tables the Go driver picks kernels from).
//
// Run it with go generate in package kernel. A test checks that the files
// in the package are what this program writes.
//
// # The micro-kernel
//
// Every kernel computes an R×C tile of outputs: R weight rows against C
// activation rows over the whole of K, with one 16-lane float32
// accumulator per (row, activation) pair held in registers (one ZMM, or
// two YMM for lanes 0-7 and 8-15). Lane l of a block of 16 elements only
// ever meets lane l of the accumulator, and blocks are taken in order, so
// the tile computes exactly the canonical reduction order of each element;
// the tree over the 16 lanes runs once at the end of K.
//
//	func mm<ISA><T>R<r>C<c>(w *byte, ws uintptr, x *float32, xs uintptr, nb int,
//	                        wt, xt *float32, dst *float32, ds uintptr)
//
// w is weight row 0 of the tile (rows ws bytes apart), x activation row 0
// (xs bytes apart), nb the number of full blocks (16 elements; 32 for
// Q8_0). When wt is not nil, one more block is taken from wt (R rows of 16
// float32, 64 bytes apart: the weights' tail converted, padded with -0)
// and xt (C rows of 16 float32: the activations' tail padded with +0).
// Output (c, r) goes to dst + c*ds + 4*r.
//
// All row pointers advance through one negative offset register that
// counts up to zero, scaled for the activations (x advances 64 bytes per
// block, the weights 64, 32 or 16), so the loop carries one add and a
// branch.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
)

// Kernels prefetch the weights: with pfTiles > 0, the weight tile pfTiles
// tiles ahead (a tile's rows are contiguous, so that is one linear stream,
// spread evenly over the K loop); else, with pfBlocks > 0, each weight row
// pfBlocks blocks ahead. Decode streams the weights from memory and needs
// it to keep enough bytes in flight per core; prefill reads them from L2
// and barely notices. The flags are for experiments (measured on Zen 5 and
// Sapphire Rapids: a tile ahead with PREFETCHT0 was best; PREFETCHNTA
// halved decode bandwidth on Intel); the checked-in files use the defaults.
var (
	pfTiles    = flag.Int("pft", 1, "prefetch the weight tile this many tiles ahead (0: off)")
	pfBlocks   = flag.Int("pf", 0, "prefetch each weight row this many blocks ahead (0: off)")
	pfMaxC     = flag.Int("pfc", 6, "prefetch in kernels of at most this many activation rows")
	pfInstr    = flag.String("pfi", "PREFETCHT0", "prefetch instruction")
	wideRows   = flag.Int("wide", 0, "rows of the wide matrix-vector kernels (0: per ISA default)")
	transposed = flag.Bool("t4", true, "reduce four rows at once on AVX-512")
)

func main() {
	out := flag.String("out", ".", "directory of package kernel")
	flag.Parse()
	s, g := generate()
	if err := os.WriteFile(filepath.Join(*out, "mm_amd64.s"), s, 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "mm_amd64.go"), g, 0o644); err != nil {
		log.Fatal(err)
	}
}

type isa struct {
	name   string // in function names
	key    string // implementation name
	halves int    // registers per 16 lanes
	vreg   string // register prefix
	nvec   int    // vector registers
}

var (
	avx512 = isa{name: "AVX512", key: "avx512", halves: 1, vreg: "Z", nvec: 32}
	avx2   = isa{name: "AVX2", key: "avx2", halves: 2, vreg: "Y", nvec: 16}
)

type dtype struct {
	name  string // Go constant
	wstep int    // weight bytes per block
	block int    // elements per block
}

var (
	f32  = dtype{"F32", 64, 16}
	f16  = dtype{"F16", 32, 16}
	bf16 = dtype{"BF16", 32, 16}
	i8   = dtype{"I8", 16, 16}
	q8   = dtype{"Q8_0", 34, 32}
)

// shape is a set of kernels: R rows (and R=1 for leftover rows) by 1..C
// activation rows, and a wide kernel of W rows by one activation row for
// matrix-vector products, where more rows in flight means more memory
// streams per core.
type shape struct{ r, c, w int }

func shapeFor(is isa, t dtype) shape {
	if *wideRows > 0 && t.name != "Q8_0" {
		sh := shapeFor0(is, t)
		sh.w = *wideRows
		return sh
	}
	return shapeFor0(is, t)
}

func shapeFor0(is isa, t dtype) shape {
	switch {
	case is.key == "avx512" && t.name == "Q8_0":
		return shape{4, 4, 6}
	case is.key == "avx512":
		return shape{4, 6, 8}
	case t.name == "Q8_0":
		return shape{2, 2, 3}
	}
	return shape{2, 3, 4}
}

// kernels lists the (rows, cols) of every kernel of a shape.
func (sh shape) kernels() [][2]int {
	var out [][2]int
	for _, r := range []int{sh.r, 1} {
		for c := 1; c <= sh.c; c++ {
			out = append(out, [2]int{r, c})
		}
	}
	return append(out, [2]int{sh.w, 1})
}

var gprs = []string{"AX", "BX", "CX", "DX", "SI", "DI", "R8", "R9", "R10", "R11", "R12", "R13"}

type emitter struct{ b bytes.Buffer }

func (e *emitter) i(format string, args ...any) {
	fmt.Fprintf(&e.b, "\t"+format+"\n", args...)
}

func (e *emitter) label(l string) { fmt.Fprintf(&e.b, "%s:\n", l) }

func fname(is isa, t dtype, r, c int) string {
	return fmt.Sprintf("mm%s%sR%dC%d", is.name, goName(t), r, c)
}

func goName(t dtype) string {
	if t.name == "Q8_0" {
		return "Q80"
	}
	return t.name
}

// kern holds the register plan of one kernel.
type kern struct {
	is   isa
	t    dtype
	r, c int
	e    *emitter
	w, x []string // row pointer registers
	off  string   // offset register (weights; and activations scaled)
	offx string   // Q8_0: separate activation offset
}

func (k *kern) v(i int) string { return fmt.Sprintf("%s%d", k.is.vreg, i) }

// acc is the register of half h of the accumulator of (row, col).
func (k *kern) acc(row, col, h int) int { return (row*k.c+col)*k.is.halves + h }

func (k *kern) nacc() int { return k.r * k.c * k.is.halves }

// xscale is how many activation bytes go with one weight byte.
func (k *kern) xscale() int { return 64 / k.t.wstep }

func genKernel(e *emitter, is isa, t dtype, r, c int) {
	k := &kern{is: is, t: t, r: r, c: c, e: e}
	k.w = gprs[:r]
	k.x = gprs[r : r+c]
	k.off = gprs[r+c]
	if t.name == "Q8_0" {
		k.offx = gprs[r+c+1]
	}
	vecs := k.nacc() + r + 1
	gp := r + c + 1
	if t.name == "Q8_0" {
		vecs, gp = k.nacc()+3*r+1, gp+1
	}
	if c <= *pfMaxC && *pfTiles > 0 {
		gp++
	}
	if vecs > is.nvec || gp > len(gprs) {
		panic(fmt.Sprintf("%s %s R%dC%d needs %d vector and %d general registers", is.name, t.name, r, c, vecs, gp))
	}
	name := fname(is, t, r, c)
	fmt.Fprintf(&e.b, "\n// func %s(w *byte, ws uintptr, x *float32, xs uintptr, nb int, wt, xt *float32, dst *float32, ds uintptr)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-72\n", name)
	// Zero the accumulators.
	for a := 0; a < k.nacc(); a++ {
		if is.key == "avx512" {
			e.i("VPXORD %s, %s, %s", k.v(a), k.v(a), k.v(a))
		} else {
			e.i("VXORPS %s, %s, %s", k.v(a), k.v(a), k.v(a))
		}
	}
	// Row pointers.
	tmp := k.off
	e.i("MOVQ w+0(FP), %s", k.w[0])
	if r > 1 {
		e.i("MOVQ ws+8(FP), %s", tmp)
		for i := 1; i < r; i++ {
			e.i("LEAQ (%s)(%s*1), %s", k.w[i-1], tmp, k.w[i])
		}
	}
	e.i("MOVQ x+16(FP), %s", k.x[0])
	if c > 1 {
		e.i("MOVQ xs+24(FP), %s", tmp)
		for i := 1; i < c; i++ {
			e.i("LEAQ (%s)(%s*1), %s", k.x[i-1], tmp, k.x[i])
		}
	}
	pf := ""
	if c <= *pfMaxC && *pfTiles > 0 {
		pf = gprs[r+c+1]
		if t.name == "Q8_0" {
			pf = gprs[r+c+2]
		}
		e.i("MOVQ ws+8(FP), %s", pf)
		e.i("IMUL3Q $%d, %s, %s", r**pfTiles, pf, pf)
		e.i("ADDQ %s, %s", k.w[0], pf)
	}
	// Advance the pointers to the end of the full blocks and count a
	// negative offset up to zero.
	e.i("MOVQ nb+32(FP), %s", k.off)
	e.i("TESTQ %s, %s", k.off, k.off)
	e.i("JZ tail")
	if t.name == "Q8_0" {
		e.i("IMUL3Q $%d, %s, %s", t.wstep, k.off, k.off)
		e.i("MOVQ nb+32(FP), %s", k.offx)
		e.i("SHLQ $7, %s", k.offx)
		for _, p := range k.w {
			e.i("ADDQ %s, %s", k.off, p)
		}
		for _, p := range k.x {
			e.i("ADDQ %s, %s", k.offx, p)
		}
		e.i("NEGQ %s", k.off)
		e.i("NEGQ %s", k.offx)
	} else {
		e.i("SHLQ $%d, %s", log2(t.wstep), k.off)
		for _, p := range k.w {
			e.i("ADDQ %s, %s", k.off, p)
		}
		for _, p := range k.x {
			e.i("LEAQ (%s)(%s*%d), %s", p, k.off, k.xscale(), p)
		}
		e.i("NEGQ %s", k.off)
	}
	e.i("PCALIGN $32")
	e.label("loop")
	if pf != "" {
		for j := 0; j*64 < r*t.wstep; j++ {
			e.i("%s %d(%s)", *pfInstr, 64*j, pf)
		}
		e.i("ADDQ $%d, %s", r*t.wstep, pf)
	} else if c <= *pfMaxC && *pfBlocks > 0 {
		// Memory-bound shapes (decode) prefetch each weight row a fixed
		// number of blocks ahead; past a row's end that is the next row,
		// which for the tile's last row is the next tile.
		for _, p := range k.w {
			e.i("%s %d(%s)(%s*1)", *pfInstr, *pfBlocks*t.wstep, p, k.off)
		}
	}
	if t.name == "Q8_0" {
		k.q8Block()
		e.i("ADDQ $128, %s", k.offx)
		e.i("ADDQ $%d, %s", t.wstep, k.off)
	} else {
		k.block(func(row, h int, dst string) { k.loadW(row, h, dst) },
			func(col, h int) string {
				return fmt.Sprintf("%d(%s)(%s*%d)", 32*h, k.x[col], k.off, k.xscale())
			})
		e.i("ADDQ $%d, %s", t.wstep, k.off)
	}
	e.i("JNZ loop")
	e.label("tail")
	if t.name != "Q8_0" {
		// One more float32 block from the padded tails.
		wt, xt := gprs[0], gprs[1]
		e.i("MOVQ wt+40(FP), %s", wt)
		e.i("TESTQ %s, %s", wt, wt)
		e.i("JZ reduce")
		e.i("MOVQ xt+48(FP), %s", xt)
		k.block(func(row, h int, dst string) {
			e.i("VMOVUPS %d(%s), %s", 64*row+32*h, wt, dst)
		}, func(col, h int) string {
			return fmt.Sprintf("%d(%s)", 64*col+32*h, xt)
		})
	}
	e.label("reduce")
	k.reduce()
	e.i("VZEROUPPER")
	e.i("RET")
}

func log2(n int) int {
	l := 0
	for 1<<l < n {
		l++
	}
	return l
}

// block emits one block of 16 elements for the element types: for each
// half, load the R weight vectors, then for each activation row one load
// and R FMAs.
func (k *kern) block(loadW func(row, h int, dst string), xAddr func(col, h int) string) {
	wreg := k.nacc()
	xreg := wreg + k.r
	for h := 0; h < k.is.halves; h++ {
		for row := 0; row < k.r; row++ {
			loadW(row, h, k.v(wreg+row))
		}
		for col := 0; col < k.c; col++ {
			k.e.i("VMOVUPS %s, %s", xAddr(col, h), k.v(xreg))
			for row := 0; row < k.r; row++ {
				k.e.i("VFMADD231PS %s, %s, %s", k.v(wreg+row), k.v(xreg), k.v(k.acc(row, col, h)))
			}
		}
	}
}

// loadW loads half h of the current block of weight row `row`, converted
// to float32, into dst.
func (k *kern) loadW(row, h int, dst string) {
	p, off := k.w[row], k.off
	e := k.e
	switch k.t.name {
	case "F32":
		e.i("VMOVUPS %d(%s)(%s*1), %s", 32*h, p, off, dst)
	case "F16":
		e.i("VCVTPH2PS %d(%s)(%s*1), %s", 16*h, p, off, dst)
	case "BF16":
		e.i("VPMOVZXWD %d(%s)(%s*1), %s", 16*h, p, off, dst)
		e.i("VPSLLD $16, %s, %s", dst, dst)
	case "I8":
		e.i("VPMOVSXBD %d(%s)(%s*1), %s", 8*h, p, off, dst)
		e.i("VCVTDQ2PS %s, %s", dst, dst)
	}
}

// q8Block emits one Q8_0 block of 32: per lane l,
// t = q[l]*x[l]; t = fma(q[16+l], x[16+l], t); acc = fma(t, d, acc).
func (k *kern) q8Block() {
	e := k.e
	base := k.nacc()
	lo := func(row int) string { return k.v(base + 3*row) }
	hi := func(row int) string { return k.v(base + 3*row + 1) }
	d := func(row int) string { return k.v(base + 3*row + 2) }
	t := k.v(base + 3*k.r)
	for row := 0; row < k.r; row++ {
		p := k.w[row]
		// The scale, broadcast: 16 copies of the F16 value converted.
		if k.is.key == "avx512" {
			y := "Y" + d(row)[1:]
			e.i("VPBROADCASTW (%s)(%s*1), %s", p, k.off, y)
			e.i("VCVTPH2PS %s, %s", y, d(row))
		} else {
			x := "X" + d(row)[1:]
			e.i("VPBROADCASTW (%s)(%s*1), %s", p, k.off, x)
			e.i("VCVTPH2PS %s, %s", x, d(row))
		}
	}
	for h := 0; h < k.is.halves; h++ {
		qb := 16 / k.is.halves // int8 bytes per half
		for row := 0; row < k.r; row++ {
			p := k.w[row]
			e.i("VPMOVSXBD %d(%s)(%s*1), %s", 2+qb*h, p, k.off, lo(row))
			e.i("VCVTDQ2PS %s, %s", lo(row), lo(row))
			e.i("VPMOVSXBD %d(%s)(%s*1), %s", 18+qb*h, p, k.off, hi(row))
			e.i("VCVTDQ2PS %s, %s", hi(row), hi(row))
		}
		for col := 0; col < k.c; col++ {
			for row := 0; row < k.r; row++ {
				e.i("VMULPS %d(%s)(%s*1), %s, %s", 32*h, k.x[col], k.offx, lo(row), t)
				e.i("VFMADD231PS %d(%s)(%s*1), %s, %s", 64+32*h, k.x[col], k.offx, hi(row), t)
				e.i("VFMADD231PS %s, %s, %s", t, d(row), k.v(k.acc(row, col, h)))
			}
		}
	}
}

// reduce emits the canonical tree for every accumulator and stores the
// results. On AVX-512, four rows of one activation column are reduced
// together and stored as one vector (see reduce4); the rest one at a time.
func (k *kern) reduce() {
	e := k.e
	dst, ds := gprs[0], gprs[1]
	e.i("MOVQ dst+56(FP), %s", dst)
	if k.c > 1 {
		e.i("MOVQ ds+64(FP), %s", ds)
	}
	tn := k.nacc() // free registers after the loop: tn, tn+1
	if tn+1 >= k.is.nvec {
		panic("no free register")
	}
	tx := fmt.Sprintf("X%d", tn)
	ty := fmt.Sprintf("Y%d", tn)
	for col := 0; col < k.c; col++ {
		row := 0
		for ; k.is.key == "avx512" && *transposed && row+4 <= k.r; row += 4 {
			k.reduce4(row, col, tn, tn+1, dst)
		}
		for ; row < k.r; row++ {
			a := k.acc(row, col, 0)
			ax, ay := fmt.Sprintf("X%d", a), fmt.Sprintf("Y%d", a)
			if k.is.key == "avx512" {
				e.i("VEXTRACTF64X4 $1, Z%d, %s", a, ty)
				e.i("VADDPS %s, %s, %s", ty, ay, ay) // l += l+8
				e.i("VEXTRACTF32X4 $1, %s, %s", ay, tx)
			} else {
				e.i("VADDPS Y%d, %s, %s", k.acc(row, col, 1), ay, ay) // l += l+8
				e.i("VEXTRACTF128 $1, %s, %s", ay, tx)
			}
			e.i("VADDPS %s, %s, %s", tx, ax, ax) // l += l+4
			e.i("VMOVHLPS %s, %s, %s", ax, ax, tx)
			e.i("VADDPS %s, %s, %s", tx, ax, ax) // l += l+2
			e.i("VMOVSHDUP %s, %s", ax, tx)
			e.i("VADDSS %s, %s, %s", tx, ax, ax) // p0 += p1
			e.i("VMOVSS %s, %d(%s)", ax, 4*row, dst)
		}
		if col+1 < k.c {
			e.i("ADDQ %s, %s", ds, dst)
		}
	}
}

// reduce4 runs the canonical tree on the accumulators of rows row..row+3
// of column col at once and stores the four results with one store. t1
// and t2 are free registers. With A..D the four accumulators (16 lanes,
// four 128-bit quarters each):
//
//   - l += l+8: [A.q0 A.q1 B.q0 B.q1] + [A.q2 A.q3 B.q2 B.q3], the same
//     for C and D (VSHUFF32X4);
//   - l += l+4: the quarters 0 and 2 of both results plus 1 and 3, which
//     leaves quarter j holding the four partial sums of row j;
//   - l += l+2 and p0 += p1: the classic 4x4 transposing reduction with
//     VSHUFPS on the four quarters, which leaves [r0 r1 r2 r3].
//
// Every addition pairs the same lanes as the scalar tree, so the bits are
// the same.
func (k *kern) reduce4(row, col, t1, t2 int, dst string) {
	e := k.e
	z := func(i int) string { return fmt.Sprintf("Z%d", i) }
	x := func(i int) string { return fmt.Sprintf("X%d", i) }
	a, b, c, d := k.acc(row, col, 0), k.acc(row+1, col, 0), k.acc(row+2, col, 0), k.acc(row+3, col, 0)
	for _, p := range [][2]int{{a, b}, {c, d}} {
		e.i("VSHUFF32X4 $0x44, %s, %s, %s", z(p[1]), z(p[0]), z(t1))
		e.i("VSHUFF32X4 $0xee, %s, %s, %s", z(p[1]), z(p[0]), z(t2))
		e.i("VADDPS %s, %s, %s", z(t2), z(t1), z(p[0])) // l += l+8
	}
	e.i("VSHUFF32X4 $0x88, %s, %s, %s", z(c), z(a), z(t1))
	e.i("VSHUFF32X4 $0xdd, %s, %s, %s", z(c), z(a), z(t2))
	e.i("VADDPS %s, %s, %s", z(t2), z(t1), z(a)) // l += l+4; quarter j = row j
	e.i("VEXTRACTF32X4 $1, %s, %s", z(a), x(b))
	e.i("VEXTRACTF32X4 $2, %s, %s", z(a), x(c))
	e.i("VEXTRACTF32X4 $3, %s, %s", z(a), x(d))
	for _, p := range [][2]int{{a, b}, {c, d}} {
		e.i("VSHUFPS $0x44, %s, %s, %s", x(p[1]), x(p[0]), x(t1))
		e.i("VSHUFPS $0xee, %s, %s, %s", x(p[1]), x(p[0]), x(t2))
		e.i("VADDPS %s, %s, %s", x(t2), x(t1), x(p[0])) // l += l+2
	}
	e.i("VSHUFPS $0x88, %s, %s, %s", x(c), x(a), x(t1))
	e.i("VSHUFPS $0xdd, %s, %s, %s", x(c), x(a), x(t2))
	e.i("VADDPS %s, %s, %s", x(t2), x(t1), x(a)) // p0 += p1
	e.i("VMOVUPS %s, %d(%s)", x(a), 4*row, dst)
}

var (
	isas   = []isa{avx512, avx2}
	dtypes = []dtype{f32, f16, bf16, i8, q8}
)

const header = "// Code generated by internal/asmgen; DO NOT EDIT.\n\n"

func generate() (asm, decl []byte) {
	var s emitter
	s.b.WriteString(header)
	s.b.WriteString("//go:build amd64 && !purego\n\n#include \"textflag.h\"\n")
	var g bytes.Buffer
	g.WriteString(header)
	g.WriteString("//go:build amd64 && !purego\n\npackage kernel\n")
	for _, is := range isas {
		for _, t := range dtypes {
			for _, rc := range shapeFor(is, t).kernels() {
				genKernel(&s, is, t, rc[0], rc[1])
				fmt.Fprintf(&g, "\n//go:noescape\nfunc %s(w *byte, ws uintptr, x *float32, xs uintptr, nb int, wt, xt *float32, dst *float32, ds uintptr)\n", fname(is, t, rc[0], rc[1]))
			}
		}
	}
	for _, is := range isas {
		genMisc(&s, &g, is)
	}
	for _, is := range isas {
		for _, t := range wsumTypes {
			for nv := 1; nv <= wsumMaxV; nv++ {
				for q := 1; q <= wsumQ(is, nv); q++ {
					genWsum(&s, is, t, q, nv)
					fmt.Fprintf(&g, "\n//go:noescape\nfunc %s(dst *float32, ds uintptr, a *float32, as uintptr, v *byte, vs uintptr, nk int, mask uint64)\n", wsumName(is, t, q, nv))
				}
			}
		}
	}
	genExpKernels(&s, &g)
	genExpKernelsAVX2(&s, &g)
	genScoresKernels(&s, &g)
	// Kernel ids: the Go driver calls through callMM's switch, a direct
	// call per kernel, so that escape analysis sees the //go:noescape of
	// each (a call through a func value would move the driver's tail
	// buffers to the heap).
	var names []string
	for _, is := range isas {
		fmt.Fprintf(&g, "\nvar tiles%s = [numTypes]tileSet{\n", is.name)
		for _, t := range dtypes {
			sh := shapeFor(is, t)
			names = append(names, fname(is, t, sh.w, 1))
			fmt.Fprintf(&g, "%s: {r: %d, c: %d, block: %d, wr: %d, wide: %d,\n", t.name, sh.r, sh.c, t.block, sh.w, len(names))
			for _, r := range []int{sh.r, 1} {
				field := "full"
				if r == 1 {
					field = "one"
				}
				fmt.Fprintf(&g, "%s: [maxC + 1]uint16{0", field)
				for c := 1; c <= sh.c; c++ {
					names = append(names, fname(is, t, r, c))
					fmt.Fprintf(&g, ", %d", len(names))
				}
				g.WriteString("},\n")
			}
			g.WriteString("},\n")
		}
		g.WriteString("}\n")
	}
	g.WriteString("\n// callMM runs micro-kernel id (an entry of the tiles tables).\n")
	g.WriteString("func callMM(id uint16, w *byte, ws uintptr, x *float32, xs uintptr, nb int, wt, xt *float32, dst *float32, ds uintptr) {\nswitch id {\n")
	for i, n := range names {
		fmt.Fprintf(&g, "case %d:\n%s(w, ws, x, xs, nb, wt, xt, dst, ds)\n", i+1, n)
	}
	g.WriteString("default:\npanic(\"kernel: no micro-kernel\")\n}\n}\n")
	genWsumTables(&g)
	for _, is := range isas {
		fmt.Fprintf(&g, "\nfunc axpy%s(t DType, dst *float32, a float32, x *byte, nb int) {\nswitch t {\n", is.name)
		for _, t := range []dtype{f32, f16, bf16, i8} {
			fmt.Fprintf(&g, "case %s:\naxpy%s%s(dst, a, x, nb)\n", t.name, is.name, t.name)
		}
		g.WriteString("default:\npanic(\"kernel: Axpy does not take \" + t.String())\n}\n}\n")
	}
	src, err := format.Source(g.Bytes())
	if err != nil {
		panic(err)
	}
	return s.b.Bytes(), src
}

// genMisc writes the element-wise kernels of one ISA: AXPY for each element
// type, the F16 conversions, and the two limit loops. They all work on
// blocks of 16 elements; the Go side does the remainder.
func genMisc(s *emitter, g *bytes.Buffer, is isa) {
	e := s
	v := func(i int) string { return fmt.Sprintf("%s%d", is.vreg, i) }
	half := 32 / is.halves // bytes of float32 per register
	for _, t := range []dtype{f32, f16, bf16, i8} {
		name := fmt.Sprintf("axpy%s%s", is.name, t.name)
		fmt.Fprintf(&e.b, "\n// func %s(dst *float32, a float32, x *byte, nb int)\n", name)
		fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-32\n", name)
		fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *float32, a float32, x *byte, nb int)\n", name)
		e.i("MOVQ dst+0(FP), DI")
		e.i("VBROADCASTSS a+8(FP), %s", v(15))
		e.i("MOVQ x+16(FP), SI")
		e.i("MOVQ nb+24(FP), CX")
		e.i("TESTQ CX, CX")
		e.i("JZ done")
		e.label("loop")
		k := &kern{is: is, t: t, e: e, w: []string{"SI"}, off: "CX"}
		for h := 0; h < is.halves; h++ {
			// loadW addresses (SI)(CX*1); use a plain (SI) form instead.
			k.loadPlain(h, v(2*h))
			e.i("VMOVUPS %d(DI), %s", 2*half*h, v(2*h+1))
			e.i("VFMADD231PS %s, %s, %s", v(2*h), v(15), v(2*h+1))
			e.i("VMOVUPS %s, %d(DI)", v(2*h+1), 2*half*h)
		}
		e.i("ADDQ $%d, SI", t.wstep)
		e.i("ADDQ $64, DI")
		e.i("DECQ CX")
		e.i("JNZ loop")
		e.label("done")
		e.i("VZEROUPPER")
		e.i("RET")
	}

	name := "toF32F16" + is.name
	fmt.Fprintf(&e.b, "\n// func %s(dst *float32, src *byte, nb int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-24\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *float32, src *byte, nb int)\n", name)
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ src+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.label("loop")
	for h := 0; h < is.halves; h++ {
		e.i("VCVTPH2PS %d(SI), %s", 32/is.halves*h, v(h))
		e.i("VMOVUPS %s, %d(DI)", v(h), 2*half*h)
	}
	e.i("ADDQ $32, SI")
	e.i("ADDQ $64, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	// int8 to float32 (the int8 KV cache's keys for the score kernels).
	name = "toF32I8" + is.name
	fmt.Fprintf(&e.b, "\n// func %s(dst *float32, src *byte, nb int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-24\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *float32, src *byte, nb int)\n", name)
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ src+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.label("loop")
	for h := 0; h < is.halves; h++ {
		e.i("VPMOVSXBD %d(SI), %s", 16/is.halves*h, v(h))
		e.i("VCVTDQ2PS %s, %s", v(h), v(h))
		e.i("VMOVUPS %s, %d(DI)", v(h), 2*half*h)
	}
	e.i("ADDQ $16, SI")
	e.i("ADDQ $64, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	name = "f32ToF16" + is.name
	fmt.Fprintf(&e.b, "\n// func %s(dst *byte, src *float32, nb int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-24\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *byte, src *float32, nb int)\n", name)
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ src+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.label("loop")
	for h := 0; h < is.halves; h++ {
		e.i("VMOVUPS %d(SI), %s", 2*half*h, v(h))
		e.i("VCVTPS2PH $0, %s, %d(DI)", v(h), 32/is.halves*h)
	}
	e.i("ADDQ $64, SI")
	e.i("ADDQ $32, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	// The peak loop: 12 independent accumulators (FMA latency 4 times 2
	// or 3 pipes needs 8 to 12), each iteration 12 FMAs.
	name = "fmaLoop" + is.name
	fmt.Fprintf(&e.b, "\n// func %s(iters int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-8\n", name)
	fmt.Fprintf(g, "\nfunc %s(iters int)\n", name)
	e.i("MOVL $0x3f000000, AX") // 0.5
	e.i("MOVL AX, X15")
	e.i("VBROADCASTSS X15, %s", v(15))
	e.i("VMOVUPS %s, %s", v(15), v(14))
	for a := 0; a < 12; a++ {
		e.i("VXORPS %s, %s, %s", "Y"+fmt.Sprint(a), "Y"+fmt.Sprint(a), "Y"+fmt.Sprint(a))
	}
	e.i("MOVQ iters+0(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.i("PCALIGN $32")
	e.label("loop")
	for a := 0; a < 12; a++ {
		e.i("VFMADD231PS %s, %s, %s", v(14), v(15), v(a))
	}
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	// The bandwidth loop: 256 bytes per iteration into 4 (8 for AVX2)
	// integer accumulators; the result is the sum of all the little-endian
	// uint32 words mod 2^32, which a test checks.
	name = "sumBytes" + is.name
	fmt.Fprintf(&e.b, "\n// func %s(p *byte, n int) uint64\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-24\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(p *byte, n int) uint64\n", name)
	nacc := 4 * is.halves
	for a := 0; a < nacc; a++ {
		e.i("VPXOR Y%d, Y%d, Y%d", a, a, a)
	}
	e.i("MOVQ p+0(FP), SI")
	e.i("MOVQ n+8(FP), CX")
	e.i("SHRQ $8, CX")
	e.i("JZ done")
	e.i("PCALIGN $32")
	e.label("loop")
	for a := 0; a < nacc; a++ {
		if is.key == "avx512" {
			e.i("VPADDD %d(SI), %s, %s", 64*a, v(a), v(a))
		} else {
			e.i("VPADDD %d(SI), %s, %s", 32*a, v(a), v(a))
		}
	}
	e.i("ADDQ $256, SI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	for a := 1; a < nacc; a++ {
		e.i("VPADDD %s, %s, %s", v(a), v(0), v(0))
	}
	if is.key == "avx512" {
		e.i("VEXTRACTI64X4 $1, Z0, Y1")
		e.i("VPADDD Y1, Y0, Y0")
	}
	e.i("VEXTRACTI128 $1, Y0, X1")
	e.i("VPADDD X1, X0, X0")
	e.i("VPSHUFD $0x4e, X0, X1")
	e.i("VPADDD X1, X0, X0")
	e.i("VPSHUFD $0xb1, X0, X1")
	e.i("VPADDD X1, X0, X0")
	e.i("VMOVD X0, AX")
	e.i("MOVQ AX, ret+16(FP)")
	e.i("VZEROUPPER")
	e.i("RET")
}

// loadPlain loads half h of 16 elements at (SI) converted to float32.
func (k *kern) loadPlain(h int, dst string) {
	e := k.e
	switch k.t.name {
	case "F32":
		e.i("VMOVUPS %d(SI), %s", 64/k.is.halves*h, dst)
	case "F16":
		e.i("VCVTPH2PS %d(SI), %s", 16*h, dst)
	case "BF16":
		e.i("VPMOVZXWD %d(SI), %s", 16*h, dst)
		e.i("VPSLLD $16, %s, %s", dst, dst)
	case "I8":
		e.i("VPMOVSXBD %d(SI), %s", 8*h, dst)
		e.i("VCVTDQ2PS %s, %s", dst, dst)
	}
}

// The weighted-sum kernels (attention's values): for Q rows of weights a
// and nv vectors of columns,
//
//	dst[q][c] = fma(a[j][q], v[j][c], dst[q][c])  for j = 0..nk-1 in order
//
// with the Q×nv accumulators in registers for the whole of j: one load (and
// conversion) of each v vector per j, one broadcast per weight, Q×nv FMAs.
// Each output element sees exactly the sequence of single-rounding FMAs of
// a loop of AXPYs, so the result has the same bits.
//
//	func wsum<ISA><T>Q<q>V<nv>(dst *float32, ds uintptr, a *float32, as uintptr,
//	                            v *byte, vs uintptr, nk int, mask uint64)
//
// dst is row 0 of the outputs (rows ds bytes apart), a the weights of key
// 0 (query q at a+4q, keys as bytes apart), v row 0 of the values (rows
// vs bytes apart). On AVX-512 the last vector is loaded and stored under
// the lane mask (mask's low 16 bits), so a row may end inside it; on AVX2
// every vector is whole (8 lanes) and the caller does the rest.
var wsumTypes = []dtype{f32, f16, i8}

const wsumMaxV = 4

// wsumQ is the number of output rows a kernel of nv vectors per row holds:
// Q×nv accumulators, nv values and two broadcasts fit in the registers.
func wsumQ(is isa, nv int) int {
	if is.key == "avx512" {
		return [...]int{0, 8, 8, 8, 6}[nv]
	}
	return [...]int{0, 6, 6, 3, 2}[nv]
}

func wsumName(is isa, t dtype, q, nv int) string {
	return fmt.Sprintf("wsum%s%sQ%dV%d", is.name, goName(t), q, nv)
}

func genWsum(e *emitter, is isa, t dtype, q, nv int) {
	v := func(i int) string { return fmt.Sprintf("%s%d", is.vreg, i) }
	acc := func(row, c int) string { return v(row*nv + c) }
	val := func(c int) string { return v(q*nv + c) }
	bc := func(row int) string { return v(q*nv + nv + row%2) }
	if q*nv+nv+2 > is.nvec {
		panic(fmt.Sprintf("wsum %s Q%dV%d needs too many registers", is.name, q, nv))
	}
	lanes := 16 / is.halves
	es := t.wstep / 16 // bytes per element
	masked := func(c int) bool { return is.key == "avx512" && c == nv-1 }
	name := wsumName(is, t, q, nv)
	fmt.Fprintf(&e.b, "\n// func %s(dst *float32, ds uintptr, a *float32, as uintptr, v *byte, vs uintptr, nk int, mask uint64)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-64\n", name)
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ ds+8(FP), DX")
	e.i("MOVQ a+16(FP), SI")
	e.i("MOVQ as+24(FP), BX")
	e.i("MOVQ v+32(FP), R8")
	e.i("MOVQ vs+40(FP), R9")
	e.i("MOVQ nk+48(FP), CX")
	if is.key == "avx512" {
		e.i("MOVQ mask+56(FP), AX")
		e.i("KMOVW AX, K1")
	}
	// Load the accumulators.
	e.i("MOVQ DI, R10")
	for row := 0; row < q; row++ {
		for c := 0; c < nv; c++ {
			if masked(c) {
				e.i("VMOVUPS.Z %d(R10), K1, %s", 4*lanes*c, acc(row, c))
			} else {
				e.i("VMOVUPS %d(R10), %s", 4*lanes*c, acc(row, c))
			}
		}
		if row+1 < q {
			e.i("ADDQ DX, R10")
		}
	}
	e.i("TESTQ CX, CX")
	e.i("JZ store")
	e.i("PCALIGN $32")
	e.label("loop")
	for c := 0; c < nv; c++ {
		off := lanes * es * c
		d := val(c)
		switch {
		case t.name == "F32" && masked(c):
			e.i("VMOVUPS.Z %d(R8), K1, %s", off, d)
		case t.name == "F32":
			e.i("VMOVUPS %d(R8), %s", off, d)
		case t.name == "F16" && masked(c):
			y := "Y" + d[1:]
			e.i("VMOVDQU16.Z %d(R8), K1, %s", off, y)
			e.i("VCVTPH2PS %s, %s", y, d)
		case t.name == "F16":
			e.i("VCVTPH2PS %d(R8), %s", off, d)
		case t.name == "I8" && masked(c):
			x := "X" + d[1:]
			e.i("VMOVDQU8.Z %d(R8), K1, %s", off, x)
			e.i("VPMOVSXBD %s, %s", x, d)
			e.i("VCVTDQ2PS %s, %s", d, d)
		case t.name == "I8":
			e.i("VPMOVSXBD %d(R8), %s", off, d)
			e.i("VCVTDQ2PS %s, %s", d, d)
		}
	}
	for row := 0; row < q; row++ {
		e.i("VBROADCASTSS %d(SI), %s", 4*row, bc(row))
		for c := 0; c < nv; c++ {
			e.i("VFMADD231PS %s, %s, %s", val(c), bc(row), acc(row, c))
		}
	}
	e.i("ADDQ BX, SI")
	e.i("ADDQ R9, R8")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("store")
	for row := 0; row < q; row++ {
		for c := 0; c < nv; c++ {
			if masked(c) {
				e.i("VMOVUPS %s, K1, %d(DI)", acc(row, c), 4*lanes*c)
			} else {
				e.i("VMOVUPS %s, %d(DI)", acc(row, c), 4*lanes*c)
			}
		}
		if row+1 < q {
			e.i("ADDQ DX, DI")
		}
	}
	e.i("VZEROUPPER")
	e.i("RET")
}

// genWsumTables writes, per ISA, the kernel ids of the weighted sums by
// element type, vectors per row and rows, and the switch that calls them.
func genWsumTables(g *bytes.Buffer) {
	var names []string
	for _, is := range isas {
		fmt.Fprintf(g, "\nvar wsum%s = [numTypes]wsumSet{\n", is.name)
		for _, t := range wsumTypes {
			fmt.Fprintf(g, "%s: {q: [wsumMaxV + 1]int{0", t.name)
			for nv := 1; nv <= wsumMaxV; nv++ {
				fmt.Fprintf(g, ", %d", wsumQ(is, nv))
			}
			g.WriteString("},\nid: [wsumMaxV + 1][wsumMaxQ + 1]uint16{{}")
			for nv := 1; nv <= wsumMaxV; nv++ {
				g.WriteString(", {0")
				for q := 1; q <= wsumQ(is, nv); q++ {
					names = append(names, wsumName(is, t, q, nv))
					fmt.Fprintf(g, ", %d", len(names))
				}
				g.WriteString("}")
			}
			g.WriteString("}},\n")
		}
		g.WriteString("}\n")
	}
	g.WriteString("\n// callWsum runs weighted-sum kernel id (an entry of the wsum tables).\n")
	g.WriteString("func callWsum(id uint16, dst *float32, ds uintptr, a *float32, as uintptr, v *byte, vs uintptr, nk int, mask uint64) {\nswitch id {\n")
	for i, n := range names {
		fmt.Fprintf(g, "case %d:\n%s(dst, ds, a, as, v, vs, nk, mask)\n", i+1, n)
	}
	g.WriteString("default:\npanic(\"kernel: no weighted-sum kernel\")\n}\n}\n")
}
