package parallel

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/duet-llm/duet/engine/internal/kernel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countTask counts how often each index is done.
type countTask struct{ hits []atomic.Int32 }

func (c *countTask) Do(lo, hi int) {
	for i := lo; i < hi; i++ {
		c.hits[i].Add(1)
	}
}

func TestForDoesEachIndexOnce(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		p := New(workers)
		for _, n := range []int{0, 1, 2, 5, 16, 17, 100, 1000} {
			for _, grain := range []int{0, 1, 3, 64, 5000} {
				c := &countTask{hits: make([]atomic.Int32, n)}
				if grain == 0 {
					p.For(n, c)
				} else {
					p.ForGrain(n, grain, c)
				}
				for i := range c.hits {
					if h := c.hits[i].Load(); h != 1 {
						t.Fatalf("workers=%d n=%d grain=%d: index %d done %d times", workers, n, grain, i, h)
					}
				}
			}
		}
		p.Close()
	}
}

// TestForUsesWorkers checks that a call really runs on several goroutines:
// each chunk blocks until every participant has started one.
func TestForUsesWorkers(t *testing.T) {
	p := New(3)
	defer p.Close()
	b := &barrierTask{need: 3}
	b.cond = sync.NewCond(&b.mu)
	p.ForGrain(3, 1, b)
}

type barrierTask struct {
	mu   sync.Mutex
	cond *sync.Cond
	in   int
	need int
}

func (b *barrierTask) Do(lo, hi int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.in++
	b.cond.Broadcast()
	for b.in < b.need {
		b.cond.Wait()
	}
}

func TestConcurrentCallers(t *testing.T) {
	p := New(4)
	defer p.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				c := &countTask{hits: make([]atomic.Int32, 37+g)}
				p.For(len(c.hits), c)
				for i := range c.hits {
					if c.hits[i].Load() != 1 {
						t.Errorf("caller %d: index %d done %d times", g, i, c.hits[i].Load())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestCloseThenCall(t *testing.T) {
	p := New(4)
	c := &countTask{hits: make([]atomic.Int32, 100)}
	p.For(100, c)
	p.Close()
	p.Close()
	p.For(100, c)
	for i := range c.hits {
		if c.hits[i].Load() != 2 {
			t.Fatalf("index %d done %d times", i, c.hits[i].Load())
		}
	}
	New(2).Close() // never started
}

func randMat(r *rand.Rand, t kernel.DType, rows, cols int) kernel.Mat {
	m := kernel.Mat{Type: t, Rows: rows, Cols: cols, Data: make([]byte, rows*kernel.RowBytes(t, cols))}
	for i := range m.Data {
		m.Data[i] = byte(r.Uint32())
	}
	if t == kernel.F32 || t == kernel.F16 || t == kernel.BF16 || t == kernel.Q8_0 {
		// Finite values: fill through the conversions' input domain.
		for i := 0; i < rows; i++ {
			row := m.Row(i)
			switch t {
			case kernel.F32:
				for j := 0; j < cols; j++ {
					binary.LittleEndian.PutUint32(row[4*j:], math.Float32bits(float32(r.NormFloat64())))
				}
			case kernel.F16, kernel.BF16:
				for j := 0; j < cols; j++ {
					row[2*j+1] &= 0xbb // clear an exponent bit: no Inf or NaN
				}
			case kernel.Q8_0:
				for j := 0; j < cols/32; j++ {
					binary.LittleEndian.PutUint16(row[34*j:], 0x2000+uint16(r.IntN(0x400)))
				}
			}
		}
	}
	return m
}

// TestMatMulMatchesSerial checks that splitting rows across workers
// changes no bit: every worker count gives what one MatMulRows call over
// all rows gives. (The last shapes are above minParallelMACs, so they are
// split; the small ones run on the caller.)
func TestMatMulMatchesSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []kernel.DType{kernel.F32, kernel.F16, kernel.BF16, kernel.Q8_0, kernel.I8} {
		for _, shape := range []struct{ rows, cols, n int }{{1, 32, 1}, {17, 64, 3}, {100, 96, 1}, {257, 160, 9}, {64, 32, 16}, {513, 512, 1}, {1000, 96, 8}} {
			w := randMat(r, dt, shape.rows, shape.cols)
			x := make([]float32, shape.n*shape.cols)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			want := make([]float32, shape.n*shape.rows)
			kernel.MatMulRows(want, w, x, shape.n, 0, shape.rows)
			for _, workers := range []int{1, 2, 3, 5} {
				p := New(workers)
				got := make([]float32, len(want))
				p.MatMul(got, w, x, shape.n)
				p.Close()
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %+v workers=%d: [%d] = %v, serial %v", dt, shape, workers, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func TestMatMulBadShapePanics(t *testing.T) {
	p := New(2)
	defer p.Close()
	w := kernel.Mat{Type: kernel.F32, Rows: 64, Cols: 16, Data: make([]byte, 64*64)}
	tests := []struct {
		name   string
		dst, x []float32
		w      kernel.Mat
	}{
		{"short dst", make([]float32, 63), make([]float32, 16), w},
		{"short x", make([]float32, 64), make([]float32, 15), w},
		{"short data", make([]float32, 64), make([]float32, 16), kernel.Mat{Type: kernel.F32, Rows: 64, Cols: 16, Data: make([]byte, 64*63)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			p.MatMul(tc.dst, tc.w, tc.x, 1)
		})
	}
}

type nopTask struct{ sum atomic.Int64 }

func (n *nopTask) Do(lo, hi int) { n.sum.Add(int64(hi - lo)) }

func TestZeroAllocs(t *testing.T) {
	p := New(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(3, 4))
	w := randMat(r, kernel.F16, 256, 64)
	x := make([]float32, 4*64)
	dst := make([]float32, 4*256)
	task := &nopTask{}
	p.For(100, task) // start the workers
	if a := testing.AllocsPerRun(100, func() { p.For(100, task) }); a != 0 {
		t.Errorf("For: %v allocations per call", a)
	}
	if a := testing.AllocsPerRun(100, func() { p.MatMul(dst, w, x, 4) }); a != 0 {
		t.Errorf("MatMul: %v allocations per call", a)
	}
	if task.sum.Load() != 102*100 { // AllocsPerRun adds a warm-up call
		t.Errorf("For did %d indices, want %d", task.sum.Load(), 102*100)
	}
}
