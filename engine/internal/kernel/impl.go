package kernel

import (
	"fmt"
	"sync/atomic"
)

// impl is one implementation of the kernels. Every implementation computes
// the same bits; they differ only in speed.
type impl struct {
	name       string
	dot        func(t DType, w []byte, x []float32) float32
	matMulRows func(dst []float32, w Mat, x []float32, n, r0, r1 int)
	axpy       func(t DType, dst []float32, a float32, x []byte)
	axpyF32    func(dst []float32, a float32, x []float32)
	toF32      func(t DType, dst []float32, src []byte)
	f32ToF16   func(dst []byte, src []float32)
	// fmaLoop runs a register-only multiply-add loop of iters iterations
	// and returns the floating-point operations it did (2 per lane FMA).
	fmaLoop func(iters int) float64
	// sumBytes reads every byte of b (len a multiple of 256) with vector
	// loads and returns a value that depends on all of them.
	sumBytes func(b []byte) float32
}

var genericImpl = &impl{
	name:       "generic",
	dot:        dotGeneric,
	matMulRows: matMulRowsGeneric,
	axpy:       axpyGeneric,
	axpyF32:    axpyF32Generic,
	toF32:      toF32Generic,
	f32ToF16:   f32ToF16Generic,
	fmaLoop:    fmaLoopGeneric,
	sumBytes:   sumBytesGeneric,
}

// impls lists the implementations this machine can run, fastest first; the
// architecture files prepend theirs in init.
var impls = []*impl{genericImpl}

var active atomic.Pointer[impl]

func init() {
	impls = append(archImpls(), impls...)
	active.Store(impls[0])
}

func cur() *impl { return active.Load() }

// Name is the name of the active implementation: "avx512", "avx2" or
// "generic".
func Name() string { return cur().name }

// Available lists the implementations this machine can run, fastest first.
// The last one is always "generic".
func Available() []string {
	out := make([]string, len(impls))
	for i, im := range impls {
		out[i] = im.name
	}
	return out
}

// Use makes the named implementation the active one (for tests, benchmarks
// and a command-line flag). It is safe to call while kernels run: a call
// already started finishes on the implementation it began with, and all
// implementations give the same bits.
func Use(name string) error {
	for _, im := range impls {
		if im.name == name {
			active.Store(im)
			return nil
		}
	}
	return fmt.Errorf("%w: %q (have %v)", ErrUnavailable, name, Available())
}
