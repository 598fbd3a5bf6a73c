//go:build amd64 && !purego

package kernel

import "golang.org/x/sys/cpu"

// hasAVX2 is the AVX2 path's requirement: AVX2, FMA and F16C, with the OS
// saving the YMM state (x/sys/cpu checks XGETBV for AVX and AVX2).
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C && cpu.X86.HasAVX

// hasAVX512 is the AVX-512 path's requirement: F, BW and VL, with the OS
// saving the ZMM and opmask state (x/sys/cpu checks XGETBV), plus the AVX2
// set for the 256-bit helpers.
var hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL

func archImpls() []*impl {
	var out []*impl
	return out
}
