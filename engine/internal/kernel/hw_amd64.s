//go:build amd64 && !purego

#include "textflag.h"

// func fmaHW(a, b, c, dst []float32)
// dst[i] = a[i]*b[i]+c[i] rounded once (VFMADD231PS), 8 at a time; the
// caller passes lengths that are multiples of 8 and equal. Needs FMA.
TEXT ·fmaHW(SB), NOSPLIT, $0-96
	MOVQ a_base+0(FP), SI
	MOVQ b_base+24(FP), DI
	MOVQ c_base+48(FP), DX
	MOVQ dst_base+72(FP), R8
	MOVQ dst_len+80(FP), CX
	SHRQ $3, CX
	JZ   done
loop:
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y1
	VFMADD231PS (DI), Y1, Y0
	VMOVUPS Y0, (R8)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	ADDQ $32, R8
	DECQ CX
	JNZ  loop
done:
	VZEROUPPER
	RET

// func f16ToF32HW(dst []float32, src []uint16)
// VCVTPH2PS, 8 at a time; len(dst) a multiple of 8, len(src) >= len(dst).
TEXT ·f16ToF32HW(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	SHRQ $3, CX
	JZ   done
loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop
done:
	VZEROUPPER
	RET

// func f32ToF16HW(dst []uint16, src []float32)
// VCVTPS2PH with round to nearest even, 8 at a time; len(src) a multiple
// of 8, len(dst) >= len(src).
TEXT ·f32ToF16HW(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $3, CX
	JZ   done
loop:
	VMOVUPS (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  loop
done:
	VZEROUPPER
	RET

// func prefetchLines(p *byte, n int)
// PREFETCHT0 of every 64-byte line of [p, p+n): the first weight tile of a
// MatMulRows call, which no kernel before it prefetched. Prefetches never
// fault, so the range may run past the data.
TEXT ·prefetchLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	ADDQ $63, CX
	SHRQ $6, CX
	JZ   done
loop:
	PREFETCHT0 (SI)
	ADDQ $64, SI
	DECQ CX
	JNZ  loop
done:
	RET
