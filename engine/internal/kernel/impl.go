package kernel

import (
	"fmt"
	"sync/atomic"
)

// impl is one implementation of the kernels. Every implementation computes
// the same bits; they differ only in speed. vec is nil for the pure-Go
// implementation.
//
// Dispatch is a nil check and direct method calls rather than func values,
// so that escape analysis sees through to the assembly's //go:noescape
// and a caller's stack buffers stay on the stack.
type impl struct {
	name string
	vec  *vecImpl
}

var genericImpl = &impl{name: "generic"}

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

func (im *impl) fmaLoop(iters int) float64 {
	if im.vec != nil {
		return im.vec.fmaLoop(iters)
	}
	return fmaLoopGeneric(iters)
}

// sumBytes is the sum of the little-endian uint32 words of b[:len(b)&^255]
// mod 2^32, read with the widest loads the implementation has.
func (im *impl) sumBytes(b []byte) uint64 {
	if im.vec != nil {
		return im.vec.sumBytes(b)
	}
	return sumBytesGeneric(b[:len(b)&^255])
}
