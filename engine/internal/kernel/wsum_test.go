package kernel

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// weightedSumRef is WeightedSum as its specification reads: for every
// output element, one fma32 per key in key order.
func weightedSumRef(t DType, dst []float32, ds int, a []float32, as int, v []byte, nq, nk, cols int) {
	rb := RowBytes(t, cols)
	for q := 0; q < nq; q++ {
		for c := 0; c < cols; c++ {
			acc := dst[q*ds+c]
			for j := 0; j < nk; j++ {
				acc = fma32(a[j*as+q], refElem(t, v[j*rb:], c), acc)
			}
			dst[q*ds+c] = acc
		}
	}
}

// TestWeightedSumMatchesRef checks every element of random weighted sums
// against the reference, for every value type, column counts with every
// kind of tail, 1..17 rows and 0..20 keys, and that nothing outside the
// rows' columns is written.
func TestWeightedSumMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, dt := range []DType{F32, F16, BF16, I8} {
			for _, cols := range []int{1, 3, 8, 15, 16, 17, 24, 31, 32, 40, 48, 63, 64, 65, 80, 100, 128, 130} {
				for range 6 {
					nq := 1 + r.IntN(17)
					nk := r.IntN(21)
					ds := cols + r.IntN(3)
					as := nq + r.IntN(3)
					v := make([]byte, 0, nk*RowBytes(dt, cols))
					for range nk {
						v = append(v, randRow(r, dt, cols)...)
					}
					if dt == F32 && nk > 0 && r.IntN(4) == 0 {
						// Non-finite values pass through as in Axpy.
						i := r.IntN(nk * cols)
						binary.LittleEndian.PutUint32(v[4*i:], math.Float32bits(float32([]float64{math.Inf(1), math.Inf(-1), math.NaN()}[r.IntN(3)])))
					}
					a := randVec(r, max(nk*as, 1))
					dst := randVec(r, nq*ds+5)
					want := append([]float32(nil), dst...)
					weightedSumRef(dt, want, ds, a, as, v, nq, nk, cols)
					WeightedSum(dt, dst, ds, a, as, v, nq, nk, cols)
					for i := range want {
						if !same(dst[i], want[i]) {
							t.Fatalf("%s cols=%d nq=%d nk=%d ds=%d as=%d: dst[%d] (row %d col %d) = %v, want %v",
								dt, cols, nq, nk, ds, as, i, i/ds, i%ds, dst[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestWeightedSumSplits checks that splitting the rows or the keys across
// calls gives the same bits as one call: the contract attention relies on
// for its causal edge.
func TestWeightedSumSplits(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, dt := range []DType{F32, F16, I8} {
			const nq, nk, cols = 16, 37, 64
			rb := RowBytes(dt, cols)
			v := make([]byte, 0, nk*rb)
			for range nk {
				v = append(v, randRow(r, dt, cols)...)
			}
			a := randVec(r, nk*nq)
			whole := make([]float32, nq*cols)
			WeightedSum(dt, whole, cols, a, nq, v, nq, nk, cols)
			split := make([]float32, nq*cols)
			for q := 0; q < nq; q++ {
				k1 := r.IntN(nk + 1)
				WeightedSum(dt, split[q*cols:], cols, a[q:], nq, v, 1, k1, cols)
				if k1 < nk {
					WeightedSum(dt, split[q*cols:], cols, a[k1*nq+q:], nq, v[k1*rb:], 1, nk-k1, cols)
				}
			}
			for i := range whole {
				if !same(whole[i], split[i]) {
					t.Fatalf("%s: element %d: %v whole, %v split", dt, i, whole[i], split[i])
				}
			}
		}
	})
}

func TestWeightedSumShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"q8_0", func() { WeightedSum(Q8_0, make([]float32, 32), 32, make([]float32, 1), 1, make([]byte, 34), 1, 1, 32) }},
		{"short dst", func() { WeightedSum(F32, make([]float32, 15), 16, make([]float32, 1), 1, make([]byte, 64), 1, 1, 16) }},
		{"short weights", func() { WeightedSum(F32, make([]float32, 16), 16, make([]float32, 1), 1, make([]byte, 128), 1, 2, 16) }},
		{"short values", func() { WeightedSum(F32, make([]float32, 16), 16, make([]float32, 2), 1, make([]byte, 127), 1, 2, 16) }},
		{"stride", func() { WeightedSum(F32, make([]float32, 64), 8, make([]float32, 2), 1, make([]byte, 128), 2, 1, 16) }},
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
	// Empty shapes do nothing.
	WeightedSum(F32, nil, 0, nil, 0, nil, 0, 0, 0)
	WeightedSum(F32, nil, 16, nil, 1, nil, 0, 3, 16)
}

// TestAttnScoresMatchesRef checks every score against the canonical dot
// product of dotRef, for head dimensions with every kind of tail, 0..13
// keys (whole groups and leftovers) and 1..16 queries, with and without
// int8 key scales.
func TestAttnScoresMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, hd := range []int{1, 3, 8, 15, 16, 17, 24, 40, 63, 64, 65, 80, 128, 130} {
			for range 4 {
				nq := 1 + r.IntN(TileLanes)
				nk := r.IntN(14)
				ks := hd + r.IntN(3)
				q := randVec(r, nq*hd)
				k := randVec(r, max(nk*ks, 1))
				var kscale []float32
				if r.IntN(2) == 0 {
					kscale = randVec(r, max(nk, 1))
				}
				scale := randF32(r)
				qt := make([]float32, QueriesLen(hd))
				TransposeQueries(qt, q, nq, hd)
				dst := make([]float32, nk*TileLanes+3)
				dst[len(dst)-1] = 7
				AttnScores(dst, k, ks, nk, qt, nq, hd, scale, kscale)
				if dst[len(dst)-1] != 7 {
					t.Fatal("wrote past the outputs")
				}
				row := make([]byte, 4*hd)
				for key := 0; key < nk; key++ {
					for i := 0; i < hd; i++ {
						binary.LittleEndian.PutUint32(row[4*i:], math.Float32bits(k[key*ks+i]))
					}
					for i := 0; i < nq; i++ {
						want := dotRef(F32, row, q[i*hd:(i+1)*hd])
						if kscale != nil {
							want = float32(want * kscale[key])
						}
						want = float32(want * scale)
						if got := dst[key*TileLanes+i]; !same(got, want) {
							t.Fatalf("hd=%d nk=%d nq=%d scaled=%v: key %d query %d: %v, want %v", hd, nk, nq, kscale != nil, key, i, got, want)
						}
					}
				}
			}
		}
	})
}

func TestDotRowsMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(17, 18))
		for _, hd := range []int{1, 3, 8, 15, 16, 17, 24, 40, 63, 64, 65, 80, 128, 130} {
			for _, nk := range []int{0, 1, 3, 4, 5, 8, 13} {
				q := randVec(r, hd)
				k := randVec(r, nk*hd)
				dst := make([]float32, nk+1)
				dst[nk] = 7
				DotRows(dst, k, nk, q)
				if dst[nk] != 7 {
					t.Fatal("wrote past nk")
				}
				row := make([]byte, 4*hd)
				for key := 0; key < nk; key++ {
					for i := 0; i < hd; i++ {
						binary.LittleEndian.PutUint32(row[4*i:], math.Float32bits(k[key*hd+i]))
					}
					if want := dotRef(F32, row, q); !same(dst[key], want) {
						t.Fatalf("hd=%d nk=%d: key %d: %v, want %v", hd, nk, key, dst[key], want)
					}
				}
			}
		}
	})
}
