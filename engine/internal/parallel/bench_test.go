package parallel

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/duet-llm/duet/engine/internal/kernel"
)

// The acceptance benchmarks: matrix products on a pool of 2 workers, each
// compared with the machine limit measured in the same run.
//
//	go test -run XXX -bench MatMul ./engine/internal/parallel
//	go test -run XXX -bench MatMul ./engine/internal/parallel -args -kernel=avx2

var kernelFlag = flag.String("kernel", "", "kernel implementation for benchmarks (avx512, avx2, generic)")

const benchWorkers = 2

func useFlag(b *testing.B) {
	b.Helper()
	if *kernelFlag != "" {
		if err := kernel.Use(*kernelFlag); err != nil {
			b.Fatal(err)
		}
	}
}

// The limits, measured once per run on the same number of workers.
var (
	readBW = sync.OnceValue(func() float64 {
		return kernel.ReadBandwidth(benchWorkers, 512<<20, 500*time.Millisecond)
	})
	peakFMA = sync.OnceValue(func() float64 {
		return kernel.PeakFMA(benchWorkers, 300*time.Millisecond)
	})
)

// benchMat is a weight matrix with the values of a trained model (normal,
// sigma 0.02).
func benchMat(r *rand.Rand, t kernel.DType, rows, k int) kernel.Mat {
	m := kernel.Mat{Type: t, Rows: rows, Cols: k, Data: make([]byte, rows*kernel.RowBytes(t, k))}
	f := make([]float32, k)
	for i := 0; i < rows; i++ {
		for j := range f {
			f[j] = float32(r.NormFloat64() * 0.02)
		}
		row := m.Row(i)
		switch t {
		case kernel.F32:
			for j, v := range f {
				binary.LittleEndian.PutUint32(row[4*j:], math.Float32bits(v))
			}
		case kernel.F16:
			kernel.F32ToF16(row, f)
		case kernel.BF16:
			for j, v := range f {
				binary.LittleEndian.PutUint16(row[2*j:], uint16(math.Float32bits(v)>>16))
			}
		case kernel.Q8_0:
			var d [2]byte
			for j := 0; j < k/32; j++ {
				s := kernel.QuantizeI8(row[34*j+2:34*j+34], f[32*j:32*j+32])
				kernel.F32ToF16(d[:], []float32{s})
				copy(row[34*j:], d[:])
			}
		}
	}
	return m
}

// coldSet is enough copies of a weight matrix to exceed the last-level
// cache, cycled through so that every product reads its weights from
// memory, as decode does across a model's layers.
func coldSet(r *rand.Rand, t kernel.DType, rows, cols int) []kernel.Mat {
	rb := kernel.RowBytes(t, cols)
	one := rows * rb
	copies := max(2, (256<<20)/one)
	data := make([]byte, copies*one)
	m := benchMat(r, t, rows, cols)
	for i := 0; i < copies; i++ {
		copy(data[i*one:], m.Data)
	}
	out := make([]kernel.Mat, copies)
	for i := range out {
		out[i] = kernel.Mat{Type: t, Rows: rows, Cols: cols, Data: data[i*one : (i+1)*one]}
	}
	return out
}

// BenchmarkMatMulDecode is decode: a weight matrix times 1..16 activation
// vectors (K=768), weights read from memory. GB/s is weight bytes per
// second; bw-ratio divides it by ReadBandwidth on the same 2 workers.
func BenchmarkMatMulDecode(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(1, 2))
	p := New(benchWorkers)
	defer p.Close()
	const k = 768
	for _, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16, kernel.Q8_0} {
		for _, rows := range []int{768, 2048, 3072, 32000} {
			mats := coldSet(r, dt, rows, k)
			for _, n := range []int{1, 4, 16} {
				x := make([]float32, n*k)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				dst := make([]float32, n*rows)
				b.Run(fmt.Sprintf("%s/rows=%d/n=%d", dt, rows, n), func(b *testing.B) {
					bw := readBW()
					i := 0
					for b.Loop() {
						p.MatMul(dst, mats[i], x, n)
						i = (i + 1) % len(mats)
					}
					gbps := float64(len(mats[0].Data)) * float64(b.N) / b.Elapsed().Seconds() / 1e9
					b.ReportMetric(gbps, "GB/s")
					b.ReportMetric(gbps/bw, "bw-ratio")
				})
			}
		}
	}
}

// BenchmarkMatMulPrefill is prefill: 128-512 activation rows times a
// weight matrix (K=768). GFLOP/s counts 2 per multiply-add; peak-ratio
// divides it by PeakFMA on the same 2 workers.
func BenchmarkMatMulPrefill(b *testing.B) {
	useFlag(b)
	r := rand.New(rand.NewPCG(3, 4))
	p := New(benchWorkers)
	defer p.Close()
	const k = 768
	for _, dt := range []kernel.DType{kernel.F32, kernel.F16} {
		for _, rows := range []int{768, 3072} {
			w := benchMat(r, dt, rows, k)
			for _, n := range []int{128, 512} {
				x := make([]float32, n*k)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				dst := make([]float32, n*rows)
				b.Run(fmt.Sprintf("%s/rows=%d/n=%d", dt, rows, n), func(b *testing.B) {
					peak := peakFMA()
					for b.Loop() {
						p.MatMul(dst, w, x, n)
					}
					gf := 2 * float64(n*rows*k) * float64(b.N) / b.Elapsed().Seconds() / 1e9
					b.ReportMetric(gf, "GFLOP/s")
					b.ReportMetric(gf/peak, "peak-ratio")
				})
			}
		}
	}
}

// BenchmarkForOverhead is the cost of one For call that does no work: the
// fixed price decode pays per parallel step.
func BenchmarkForOverhead(b *testing.B) {
	p := New(benchWorkers)
	defer p.Close()
	t := &nopTask{}
	for b.Loop() {
		p.For(benchWorkers, t)
	}
}
