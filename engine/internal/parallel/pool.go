package parallel

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duet-llm/duet/engine/internal/kernel"
)

// Task is a unit of divisible work: Do computes the indices [lo, hi). Do
// is called from several goroutines at once on disjoint ranges. It must
// not call back into the same Pool (calls are serialised, so that would
// deadlock), and a panic in it ends the program, as in any goroutine.
type Task interface {
	Do(lo, hi int)
}

// Pool runs Tasks on a fixed set of worker goroutines plus the caller.
type Pool struct {
	workers int

	start    sync.Once
	done     sync.WaitGroup // worker goroutines
	wake     chan struct{}  // one token per helper a call wants
	finished chan struct{}  // the last helper of a call sends one token

	mu      sync.Mutex // one call at a time; guards everything below
	closed  bool
	pending atomic.Int32 // helpers still working on the current call
	task    Task
	n       int
	grain   int
	next    atomic.Int64 // next index to hand out
	mm      matMulTask
}

// New returns a pool of workers goroutines in all, the caller of each call
// included (workers <= 0 means runtime.GOMAXPROCS(0)). It starts nothing.
func New(workers int) *Pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Pool{workers: workers}
}

// Workers is the number of goroutines a call runs on, the caller included.
func (p *Pool) Workers() int { return p.workers }

func (p *Pool) startWorkers() {
	p.wake = make(chan struct{}, p.workers)
	p.finished = make(chan struct{}, 1)
	for range p.workers - 1 {
		p.done.Add(1)
		go p.worker()
	}
}

func (p *Pool) worker() {
	defer p.done.Done()
	for await(p.wake) {
		p.run()
		if p.pending.Add(-1) == 0 {
			p.finished <- struct{}{}
		}
	}
}

// spinFor is how long a goroutine polls for a token before it parks:
// decode issues its calls back to back, and waking a parked goroutine
// costs microseconds (tens of them in a VM), a large share of a small
// product. Both the idle workers and a caller waiting for its helpers
// poll.
const spinFor = 50 * time.Microsecond

// await takes a token from ch, polling for up to spinFor and then parked.
// It reports false once ch is closed.
func await(ch chan struct{}) bool {
	var start time.Time
	for i := 1; ; i++ {
		select {
		case _, ok := <-ch:
			return ok
		default:
		}
		if i%64 == 0 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinFor {
				break
			}
		}
	}
	_, ok := <-ch
	return ok
}

// run claims chunks of the current call until none is left.
func (p *Pool) run() {
	g := int64(p.grain)
	n := int64(p.n)
	for {
		lo := p.next.Add(g) - g
		if lo >= n {
			return
		}
		p.task.Do(int(lo), int(min(lo+g, n)))
	}
}

// For runs task.Do over [0, n) split into chunks, on the pool's workers
// and the caller, and returns when every index is done. Chunks are about
// n/(4*workers) long, at least 1.
func (p *Pool) For(n int, task Task) {
	p.ForGrain(n, max(1, (n+4*p.workers-1)/(4*p.workers)), task)
}

// ForGrain is For with chunks of grain indices (the last may be shorter).
func (p *Pool) ForGrain(n, grain int, task Task) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forLocked(n, grain, task)
}

func (p *Pool) forLocked(n, grain int, task Task) {
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	helpers := min(p.workers, chunks) - 1
	if p.closed || helpers <= 0 {
		task.Do(0, n)
		return
	}
	p.start.Do(p.startWorkers)
	p.task, p.n, p.grain = task, n, grain
	p.next.Store(0)
	p.pending.Store(int32(helpers))
	for range helpers {
		p.wake <- struct{}{}
	}
	p.run()
	await(p.finished)
	p.task = nil
}

// Close stops the worker goroutines and waits for them. Calls after Close
// run on the caller alone.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.start.Do(func() {}) // never start after Close
	if p.wake != nil {
		close(p.wake)
	}
	p.done.Wait()
}

// matMulTask is MatMul's Task; the pool keeps one so a call allocates
// nothing.
type matMulTask struct {
	dst []float32
	w   kernel.Mat
	x   []float32
	n   int
}

func (t *matMulTask) Do(lo, hi int) {
	kernel.MatMulRows(t.dst, t.w, t.x, t.n, lo, hi)
}

// minParallelMACs is the smallest product, in multiply-adds, that MatMul
// splits across the workers: below it (a few microseconds of work, the
// products of a small model's decode step) the hand-off to a worker, which
// may have to be woken, costs more than the worker saves.
const minParallelMACs = 256 << 10

// rowGrain is the number of weight rows in a chunk of MatMul: a multiple
// of 16 (the micro-kernels' row blocks divide it). Few activation rows
// (decode) take chunks of about 96 KiB of weights, so that the workers
// finish together; many (prefill) take a quarter of a worker's share, so
// that each chunk keeps the kernels' cache blocking whole.
func rowGrain(rows, rowBytes, n, workers int) int {
	const align = 16
	var g int
	if n <= 16 {
		g = (96 << 10) / max(rowBytes, 1)
	} else {
		g = (rows + 4*workers - 1) / (4 * workers)
	}
	g = (g + align - 1) / align * align
	return max(g, align)
}

// MatMul computes dst[b*w.Rows+r] = kernel.Dot(row r of w, row b of x) for
// every b < n and r < w.Rows, splitting the rows across the pool. The
// result has the same bits as kernel.MatMulRows over all rows.
//
// Shapes are checked on the caller before any worker starts, so a mismatch
// panics there (as kernel.MatMulRows does) rather than in a worker.
func (p *Pool) MatMul(dst []float32, w kernel.Mat, x []float32, n int) {
	if n <= 0 || w.Rows <= 0 {
		return
	}
	if err := w.Validate(); err != nil {
		panic("parallel: MatMul: " + err.Error())
	}
	if len(x)/max(w.Cols, 1) < n || len(dst)/w.Rows < n {
		panic(fmt.Sprintf("parallel: MatMul: %d rows of %d need %d activations and %d outputs, have %d and %d",
			n, w.Cols, n*w.Cols, n*w.Rows, len(x), len(dst)))
	}
	if p.workers <= 1 || w.Rows <= 16 || int64(w.Rows)*int64(w.Cols)*int64(n) < minParallelMACs {
		kernel.MatMulRows(dst, w, x, n, 0, w.Rows)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mm = matMulTask{dst: dst, w: w, x: x, n: n}
	p.forLocked(w.Rows, rowGrain(w.Rows, w.RowBytes(), n, p.workers), &p.mm)
	p.mm = matMulTask{}
}
