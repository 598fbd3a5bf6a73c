package llama

import (
	"math"
	"sync"

	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/kvcache"
)

// queryTile is how many query tokens of one head one attention task takes.
const queryTile = 16

// attnTask is one (step, head, run of query rows) unit of attention work.
type attnTask struct {
	step   int32
	head   int32
	row    int32 // first batch row
	n      int32 // query rows
	posEnd int32 // position of the last query + 1 (keys 0..posEnd-1 are read)
}

// attnScratch is one worker's memory; tasks take one from the free list.
type attnScratch struct {
	qh     []float32 // [queryTile][HeadDim]
	tmp    []float32 // [queryTile][BlockTokens]
	scores []float32 // [queryTile][MaxContext]
}

// attnJob runs causal attention for a batch, reading keys and values back
// from the KV cache (never from the fresh float32 projections), so that a
// query sees exactly the bytes it would see had its context been computed
// in another call, chunk, batch or process.
type attnJob struct {
	s     *State
	layer int
	q     []float32
	out   []float32
	tasks []attnTask

	mu   sync.Mutex
	free []*attnScratch
	all  []*attnScratch
}

func (j *attnJob) init(s *State) {
	j.s = s
	j.tasks = make([]attnTask, 0, s.m.Heads*(s.cfg.MaxTokens/queryTile+s.cfg.MaxSteps))
}

func (j *attnJob) run(layer int, q, out []float32, T int) {
	s := j.s
	j.layer, j.q, j.out = layer, q, out
	j.tasks = j.tasks[:0]
	row := 0
	for i := range s.steps {
		n := len(s.steps[i].Tokens)
		for h := 0; h < s.m.Heads; h++ {
			for r := 0; r < n; r += queryTile {
				c := min(queryTile, n-r)
				j.tasks = append(j.tasks, attnTask{step: int32(i), head: int32(h), row: int32(row + r), n: int32(c),
					posEnd: s.rows[row+r+c-1].pos + 1})
			}
		}
		row += n
	}
	s.par.For(len(j.tasks), j)
	j.q, j.out = nil, nil
}

func (j *attnJob) get() *attnScratch {
	j.mu.Lock()
	defer j.mu.Unlock()
	if n := len(j.free); n > 0 {
		sc := j.free[n-1]
		j.free = j.free[:n-1]
		return sc
	}
	s := j.s
	sc := &attnScratch{
		qh:     make([]float32, queryTile*s.m.HeadDim),
		tmp:    make([]float32, queryTile*s.kv.BlockTokens),
		scores: make([]float32, queryTile*s.cfg.MaxContext),
	}
	j.all = append(j.all, sc)
	return sc
}

func (j *attnJob) put(sc *attnScratch) {
	j.mu.Lock()
	j.free = append(j.free, sc)
	j.mu.Unlock()
}

// Do runs tasks lo..hi-1.
func (j *attnJob) Do(lo, hi int) {
	sc := j.get()
	for i := lo; i < hi; i++ {
		j.task(&j.tasks[i], sc)
	}
	j.put(sc)
}

func (j *attnJob) task(tk *attnTask, sc *attnScratch) {
	s := j.s
	m, kv := s.m, s.kv
	hd, bt := m.HeadDim, kv.BlockTokens
	h := int(tk.head)
	g := h / (m.Heads / m.KVHeads)
	nq := int(tk.n)
	qd := m.QDim()
	seq := s.steps[tk.step].Seq
	posEnd := int(tk.posEnd)
	firstPos := posEnd - nq
	stride := posEnd

	// Gather this head's queries into a contiguous [nq][hd].
	qh := sc.qh[:nq*hd]
	for i := 0; i < nq; i++ {
		r := int(tk.row) + i
		copy(qh[i*hd:(i+1)*hd], j.q[r*qd+h*hd:r*qd+(h+1)*hd])
	}

	var kt kernel.DType
	switch kv.DType {
	case kvcache.F16:
		kt = kernel.F16
	case kvcache.I8:
		kt = kernel.I8
	default:
		kt = kernel.F32
	}
	es := kv.DType.ElemBytes()
	scale := float32(1 / math.Sqrt(float64(hd)))

	// Scores: one matrix product per block of keys.
	scores := sc.scores[:nq*stride]
	nBlocks := (posEnd + bt - 1) / bt
	for b := 0; b < nBlocks; b++ {
		slot := s.pool.Slot(j.layer, seq.Blocks[b])
		rows := min(bt, posEnd-b*bt)
		off := kv.KOffset(g, 0)
		km := kernel.Mat{Type: kt, Rows: bt, Cols: hd, Data: slot[off : off+bt*hd*es]}
		tmp := sc.tmp[:nq*bt]
		kernel.MatMulRows(tmp, km, qh, nq, 0, rows)
		for i := 0; i < nq; i++ {
			dst := scores[i*stride+b*bt : i*stride+b*bt+rows]
			src := tmp[i*bt : i*bt+rows]
			if kv.DType == kvcache.I8 {
				ks := f32s(slot[kv.KScaleOffset(g, 0) : kv.KScaleOffset(g, 0)+4*bt])
				for r := range dst {
					dst[r] = float32(float32(src[r]*ks[r]) * scale)
				}
			} else {
				for r := range dst {
					dst[r] = float32(src[r] * scale)
				}
			}
		}
	}

	// Softmax and the weighted sum of values, per query, in key order.
	for i := 0; i < nq; i++ {
		valid := firstPos + i + 1
		p := scores[i*stride : i*stride+valid]
		mx := float32(math.Inf(-1))
		for _, v := range p {
			if v > mx {
				mx = v
			}
		}
		var sum float32
		for r, v := range p {
			e := float32(math.Exp(float64(v - mx)))
			p[r] = e
			sum += e
		}
		inv := 1 / sum
		out := j.out[(int(tk.row)+i)*qd+h*hd : (int(tk.row)+i)*qd+(h+1)*hd]
		clear(out)
		for b := 0; b*bt < valid; b++ {
			slot := s.pool.Slot(j.layer, seq.Blocks[b])
			rows := min(bt, valid-b*bt)
			var vs []float32
			if kv.DType == kvcache.I8 {
				vs = f32s(slot[kv.VScaleOffset(g, 0) : kv.VScaleOffset(g, 0)+4*bt])
			}
			for r := 0; r < rows; r++ {
				a := float32(p[b*bt+r] * inv)
				if vs != nil {
					a = float32(a * vs[r])
				}
				off := kv.VOffset(g, r)
				kernel.Axpy(kt, out, a, slot[off:off+hd*es])
			}
		}
	}
}
