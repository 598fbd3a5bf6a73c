package main

import (
	"bytes"
	"fmt"
)

// The exponential kernels: float32(math.Exp(float64(x))) for float32 x,
// bit for bit, on vectors.
//
// On amd64 with FMA (every machine the vector kernels run on), math.Exp
// is the assembly archExp, whose FMA path is a straight line of IEEE
// double operations for |x| <= 700:
//
//	n  = round(x*log2e)                  (CVTSD2SL, nearest even)
//	r  = x - n*ln2u - n*ln2l             (two fused negated multiply-adds)
//	r  = r/16
//	p  = c8; p = r*p + c for c in c7..c3, 1/2, 1   (fused)
//	r  = r*p
//	3×: r = r*(r+2);  then r = (r+2)*r + 1 (fused)
//	exp = r * 2^n
//
// The kernels run the same operations on eight doubles per AVX-512
// register (four per AVX2 register), so each lane has the bits archExp
// gives; converting to float32 rounds as float32() does. Outside the
// straight line, archExp returns x for NaN, 0 below the float64 range and
// +Inf above it; the float32 results of every |x| > 700 are 0 and +Inf,
// which the kernels blend in, and NaN lanes take x, converted as Go
// converts it. The constants are archExp's, written with the same
// literals.
var expConsts = []struct{ name, lit string }{
	{"LOG2E", "1.4426950408889634073599246810018920"},
	{"LN2U", "0.69314718055966295651160180568695068359375"},
	{"LN2L", "0.28235290563031577122588448175013436025525412068e-12"},
	{"SIXTEENTH", "0.0625"},
	{"C8", "2.4801587301587301587e-5"},
	{"C7", "1.9841269841269841270e-4"},
	{"C6", "1.3888888888888888889e-3"},
	{"C5", "8.3333333333333333333e-3"},
	{"C4", "4.1666666666666666667e-2"},
	{"C3", "1.6666666666666666667e-1"},
	{"HALF", "0.5"},
	{"ONE", "1.0"},
	{"TWO", "2.0"},
	{"BIAS", "1023"},                 // int64
	{"LO", "-700.0"},                 // below: 0
	{"HI", "700.0"},                  // above: +Inf
	{"INF", "0x7FF0000000000000"},    // +Inf (float64)
	{"ONE32", "0x3f800000"},          // 1.0 (float32, low half)
	{"SIGN32", "0x80000000"},         // float32 sign bit (low half)
	{"NEGINF32", "0xff800000"},       // -Inf (float32, low half)
	{"LANES", "0x0706050403020100"},  // int8 lane numbers 0..7 (AVX2 masks)
	{"LANES2", "0x0f0e0d0c0b0a0908"}, // 8..15
}

func expOff(name string) int {
	for i, c := range expConsts {
		if c.name == name {
			return 8 * i
		}
	}
	panic("no constant " + name)
}

func expAddr(name string) string { return fmt.Sprintf("expconst<>+%d(SB)", expOff(name)) }

func genExpData(e *emitter) {
	e.b.WriteString("\n// archExp's constants (math/exp_amd64.s) and the float32 helpers.\n")
	for i, c := range expConsts {
		fmt.Fprintf(&e.b, "DATA expconst<>+%d(SB)/8, $%s\n", 8*i, c.lit)
	}
	fmt.Fprintf(&e.b, "GLOBL expconst<>(SB), RODATA|NOPTR, $%d\n", 8*len(expConsts))
}

// AVX-512 register plan of the exponential: Z16-Z29 hold the constants
// LOG2E .. BIAS in order, Z13 +Inf; a call uses its input, its output and
// eleven work registers below Z13.
const (
	zLog2e = 16 + iota
	zLn2u
	zLn2l
	zSixteenth
	zC8
	zC7
	zC6
	zC5
	zC4
	zC3
	zHalf
	zOne
	zTwo
	zBias
	zInf = 13
)

func expLoadConstsAVX512(e *emitter) {
	for i, name := range []string{"LOG2E", "LN2U", "LN2L", "SIXTEENTH", "C8", "C7", "C6", "C5", "C4", "C3", "HALF", "ONE", "TWO", "BIAS"} {
		e.i("VBROADCASTSD %s, Z%d", expAddr(name), zLog2e+i)
	}
	e.i("VBROADCASTSD %s, Z%d", expAddr("INF"), zInf)
}

// expAVX512 emits out = float32(archExp(float64(in))) for the 16 float32
// lanes of Z<in>. work lists 11 free registers; in may equal out. Two
// AVX-512 instructions stand for several of archExp's: VRNDSCALEPD gives
// round(t) as a double directly (CVTSD2SL then CVTSL2SD, round to nearest
// even, for |t| < 2^31), and VSCALEFPD multiplies by 2^n exactly, as the
// multiplication by the power of two built from n's bits does while the
// result is normal (|x| <= 700). Without hi, inputs above 700 are taken
// not to occur (softmax: every input is at most 0, -Inf or NaN).
func expAVX512(e *emitter, in, out int, work []int, hi bool) {
	z := func(i int) string { return fmt.Sprintf("Z%d", i) }
	y := func(i int) string { return fmt.Sprintf("Y%d", i) }
	// Two halves of eight doubles, interleaved: x, t/n, nd, r, p.
	h := [2][5]int{{work[0], work[1], work[2], work[3], work[4]}, {work[5], work[6], work[7], work[8], work[9]}}
	tmp := work[10]
	e.i("VCVTPS2PD %s, %s", y(in), z(h[0][0]))
	e.i("VEXTRACTF64X4 $1, %s, %s", z(in), y(tmp))
	e.i("VCVTPS2PD %s, %s", y(tmp), z(h[1][0]))
	both := func(f func(x, t, nd, r, p string, yt string)) {
		for _, hh := range h {
			f(z(hh[0]), z(hh[1]), z(hh[2]), z(hh[3]), z(hh[4]), y(hh[1]))
		}
	}
	both(func(x, t, nd, r, p, yt string) { e.i("VMULPD Z%d, %s, %s", zLog2e, x, t) })
	both(func(x, t, nd, r, p, yt string) { e.i("VRNDSCALEPD $8, %s, %s", t, nd) })
	both(func(x, t, nd, r, p, yt string) { e.i("VMOVAPD %s, %s", x, r) })
	both(func(x, t, nd, r, p, yt string) { e.i("VFNMADD231PD Z%d, %s, %s", zLn2u, nd, r) })
	both(func(x, t, nd, r, p, yt string) { e.i("VFNMADD231PD Z%d, %s, %s", zLn2l, nd, r) })
	both(func(x, t, nd, r, p, yt string) { e.i("VMULPD Z%d, %s, %s", zSixteenth, r, r) })
	both(func(x, t, nd, r, p, yt string) { e.i("VMOVAPD Z%d, %s", zC8, p) })
	for _, c := range []int{zC7, zC6, zC5, zC4, zC3, zHalf, zOne} {
		both(func(x, t, nd, r, p, yt string) { e.i("VFMADD213PD Z%d, %s, %s", c, r, p) })
	}
	both(func(x, t, nd, r, p, yt string) { e.i("VMULPD %s, %s, %s", p, r, r) })
	for range 3 {
		both(func(x, t, nd, r, p, yt string) { e.i("VADDPD Z%d, %s, %s", zTwo, r, p) })
		both(func(x, t, nd, r, p, yt string) { e.i("VMULPD %s, %s, %s", p, r, r) })
	}
	both(func(x, t, nd, r, p, yt string) { e.i("VADDPD Z%d, %s, %s", zTwo, r, p) })
	both(func(x, t, nd, r, p, yt string) { e.i("VFMADD213PD Z%d, %s, %s", zOne, p, r) })
	// r * 2^n.
	both(func(x, t, nd, r, p, yt string) { e.i("VSCALEFPD %s, %s, %s", nd, r, r) })
	// Outside the straight line: 0 below, +Inf above, x itself for NaN.
	both(func(x, t, nd, r, p, yt string) {
		e.i("VCMPPD.BCST $0x11, %s, %s, K2", expAddr("LO"), x)
		e.i("VPXORQ %s, %s, K2, %s", r, r, r)
		if hi {
			e.i("VCMPPD.BCST $0x1e, %s, %s, K3", expAddr("HI"), x)
			e.i("VMOVAPD Z%d, K3, %s", zInf, r)
		}
		e.i("VCMPPD $3, %s, %s, K4", x, x)
		e.i("VMOVAPD %s, K4, %s", x, r)
	})
	e.i("VCVTPD2PS %s, %s", z(h[0][3]), y(out))
	e.i("VCVTPD2PS %s, %s", z(h[1][3]), y(tmp))
	e.i("VINSERTF64X4 $1, %s, %s, %s", y(tmp), z(out), z(out))
}

// genExpKernels writes, for AVX-512, ExpF32's and SwiGLU's loops over
// blocks of 16 and the softmax of a query tile.
func genExpKernels(s *emitter, g *bytes.Buffer) {
	e := s
	genExpData(e)
	work := []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

	fmt.Fprintf(&e.b, "\n// func expF32AVX512(dst, src *float32, nb int)\n")
	fmt.Fprintf(&e.b, "TEXT ·expF32AVX512(SB), NOSPLIT, $0-24\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc expF32AVX512(dst, src *float32, nb int)\n")
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ src+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	expLoadConstsAVX512(e)
	e.label("loop")
	e.i("VMOVUPS (SI), Z0")
	expAVX512(e, 0, 1, work, true)
	e.i("VMOVUPS Z1, (DI)")
	e.i("ADDQ $64, SI")
	e.i("ADDQ $64, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	// g = float32(float32(g / float32(1 + e)) * u) with e the exponential
	// of -g: SwiGLU as the pure-Go loop rounds it.
	fmt.Fprintf(&e.b, "\n// func swigluAVX512(gate, up *float32, nb int)\n")
	fmt.Fprintf(&e.b, "TEXT ·swigluAVX512(SB), NOSPLIT, $0-24\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc swigluAVX512(gate, up *float32, nb int)\n")
	e.i("MOVQ gate+0(FP), DI")
	e.i("MOVQ up+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	expLoadConstsAVX512(e)
	e.i("VPBROADCASTD %s, Z14", expAddr("SIGN32"))
	e.i("VBROADCASTSS %s, Z15", expAddr("ONE32"))
	e.label("loop")
	e.i("VMOVUPS (DI), Z0")
	e.i("VPXORD Z14, Z0, Z1")
	expAVX512(e, 1, 1, work, true)
	e.i("VADDPS Z1, Z15, Z1")
	e.i("VDIVPS Z1, Z0, Z0")
	e.i("VMULPS (SI), Z0, Z0")
	e.i("VMOVUPS Z0, (DI)")
	e.i("ADDQ $64, SI")
	e.i("ADDQ $64, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	// The softmax of a query tile (see SoftmaxTile): three passes over
	// n positions of 16 lanes. Lane q takes positions 0..first+q; K1 is
	// that mask for the current position (lanes below nq only).
	fmt.Fprintf(&e.b, "\n// func softmaxAVX512(w, s *float32, n, first int, qmask uint64, vs *float32)\n")
	fmt.Fprintf(&e.b, "TEXT ·softmaxAVX512(SB), NOSPLIT, $0-48\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc softmaxAVX512(w, s *float32, n, first int, qmask uint64, vs *float32)\n")
	e.i("MOVQ w+0(FP), DI")
	e.i("MOVQ s+8(FP), SI")
	e.i("MOVQ n+16(FP), R11")
	e.i("MOVQ first+24(FP), DX")
	e.i("MOVQ qmask+32(FP), R10")
	e.i("MOVQ vs+40(FP), R8")
	e.i("TESTQ R11, R11")
	e.i("JZ done")
	mask := func() {
		// K1 = qmask & 0xffff<<max(0, pos-first), pos in R9.
		e.i("XORL BX, BX")
		e.i("MOVQ R9, CX")
		e.i("SUBQ DX, CX")
		e.i("CMOVQLT BX, CX")
		e.i("MOVL $0xffff, BX")
		e.i("SHLL CL, BX")
		e.i("ANDL R10, BX")
		e.i("KMOVW BX, K1")
	}
	// Pass 1: the maximum of each lane (NaN skipped, ties keep the first).
	e.i("VPBROADCASTD %s, Z31", expAddr("NEGINF32"))
	e.i("MOVQ SI, AX")
	e.i("XORQ R9, R9")
	e.label("max")
	mask()
	e.i("VMOVUPS (AX), Z0")
	e.i("VMAXPS Z31, Z0, K1, Z31")
	e.i("ADDQ $64, AX")
	e.i("INCQ R9")
	e.i("CMPQ R9, R11")
	e.i("JLT max")
	// Pass 2: e = exp(s - max) into w, and each lane's sum in order.
	expLoadConstsAVX512(e)
	e.i("VPXORD Z30, Z30, Z30")
	e.i("MOVQ SI, AX")
	e.i("MOVQ DI, R12")
	e.i("XORQ R9, R9")
	e.label("exp")
	mask()
	e.i("VMOVUPS (AX), Z0")
	e.i("VSUBPS Z31, Z0, Z0")
	expAVX512(e, 0, 1, work, false)
	e.i("VMOVUPS Z1, (R12)")
	e.i("VADDPS Z1, Z30, K1, Z30")
	e.i("ADDQ $64, AX")
	e.i("ADDQ $64, R12")
	e.i("INCQ R9")
	e.i("CMPQ R9, R11")
	e.i("JLT exp")
	// Pass 3: w = e * (1/sum), times the position's scale when vs is set.
	e.i("VBROADCASTSS %s, Z2", expAddr("ONE32"))
	e.i("VDIVPS Z30, Z2, Z2")
	e.i("MOVQ DI, R12")
	e.i("MOVQ R11, CX")
	e.i("TESTQ R8, R8")
	e.i("JNZ scaled")
	e.label("plain")
	e.i("VMULPS (R12), Z2, Z0")
	e.i("VMOVUPS Z0, (R12)")
	e.i("ADDQ $64, R12")
	e.i("DECQ CX")
	e.i("JNZ plain")
	e.i("JMP done")
	e.label("scaled")
	e.i("VMULPS (R12), Z2, Z0")
	e.i("VMULPS.BCST (R8), Z0, Z0")
	e.i("VMOVUPS Z0, (R12)")
	e.i("ADDQ $64, R12")
	e.i("ADDQ $4, R8")
	e.i("DECQ CX")
	e.i("JNZ scaled")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	genSoftmaxRow(e, g, work)
}

// genSoftmaxRow writes the softmax of one query (see SoftmaxRow): the
// positions are the lanes. Pass 1 scales the scores and takes the maximum
// (any order of a maximum gives the same value; only the sign of a zero
// maximum may differ, which no exponential below sees); pass 2 writes the
// exponentials of 16 positions at a time; pass 3 adds them in position
// order, one scalar addition each, as the scalar loop does; pass 4
// multiplies by the inverse of the sum and the value scales. Lanes past n
// are loaded and stored under a mask.
func genSoftmaxRow(e *emitter, g *bytes.Buffer, work []int) {
	fmt.Fprintf(&e.b, "\n// func softmaxRowAVX512(w, s *float32, n int, scale float32, ks, vs *float32)\n")
	fmt.Fprintf(&e.b, "TEXT ·softmaxRowAVX512(SB), NOSPLIT, $0-48\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc softmaxRowAVX512(w, s *float32, n int, scale float32, ks, vs *float32)\n")
	e.i("MOVQ w+0(FP), DI")
	e.i("MOVQ s+8(FP), SI")
	e.i("MOVQ n+16(FP), R11")
	e.i("VBROADCASTSS scale+24(FP), Z15")
	e.i("MOVQ ks+32(FP), R9")
	e.i("MOVQ vs+40(FP), R8")
	e.i("TESTQ R11, R11")
	e.i("JZ done")
	// K1: the lanes of the last block (n%16, or all 16).
	e.i("MOVQ R11, CX")
	e.i("ANDQ $15, CX")
	e.i("MOVL $0xffff, BX")
	e.i("JZ full")
	e.i("MOVL $1, BX")
	e.i("SHLL CL, BX")
	e.i("DECL BX")
	e.label("full")
	e.i("KMOVW BX, K1")
	e.i("MOVQ R11, R10")
	e.i("ADDQ $15, R10")
	e.i("SHRQ $4, R10") // blocks
	// Pass 1 and 2 share a block loop shape: blocks 0..R10-2 whole, the
	// last one masked.
	blocks := func(pass string, body func(last bool)) {
		e.i("XORQ AX, AX")
		e.i("MOVQ R10, CX")
		e.i("DECQ CX")
		e.i("JZ %slast", pass)
		e.label(pass + "loop")
		body(false)
		e.i("ADDQ $64, AX")
		e.i("DECQ CX")
		e.i("JNZ %sloop", pass)
		e.label(pass + "last")
		body(true)
	}
	scaled := func(last bool, lbl string) {
		if last {
			e.i("VMOVUPS.Z (SI)(AX*1), K1, Z0")
		} else {
			e.i("VMOVUPS (SI)(AX*1), Z0")
		}
		e.i("TESTQ R9, R9")
		e.i("JZ %s", lbl)
		if last {
			e.i("VMOVUPS.Z (R9)(AX*1), K1, Z1")
		} else {
			e.i("VMOVUPS (R9)(AX*1), Z1")
		}
		e.i("VMULPS Z1, Z0, Z0")
		e.label(lbl)
		e.i("VMULPS Z15, Z0, Z0")
	}
	e.i("VPBROADCASTD %s, Z31", expAddr("NEGINF32"))
	blocks("max", func(last bool) {
		scaled(last, map[bool]string{false: "maxs", true: "maxs2"}[last])
		if last {
			e.i("VMAXPS Z31, Z0, K1, Z31")
		} else {
			e.i("VMAXPS Z31, Z0, Z31")
		}
	})
	// Fold the lanes: every lane ends holding the maximum.
	e.i("VSHUFF32X4 $0x4e, Z31, Z31, Z0")
	e.i("VMAXPS Z31, Z0, Z31")
	e.i("VSHUFF32X4 $0xb1, Z31, Z31, Z0")
	e.i("VMAXPS Z31, Z0, Z31")
	e.i("VPERMILPS $0x4e, Z31, Z0")
	e.i("VMAXPS Z31, Z0, Z31")
	e.i("VPERMILPS $0xb1, Z31, Z0")
	e.i("VMAXPS Z31, Z0, Z31")
	expLoadConstsAVX512(e)
	blocks("exp", func(last bool) {
		scaled(last, map[bool]string{false: "exps", true: "exps2"}[last])
		e.i("VSUBPS Z31, Z0, Z0")
		expAVX512(e, 0, 1, work, false)
		if last {
			e.i("VMOVUPS Z1, K1, (DI)(AX*1)")
		} else {
			e.i("VMOVUPS Z1, (DI)(AX*1)")
		}
	})
	// The sum, in position order.
	e.i("VXORPS X0, X0, X0")
	e.i("MOVQ DI, AX")
	e.i("MOVQ R11, CX")
	e.label("sum")
	e.i("VADDSS (AX), X0, X0")
	e.i("ADDQ $4, AX")
	e.i("DECQ CX")
	e.i("JNZ sum")
	e.i("VBROADCASTSS %s, X2", expAddr("ONE32"))
	e.i("VDIVSS X0, X2, X2")
	e.i("VBROADCASTSS X2, Z2")
	blocks("scale", func(last bool) {
		if last {
			e.i("VMOVUPS.Z (DI)(AX*1), K1, Z0")
		} else {
			e.i("VMOVUPS (DI)(AX*1), Z0")
		}
		e.i("VMULPS Z2, Z0, Z0")
		lbl := map[bool]string{false: "scalev", true: "scalev2"}[last]
		e.i("TESTQ R8, R8")
		e.i("JZ %s", lbl)
		if last {
			e.i("VMOVUPS.Z (R8)(AX*1), K1, Z1")
		} else {
			e.i("VMOVUPS (R8)(AX*1), Z1")
		}
		e.i("VMULPS Z1, Z0, Z0")
		e.label(lbl)
		if last {
			e.i("VMOVUPS Z0, K1, (DI)(AX*1)")
		} else {
			e.i("VMOVUPS Z0, (DI)(AX*1)")
		}
	})
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")
}

// AVX2 has 16 vector registers: the constants stay in memory, 32 bytes
// each (four float64 copies; eight float32 ones), and the exponential of
// eight float32 lanes runs as two groups of four doubles.
func genExpData2(e *emitter) {
	e.b.WriteString("\n// archExp's constants, four copies each, for AVX2.\n")
	for i, c := range expConsts {
		for j := 0; j < 4; j++ {
			fmt.Fprintf(&e.b, "DATA expconst2<>+%d(SB)/8, $%s\n", 32*i+8*j, c.lit)
		}
	}
	fmt.Fprintf(&e.b, "GLOBL expconst2<>(SB), RODATA|NOPTR, $%d\n", 32*len(expConsts))
}

// expAddr2 is the 32-byte constant name. For the float32 constants stored
// in the low half of each 8 bytes, use VBROADCASTSS from expAddr instead.
func expAddr2(name string) string { return fmt.Sprintf("expconst2<>+%d(SB)", 4*expOff(name)) }

// expAVX2 emits out = float32(archExp(float64(in))) for the eight float32
// lanes of Y<in>; work lists 10 free registers besides in and out (which
// may be equal).
func expAVX2(e *emitter, in, out int, work []int) {
	y := func(i int) string { return fmt.Sprintf("Y%d", i) }
	x := func(i int) string { return fmt.Sprintf("X%d", i) }
	h := [2][5]int{{work[0], work[1], work[2], work[3], work[4]}, {work[5], work[6], work[7], work[8], work[9]}}
	e.i("VEXTRACTF128 $1, %s, %s", y(in), x(h[1][1]))
	e.i("VCVTPS2PD %s, %s", x(in), y(h[0][0]))
	e.i("VCVTPS2PD %s, %s", x(h[1][1]), y(h[1][0]))
	both := func(f func(X, T, ND, R, P string, xt string)) {
		for _, g := range h {
			f(y(g[0]), y(g[1]), y(g[2]), y(g[3]), y(g[4]), x(g[1]))
		}
	}
	c := expAddr2
	both(func(X, T, ND, R, P, xt string) { e.i("VMULPD %s, %s, %s", c("LOG2E"), X, T) })
	both(func(X, T, ND, R, P, xt string) { e.i("VCVTPD2DQY %s, %s", T, xt) })
	both(func(X, T, ND, R, P, xt string) { e.i("VCVTDQ2PD %s, %s", xt, ND) })
	both(func(X, T, ND, R, P, xt string) { e.i("VMOVAPD %s, %s", X, R) })
	both(func(X, T, ND, R, P, xt string) { e.i("VFNMADD231PD %s, %s, %s", c("LN2U"), ND, R) })
	both(func(X, T, ND, R, P, xt string) { e.i("VFNMADD231PD %s, %s, %s", c("LN2L"), ND, R) })
	both(func(X, T, ND, R, P, xt string) { e.i("VMULPD %s, %s, %s", c("SIXTEENTH"), R, R) })
	both(func(X, T, ND, R, P, xt string) { e.i("VMOVAPD %s, %s", c("C8"), P) })
	for _, k := range []string{"C7", "C6", "C5", "C4", "C3", "HALF", "ONE"} {
		both(func(X, T, ND, R, P, xt string) { e.i("VFMADD213PD %s, %s, %s", c(k), R, P) })
	}
	both(func(X, T, ND, R, P, xt string) { e.i("VMULPD %s, %s, %s", P, R, R) })
	for range 3 {
		both(func(X, T, ND, R, P, xt string) { e.i("VADDPD %s, %s, %s", c("TWO"), R, P) })
		both(func(X, T, ND, R, P, xt string) { e.i("VMULPD %s, %s, %s", P, R, R) })
	}
	both(func(X, T, ND, R, P, xt string) { e.i("VADDPD %s, %s, %s", c("TWO"), R, P) })
	both(func(X, T, ND, R, P, xt string) { e.i("VFMADD213PD %s, %s, %s", c("ONE"), P, R) })
	both(func(X, T, ND, R, P, xt string) { e.i("VPMOVSXDQ %s, %s", xt, ND) })
	both(func(X, T, ND, R, P, xt string) { e.i("VPADDQ %s, %s, %s", c("BIAS"), ND, ND) })
	both(func(X, T, ND, R, P, xt string) { e.i("VPSLLQ $52, %s, %s", ND, ND) })
	both(func(X, T, ND, R, P, xt string) { e.i("VMULPD %s, %s, %s", ND, R, R) })
	// Outside the straight line: 0 below, +Inf above, x itself for NaN
	// (P and T are free now).
	both(func(X, T, ND, R, P, xt string) {
		e.i("VCMPPD $0x11, %s, %s, %s", c("LO"), X, P)
		e.i("VANDNPD %s, %s, %s", R, P, R)
		e.i("VCMPPD $0x1e, %s, %s, %s", c("HI"), X, P)
		e.i("VBLENDVPD %s, %s, %s, %s", P, c("INF"), R, R)
		e.i("VCMPPD $3, %s, %s, %s", X, X, P)
		e.i("VBLENDVPD %s, %s, %s, %s", P, X, R, R)
	})
	e.i("VCVTPD2PSY %s, %s", y(h[0][3]), x(out))
	e.i("VCVTPD2PSY %s, %s", y(h[1][3]), x(h[1][1]))
	e.i("VINSERTF128 $1, %s, %s, %s", x(h[1][1]), y(out), y(out))
}

// genExpKernelsAVX2 writes ExpF32's and SwiGLU's AVX2 loops over blocks of
// 16 (two registers of eight).
func genExpKernelsAVX2(s *emitter, g *bytes.Buffer) {
	e := s
	genExpData2(e)
	work := []int{4, 5, 6, 7, 8, 9, 10, 11, 12, 13}

	fmt.Fprintf(&e.b, "\n// func expF32AVX2(dst, src *float32, nb int)\n")
	fmt.Fprintf(&e.b, "TEXT ·expF32AVX2(SB), NOSPLIT, $0-24\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc expF32AVX2(dst, src *float32, nb int)\n")
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ src+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("SHLQ $1, CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.label("loop")
	e.i("VMOVUPS (SI), Y0")
	expAVX2(e, 0, 1, work)
	e.i("VMOVUPS Y1, (DI)")
	e.i("ADDQ $32, SI")
	e.i("ADDQ $32, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")

	fmt.Fprintf(&e.b, "\n// func swigluAVX2(gate, up *float32, nb int)\n")
	fmt.Fprintf(&e.b, "TEXT ·swigluAVX2(SB), NOSPLIT, $0-24\n")
	fmt.Fprintf(g, "\n//go:noescape\nfunc swigluAVX2(gate, up *float32, nb int)\n")
	e.i("MOVQ gate+0(FP), DI")
	e.i("MOVQ up+8(FP), SI")
	e.i("MOVQ nb+16(FP), CX")
	e.i("SHLQ $1, CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.i("VBROADCASTSS %s, Y14", expAddr("SIGN32"))
	e.i("VBROADCASTSS %s, Y15", expAddr("ONE32"))
	e.label("loop")
	e.i("VMOVUPS (DI), Y0")
	e.i("VXORPS Y14, Y0, Y1")
	expAVX2(e, 1, 1, work)
	e.i("VADDPS Y1, Y15, Y1")
	e.i("VDIVPS Y1, Y0, Y0")
	e.i("VMULPS (SI), Y0, Y0")
	e.i("VMOVUPS Y0, (DI)")
	e.i("ADDQ $32, SI")
	e.i("ADDQ $32, DI")
	e.i("DECQ CX")
	e.i("JNZ loop")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")
}
