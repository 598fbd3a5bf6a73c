package kernel

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

var exhaustiveExp = flag.Bool("exhaustive-exp", false, "check ExpF32 on every float32 (about a minute)")

func expWant(x float32) float32 { return float32(math.Exp(float64(x))) }

// expSpecials are inputs at the edges of the exponential's paths: zeros,
// infinities, NaNs, the ±700 switch to the blended results, the float32
// overflow and underflow thresholds, subnormals.
func expSpecials() []float32 {
	out := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.Float32frombits(0x7fc12345), math.Float32frombits(0xffa00001), math.Float32frombits(0x7f800001),
		700, -700, math.Nextafter32(700, 0), math.Nextafter32(-700, 0), math.Nextafter32(700, 800), math.Nextafter32(-700, -800),
		88.72283, 88.72284, -87.33654, -87.33655, -103.27893, -103.97208, -104, -745.1332, 709.782, -708.3964,
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1e-8, -1e-8}
	for x := float32(-110); x <= 100; x += 0.37 {
		out = append(out, x)
	}
	return out
}

// expCheckRange checks ExpF32 on the float32 bit patterns lo, lo+stride,
// ... below hi, in batches that also exercise the pure-Go remainder, and
// reports the first difference.
func expCheckRange(lo, hi, stride uint64) error {
	const batch = 4099
	src := make([]float32, 0, batch)
	dst := make([]float32, batch)
	flush := func() error {
		ExpF32(dst[:len(src)], src)
		for i, x := range src {
			if want := expWant(x); math.Float32bits(dst[i]) != math.Float32bits(want) {
				return fmt.Errorf("ExpF32(%v = %#08x) = %v (%#08x), want %v (%#08x)", x, math.Float32bits(x), dst[i], math.Float32bits(dst[i]), want, math.Float32bits(want))
			}
		}
		src = src[:0]
		return nil
	}
	for b := lo; b < hi; b += stride {
		src = append(src, math.Float32frombits(uint32(b)))
		if len(src) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// TestExpF32MatchesMath checks ExpF32 bit for bit against the math
// package on the special inputs and on a sweep of about a million float32
// bit patterns spread over all of them (every one with -exhaustive-exp).
func TestExpF32MatchesMath(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		sp := expSpecials()
		dst := make([]float32, len(sp))
		ExpF32(dst, sp)
		for i, x := range sp {
			if want := expWant(x); math.Float32bits(dst[i]) != math.Float32bits(want) {
				t.Fatalf("ExpF32(%v = %#08x) = %v (%#08x), want %v (%#08x)", x, math.Float32bits(x), dst[i], math.Float32bits(dst[i]), want, math.Float32bits(want))
			}
		}
		if *exhaustiveExp {
			workers := uint64(runtime.GOMAXPROCS(0))
			errs := make([]error, workers)
			var wg sync.WaitGroup
			per := (1<<32 + workers - 1) / workers
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[w] = expCheckRange(w*per, min((w+1)*per, 1<<32), 1)
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			return
		}
		n := uint64(1 << 20)
		if testing.Short() {
			n = 1 << 16
		}
		ranges := [][3]uint64{
			{12345, 1 << 32, (1 << 32) / n}, // spread over every pattern
			// Dense where softmax lives: [-8, -1] and [-2^-10, 0].
			{uint64(math.Float32bits(-1)), uint64(math.Float32bits(-8)), 997},
			{uint64(math.Float32bits(float32(math.Copysign(0, -1)))) + 0x3a000000, uint64(math.Float32bits(-0x1p-10)), 61},
		}
		for _, r := range ranges {
			if err := expCheckRange(r[0], r[1], r[2]); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestSwiGLUMatchesScalar(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		g := append(expSpecials(), make([]float32, 3000)...)
		for i := len(expSpecials()); i < len(g); i++ {
			g[i] = randF32(r) * float32(r.IntN(40))
		}
		u := make([]float32, len(g))
		for i := range u {
			u[i] = randF32(r)
		}
		for _, n := range []int{0, 1, 15, 16, 17, len(g)} {
			got := append([]float32(nil), g[:n]...)
			SwiGLU(got, u)
			for i, v := range g[:n] {
				silu := float32(v / float32(1+float32(math.Exp(float64(-v)))))
				want := float32(silu * u[i])
				if math.Float32bits(got[i]) != math.Float32bits(want) {
					t.Fatalf("n=%d: SwiGLU(%v, %v) = %v (%#08x), want %v (%#08x)", n, v, u[i], got[i], math.Float32bits(got[i]), want, math.Float32bits(want))
				}
			}
		}
	})
}

// softmaxRef is SoftmaxTile's specification: the scalar loops, one query
// at a time.
func softmaxRef(s []float32, n, q, first int, vs []float32) []float32 {
	valid := min(n, first+q+1)
	m := float32(math.Inf(-1))
	for p := 0; p < valid; p++ {
		if v := s[p*TileLanes+q]; v > m {
			m = v
		}
	}
	e := make([]float32, valid)
	var sum float32
	for p := range e {
		e[p] = float32(math.Exp(float64(s[p*TileLanes+q] - m)))
		sum += e[p]
	}
	inv := 1 / sum
	for p := range e {
		e[p] = float32(e[p] * inv)
		if vs != nil {
			e[p] = float32(e[p] * vs[p])
		}
	}
	return e
}

func TestSoftmaxTileMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for range 300 {
			nq := 1 + r.IntN(TileLanes)
			n := 1 + r.IntN(80)
			first := max(0, n-nq)
			if r.IntN(4) == 0 {
				first += r.IntN(5) // some queries see every position
			}
			n = min(n, first+nq)
			s := make([]float32, n*TileLanes)
			scale := float32(math.Exp2(float64(r.IntN(12) - 4)))
			for i := range s {
				s[i] = float32(r.NormFloat64()) * scale
				switch r.IntN(200) {
				case 0:
					s[i] = float32(math.Inf(-1))
				case 1:
					s[i] = float32(math.Copysign(0, -1))
				case 2:
					s[i] = float32(r.NormFloat64() * 1e3)
				case 3:
					if r.IntN(4) == 0 {
						s[i] = float32(math.NaN())
					}
				}
			}
			var vs []float32
			if r.IntN(2) == 0 {
				vs = make([]float32, n)
				for i := range vs {
					vs[i] = float32(r.Float64() * 0.01)
				}
			}
			orig := append([]float32(nil), s...)
			w := make([]float32, n*TileLanes)
			SoftmaxTile(w, s, n, nq, first, vs)
			for i := range s {
				if math.Float32bits(s[i]) != math.Float32bits(orig[i]) {
					t.Fatal("scores modified")
				}
			}
			for q := 0; q < nq; q++ {
				for p, want := range softmaxRef(s, n, q, first, vs) {
					if got := w[p*TileLanes+q]; !same(got, want) {
						t.Fatalf("n=%d nq=%d first=%d vs=%v: query %d position %d: %v, want %v", n, nq, first, vs != nil, q, p, got, want)
					}
				}
			}
		}
	})
}

func TestSoftmaxTileShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"too many queries", func() { SoftmaxTile(make([]float32, 32), make([]float32, 32), 2, 17, 0, nil) }},
		{"positions past the last query", func() { SoftmaxTile(make([]float32, 64), make([]float32, 64), 4, 2, 1, nil) }},
		{"short scores", func() { SoftmaxTile(make([]float32, 32), make([]float32, 31), 2, 2, 0, nil) }},
		{"short scales", func() { SoftmaxTile(make([]float32, 32), make([]float32, 32), 2, 2, 0, make([]float32, 1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.f()
		})
	}
}

func TestSoftmaxRowMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(25, 26))
		for range 300 {
			n := 1 + r.IntN(70)
			s := make([]float32, n)
			for i := range s {
				s[i] = float32(r.NormFloat64() * 8)
				switch r.IntN(100) {
				case 0:
					s[i] = float32(math.Inf(-1))
				case 1:
					s[i] = float32(math.Copysign(0, -1))
				case 2:
					s[i] = float32(r.NormFloat64() * 1e4)
				case 3:
					if r.IntN(4) == 0 {
						s[i] = float32(math.NaN())
					}
				}
			}
			var ks, vs []float32
			if r.IntN(2) == 0 {
				ks = make([]float32, n)
				vs = make([]float32, n)
				for i := range ks {
					ks[i] = float32(r.Float64() * 0.05)
					vs[i] = float32(r.Float64() * 0.01)
				}
			}
			scale := float32(r.Float64())
			// The reference: SoftmaxTile's, on the scaled scores in lane 0.
			tile := make([]float32, n*TileLanes)
			for p := range n {
				if ks != nil {
					tile[p*TileLanes] = float32(float32(s[p]*ks[p]) * scale)
				} else {
					tile[p*TileLanes] = float32(s[p] * scale)
				}
			}
			want := softmaxRef(tile, n, 0, n-1, vs)
			orig := append([]float32(nil), s...)
			w := make([]float32, n+1)
			w[n] = 7
			SoftmaxRow(w, s, n, scale, ks, vs)
			if w[n] != 7 {
				t.Fatal("wrote past n")
			}
			for p := range n {
				if math.Float32bits(s[p]) != math.Float32bits(orig[p]) {
					t.Fatal("scores modified")
				}
				if !same(w[p], want[p]) {
					t.Fatalf("n=%d scaled=%v: position %d: %v, want %v", n, ks != nil, p, w[p], want[p])
				}
			}
		}
	})
}
