//go:build !amd64 || purego

package kernel

// archImpls is empty where there is no assembly: the pure-Go
// implementation is the only one.
func archImpls() []*impl { return nil }

// vecImpl has no instances here; its methods exist so that the dispatch in
// kernel.go compiles on every architecture.
type vecImpl struct{}

func (*vecImpl) dot(DType, []byte, []float32) float32                { panic("unreachable") }
func (*vecImpl) matMulRows([]float32, Mat, []float32, int, int, int) { panic("unreachable") }
func (*vecImpl) axpy(DType, []float32, float32, []byte)              { panic("unreachable") }
func (*vecImpl) axpyF32([]float32, float32, []float32)               { panic("unreachable") }
func (*vecImpl) weightedSum(DType, []float32, int, []float32, int, []byte, int, int, int, int) {
	panic("unreachable")
}
func (*vecImpl) softmaxTile([]float32, []float32, int, int, int, []float32) {
	panic("unreachable")
}
func (*vecImpl) attnScores([]float32, []float32, int, int, []float32, int, float32, []float32) {
	panic("unreachable")
}
func (*vecImpl) softmaxRow([]float32, []float32, int, float32, []float32, []float32) {
	panic("unreachable")
}
func (*vecImpl) dotRows([]float32, []float32, int, []float32) { panic("unreachable") }
func (*vecImpl) expF32([]float32, []float32)                  { panic("unreachable") }
func (*vecImpl) swiGLU([]float32, []float32)                  { panic("unreachable") }
func (*vecImpl) toF32(DType, []float32, []byte)               { panic("unreachable") }
func (*vecImpl) f32ToF16([]byte, []float32)                   { panic("unreachable") }
func (*vecImpl) fmaLoop(int) float64                          { panic("unreachable") }
func (*vecImpl) sumBytes([]byte) uint64                       { panic("unreachable") }
