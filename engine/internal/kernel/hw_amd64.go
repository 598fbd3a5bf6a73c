//go:build amd64 && !purego

package kernel

// Single-instruction helpers that let the tests compare the pure-Go
// arithmetic with the hardware (they need FMA and F16C), and a prefetch.

//go:noescape
func fmaHW(a, b, c, dst []float32)

//go:noescape
func f16ToF32HW(dst []float32, src []uint16)

//go:noescape
func f32ToF16HW(dst []uint16, src []float32)

//go:noescape
func prefetchLines(p *byte, n int)
