package kernel

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// -kernel picks the implementation the benchmarks run (default: the
// fastest available): go test -bench . -args -kernel=avx2
var kernelFlag = flag.String("kernel", "", "kernel implementation for benchmarks (avx512, avx2, generic)")

func useFlag(b *testing.B) {
	b.Helper()
	if *kernelFlag != "" {
		if err := Use(*kernelFlag); err != nil {
			b.Fatal(err)
		}
	}
}

var peak1 = sync.OnceValue(func() float64 { return PeakFMA(1, 300*time.Millisecond) })

func BenchmarkPeakFMA(b *testing.B) {
	useFlag(b)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var g float64
			for b.Loop() {
				g = PeakFMA(workers, 100*time.Millisecond)
			}
			b.ReportMetric(g, "GFLOP/s")
		})
	}
}

func BenchmarkReadBandwidth(b *testing.B) {
	useFlag(b)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var g float64
			for b.Loop() {
				g = ReadBandwidth(workers, 512<<20, 300*time.Millisecond)
			}
			b.ReportMetric(g, "GB/s")
		})
	}
}

// benchMat is a weight matrix with the values of a trained model (normal,
// sigma 0.02): the random bit patterns of the tests would put subnormals
// into the products, which some CPUs handle slowly.
func benchMat(r *rand.Rand, t DType, rows, k int) Mat {
	m := Mat{Type: t, Rows: rows, Cols: k, Data: make([]byte, rows*RowBytes(t, k))}
	f := make([]float32, k)
	for i := 0; i < rows; i++ {
		for j := range f {
			f[j] = float32(r.NormFloat64() * 0.02)
		}
		row := m.Row(i)
		switch t {
		case F32:
			for j, v := range f {
				binary.LittleEndian.PutUint32(row[4*j:], math.Float32bits(v))
			}
		case F16:
			F32ToF16(row, f)
		case BF16:
			for j, v := range f {
				binary.LittleEndian.PutUint16(row[2*j:], uint16(math.Float32bits(v)>>16))
			}
		case I8:
			QuantizeI8(row, f)
		case Q8_0:
			for j := 0; j < k/32; j++ {
				s := QuantizeI8(row[34*j+2:34*j+34], f[32*j:32*j+32])
				binary.LittleEndian.PutUint16(row[34*j:], f32ToF16(s))
			}
		}
	}
	return m
}

func benchVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// BenchmarkMatMulRows is one goroutine's micro-kernel efficiency (K=768,
// 768 rows), against the one-core peak.
func BenchmarkMatMulRows(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []DType{F32, F16, BF16, Q8_0} {
		for _, n := range []int{1, 6, 128} {
			const k, rows = 768, 768
			w := benchMat(r, dt, rows, k)
			x := benchVec(r, n*k)
			dst := make([]float32, n*rows)
			b.Run(fmt.Sprintf("%s/n=%d", dt, n), func(b *testing.B) {
				for b.Loop() {
					MatMulRows(dst, w, x, n, 0, rows)
				}
				gf := 2 * float64(n*rows*k) * float64(b.N) / b.Elapsed().Seconds() / 1e9
				b.ReportMetric(gf, "GFLOP/s")
				b.ReportMetric(gf/peak1(), "peak-ratio")
			})
		}
	}
}

func BenchmarkDot(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range allTypes {
		for _, k := range []int{64, 172, 768} {
			if dt == Q8_0 && k%32 != 0 {
				continue
			}
			w := benchMat(r, dt, 1, k).Data
			x := benchVec(r, k)
			b.Run(fmt.Sprintf("%s/K=%d", dt, k), func(b *testing.B) {
				var s float32
				for b.Loop() {
					s += Dot(dt, w, x)
				}
				_ = s
			})
		}
	}
}

func BenchmarkAxpy(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range []DType{F32, F16, I8} {
		const n = 128
		x := benchMat(r, dt, 1, n).Data
		dst := benchVec(r, n)
		b.Run(dt.String(), func(b *testing.B) {
			for b.Loop() {
				Axpy(dt, dst, 0.5, x)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

// BenchmarkAttention measures the attention kernels on the 110M shape
// (head dimension 64) for one tile of 16 queries against 2048 keys:
// scores, softmax and the weighted sum of values, each against the
// one-core peak where it is FMA work.
func BenchmarkAttention(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(7, 8))
	const hd, n = 64, 2048
	q := benchVec(r, TileLanes*hd)
	keys := benchVec(r, n*hd)
	vals := benchMat(r, F32, n, hd)
	qt := make([]float32, QueriesLen(hd))
	TransposeQueries(qt, q, TileLanes, hd)
	s := make([]float32, n*TileLanes)
	w := make([]float32, n*TileLanes)
	out := make([]float32, TileLanes*hd)
	flops := 2 * float64(n*TileLanes*hd)
	b.Run("scores", func(b *testing.B) {
		for b.Loop() {
			AttnScores(s, keys, hd, n, qt, TileLanes, hd, 0.125, nil)
		}
		gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
		b.ReportMetric(gf, "GFLOP/s")
		b.ReportMetric(gf/peak1(), "peak-ratio")
	})
	AttnScores(s, keys, hd, n, qt, TileLanes, hd, 0.125, nil)
	b.Run("softmax", func(b *testing.B) {
		for b.Loop() {
			SoftmaxTile(w, s, n, TileLanes, n-TileLanes, nil)
		}
		b.ReportMetric(float64(n*TileLanes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
	})
	b.Run("values", func(b *testing.B) {
		for b.Loop() {
			WeightedSum(F32, out, hd, w, TileLanes, vals.Data, TileLanes, n, hd)
		}
		gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
		b.ReportMetric(gf, "GFLOP/s")
		b.ReportMetric(gf/peak1(), "peak-ratio")
	})
	row := make([]float32, n)
	b.Run("decode", func(b *testing.B) {
		// One query: scores, softmax and values over 2048 keys.
		for b.Loop() {
			DotRows(row, keys, n, q[:hd])
			SoftmaxRow(w, row, n, 0.125, nil, nil)
			WeightedSum(F32, out, hd, w, 1, vals.Data, 1, n, hd)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mkeys/s")
	})
}

func BenchmarkExpF32(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(9, 10))
	src := benchVec(r, 4096)
	dst := make([]float32, len(src))
	for b.Loop() {
		ExpF32(dst, src)
	}
	b.ReportMetric(float64(len(src))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
}
