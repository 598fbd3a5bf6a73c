package main

import (
	"bytes"
	"fmt"
)

// The attention-score kernels: for keys k (float32 rows) and a tile of 16
// queries, out[k][q] = float32(dot(K[k], Q[q]) * scale), the int8 key
// scale multiplied in first when set, where dot is the canonical dot
// product. The lanes of a register are the 16 queries, not the 16 partial
// sums: partial sum l of every query is one register, computed as the
// chain of FMAs over the dimensions d = 16*blk + l in block order with the
// key element broadcast, and the canonical tree over l is then 15
// vertical additions. Each lane does exactly the scalar operations of the
// canonical order, so the bits equal Dot's, while a key costs hd FMAs and
// 15 additions for all 16 queries, with no horizontal reduction.
//
// The partial sums are computed in the order scoreOrder, which lets the
// tree be folded in as they come, with at most five live registers per
// key. The queries are stored transposed by TransposeQueries: step s of
// scoreOrder (l = scoreOrder[s]) holds, for each block blk, the 16
// queries' element d = 16*blk+l at qt[(s*nblk+blk)*16 : +16].
//
//	func scores<ISA>K<kk>[S](dst *float32, k *float32, ks uintptr, qt *float32,
//	                          hd int, scale float32, kscale *float32, n int)
//
// takes n groups of kk keys, rows ks bytes apart, writing 16 lanes per key
// (64 bytes) to dst. The S variants multiply by kscale[key] (int8 keys).
var scoreOrder = [16]int{0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15}

// scoreTree is the fold: after computing partial sum s (into stack slot
// slot[s]), the additions listed run as dst += src over the slots.
var scoreSlot = [16]int{0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4}

var scoreAdds = [16][][2]int{
	1:  {{0, 1}},
	3:  {{1, 2}, {0, 1}},
	5:  {{1, 2}},
	7:  {{2, 3}, {1, 2}, {0, 1}},
	9:  {{1, 2}},
	11: {{2, 3}, {1, 2}},
	13: {{2, 3}},
	15: {{3, 4}, {2, 3}, {1, 2}, {0, 1}},
}

func scoresName(is isa, kk int, scaled bool) string {
	s := ""
	if scaled {
		s = "S"
	}
	return fmt.Sprintf("scores%sK%d%s", is.name, kk, s)
}

// scoresKK is the number of keys an ISA's main kernel takes at once.
func scoresKK(is isa) int {
	if is.key == "avx512" {
		return 4
	}
	return 1
}

func genScores(e *emitter, g *bytes.Buffer, is isa, kk int, scaled bool) {
	name := scoresName(is, kk, scaled)
	fmt.Fprintf(&e.b, "\n// func %s(dst *float32, k *float32, ks uintptr, qt *float32, hd int, scale float32, kscale *float32, n int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-64\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *float32, k *float32, ks uintptr, qt *float32, hd int, scale float32, kscale *float32, n int)\n", name)
	H := is.halves
	r := func(i int) string { return fmt.Sprintf("%s%d", is.vreg, i) }
	// acc(key, slot, half)
	acc := func(key, slot, h int) string { return r((key*5+slot)*H + h) }
	base := kk * 5 * H
	qreg := func(h int) string { return r(base + h) }
	scl := r(base + H)
	kb := r(base + H + 1) // AVX2: the broadcast key element
	if base+H+2 > is.nvec {
		panic("scores: too many registers")
	}
	ptr := []string{"R10", "R11", "R12", "R13"}[:kk]
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ k+8(FP), SI")
	e.i("MOVQ ks+16(FP), DX")
	e.i("MOVQ qt+24(FP), R8")
	e.i("MOVQ hd+32(FP), R9")
	e.i("ADDQ $15, R9")
	e.i("SHRQ $4, R9")
	e.i("SHLQ $6, R9") // bytes per step of qt: nblk*64
	e.i("VBROADCASTSS scale+40(FP), %s", scl)
	e.i("CMPQ n+56(FP), $0")
	e.i("JEQ done")
	e.label("group")
	e.i("MOVQ R8, CX")
	for s, l := range scoreOrder {
		slot := scoreSlot[s]
		// Chain length: hd/16, plus one when l < hd%16.
		e.i("MOVQ hd+32(FP), AX")
		e.i("MOVQ AX, BX")
		e.i("SHRQ $4, AX")
		e.i("ANDQ $15, BX")
		e.i("CMPQ BX, $%d", l)
		e.i("SETGT BL")
		e.i("MOVBQZX BL, BX")
		e.i("ADDQ BX, AX")
		for key := 0; key < kk; key++ {
			for h := 0; h < H; h++ {
				a := acc(key, slot, h)
				if is.key == "avx512" {
					e.i("VPXORD %s, %s, %s", a, a, a)
				} else {
					e.i("VXORPS %s, %s, %s", a, a, a)
				}
			}
		}
		e.i("TESTQ AX, AX")
		e.i("JZ skip%d", s)
		e.i("LEAQ %d(SI), %s", 4*l, ptr[0])
		if kk > 1 {
			e.i("LEAQ (%s)(DX*1), %s", ptr[0], ptr[1])
		}
		if kk > 2 {
			e.i("LEAQ (%s)(DX*2), %s", ptr[0], ptr[2])
		}
		if kk > 3 {
			e.i("LEAQ (%s)(DX*2), %s", ptr[1], ptr[3])
		}
		e.i("XORL BX, BX")
		e.label(fmt.Sprintf("chain%d", s))
		for h := 0; h < H; h++ {
			e.i("VMOVUPS %d(CX)(BX*1), %s", 32*h, qreg(h))
		}
		for key := 0; key < kk; key++ {
			if is.key == "avx512" {
				e.i("VFMADD231PS.BCST (%s)(BX*1), %s, %s", ptr[key], qreg(0), acc(key, slot, 0))
				continue
			}
			e.i("VBROADCASTSS (%s)(BX*1), %s", ptr[key], kb)
			for h := 0; h < H; h++ {
				e.i("VFMADD231PS %s, %s, %s", kb, qreg(h), acc(key, slot, h))
			}
		}
		e.i("ADDQ $64, BX")
		e.i("DECQ AX")
		e.i("JNZ chain%d", s)
		e.label(fmt.Sprintf("skip%d", s))
		e.i("ADDQ R9, CX")
		for _, ad := range scoreAdds[s] {
			for key := 0; key < kk; key++ {
				for h := 0; h < H; h++ {
					d, src := acc(key, ad[0], h), acc(key, ad[1], h)
					e.i("VADDPS %s, %s, %s", src, d, d)
				}
			}
		}
	}
	// Scale and store.
	if scaled {
		e.i("MOVQ kscale+48(FP), AX")
	}
	for key := 0; key < kk; key++ {
		for h := 0; h < H; h++ {
			a := acc(key, 0, h)
			if scaled {
				if is.key == "avx512" {
					e.i("VMULPS.BCST %d(AX), %s, %s", 4*key, a, a)
				} else {
					e.i("VBROADCASTSS %d(AX), %s", 4*key, kb)
					e.i("VMULPS %s, %s, %s", kb, a, a)
				}
			}
			e.i("VMULPS %s, %s, %s", scl, a, a)
			e.i("VMOVUPS %s, %d(DI)", a, 64*key+32*h)
		}
	}
	if scaled {
		e.i("ADDQ $%d, AX", 4*kk)
		e.i("MOVQ AX, kscale+48(FP)")
	}
	e.i("ADDQ $%d, DI", 64*kk)
	for range kk {
		e.i("ADDQ DX, SI")
	}
	e.i("DECQ n+56(FP)")
	e.i("JNZ group")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")
}

func genScoresKernels(s *emitter, g *bytes.Buffer) {
	genDotRows(s, g, 4)
	genDotRows(s, g, 1)
	for _, is := range isas {
		kks := []int{scoresKK(is)}
		if kks[0] > 1 {
			kks = append(kks, 1)
		}
		for _, kk := range kks {
			for _, scaled := range []bool{false, true} {
				genScores(s, g, is, kk, scaled)
			}
		}
	}
}

// genDotRows writes the AVX-512 dot products of float32 rows with one
// vector (a decode step's attention scores): four rows at a time, each
// one accumulator, the blocks of 16 in order and the last partial block
// under the mask K1 with a merge-masked FMA (lanes past the row are left
// alone, as the canonical order says), then the canonical tree, four rows
// at once (reduce4), or one row for the leftovers.
//
//	func dotRowsAVX512K<kk>(dst *float32, k *float32, ks uintptr, q *float32, hd int, n int)
func genDotRows(e *emitter, g *bytes.Buffer, kk int) {
	name := fmt.Sprintf("dotRowsAVX512K%d", kk)
	fmt.Fprintf(&e.b, "\n// func %s(dst *float32, k *float32, ks uintptr, q *float32, hd int, n int)\n", name)
	fmt.Fprintf(&e.b, "TEXT ·%s(SB), NOSPLIT, $0-48\n", name)
	fmt.Fprintf(g, "\n//go:noescape\nfunc %s(dst *float32, k *float32, ks uintptr, q *float32, hd int, n int)\n", name)
	ptr := []string{"SI", "R12", "R13", "BX"}[:kk]
	e.i("MOVQ dst+0(FP), DI")
	e.i("MOVQ k+8(FP), SI")
	e.i("MOVQ ks+16(FP), DX")
	e.i("MOVQ q+24(FP), R8")
	e.i("MOVQ hd+32(FP), R10")
	e.i("MOVQ R10, CX")
	e.i("ANDQ $15, CX")
	e.i("MOVL $1, AX")
	e.i("SHLL CL, AX")
	e.i("DECL AX")
	e.i("KMOVW AX, K1")
	e.i("MOVQ CX, R9")  // lanes of the last block (0: none)
	e.i("SHRQ $4, R10") // whole blocks
	e.i("MOVQ n+40(FP), CX")
	e.i("TESTQ CX, CX")
	e.i("JZ done")
	e.label("group")
	for key := 0; key < kk; key++ {
		e.i("VPXORD Z%d, Z%d, Z%d", key, key, key)
	}
	if kk > 1 {
		e.i("LEAQ (SI)(DX*1), R12")
		e.i("LEAQ (SI)(DX*2), R13")
		e.i("LEAQ (R12)(DX*2), BX")
	}
	e.i("XORQ R11, R11")
	e.i("MOVQ R10, AX")
	e.i("TESTQ AX, AX")
	e.i("JZ tail")
	e.label("block")
	e.i("VMOVUPS (R8)(R11*1), Z4")
	for key := 0; key < kk; key++ {
		e.i("VFMADD231PS (%s)(R11*1), Z4, Z%d", ptr[key], key)
	}
	e.i("ADDQ $64, R11")
	e.i("DECQ AX")
	e.i("JNZ block")
	e.label("tail")
	e.i("TESTQ R9, R9")
	e.i("JZ reduce")
	e.i("VMOVUPS.Z (R8)(R11*1), K1, Z4")
	for key := 0; key < kk; key++ {
		e.i("VMOVUPS.Z (%s)(R11*1), K1, Z5", ptr[key])
		e.i("VFMADD231PS Z5, Z4, K1, Z%d", key)
	}
	e.label("reduce")
	if kk == 4 {
		k := &kern{is: avx512, r: 4, c: 1, e: e}
		k.reduce4(0, 0, 6, 7, "DI")
	} else {
		e.i("VEXTRACTF64X4 $1, Z0, Y6")
		e.i("VADDPS Y6, Y0, Y0")
		e.i("VEXTRACTF32X4 $1, Y0, X6")
		e.i("VADDPS X6, X0, X0")
		e.i("VMOVHLPS X0, X0, X6")
		e.i("VADDPS X6, X0, X0")
		e.i("VMOVSHDUP X0, X6")
		e.i("VADDSS X6, X0, X0")
		e.i("VMOVSS X0, (DI)")
	}
	e.i("ADDQ $%d, DI", 4*kk)
	for range kk {
		e.i("ADDQ DX, SI")
	}
	e.i("DECQ CX")
	e.i("JNZ group")
	e.label("done")
	e.i("VZEROUPPER")
	e.i("RET")
}
