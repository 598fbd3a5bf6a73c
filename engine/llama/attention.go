package llama

import (
	"math"
	"sync"

	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/kvcache"
)

// queryTile is how many query tokens of one head one attention task takes:
// the lanes of kernel.SoftmaxTile.
const queryTile = kernel.TileLanes

// attnParallelMin is the least attention work, in query-key pairs times
// the head dimension, that is split across the pool's workers; about
// 10µs of work on one core.
const attnParallelMin = 64 << 10

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
	qt     []float32 // the queries as kernel.TransposeQueries stores them
	keys   []float32 // [BlockTokens][HeadDim]: a block's keys as float32
	scores []float32 // [MaxContext][TileLanes]: scores, position-major
	w      []float32 // [MaxContext][TileLanes]: the values' weights
	vs     []float32 // [MaxContext]: int8 value scales
	ks     []float32 // [MaxContext]: int8 key scales (one query)
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
	row, work := 0, 0
	for i := range s.steps {
		n := len(s.steps[i].Tokens)
		for h := 0; h < s.m.Heads; h++ {
			for r := 0; r < n; r += queryTile {
				c := min(queryTile, n-r)
				tk := attnTask{step: int32(i), head: int32(h), row: int32(row + r), n: int32(c),
					posEnd: s.rows[row+r+c-1].pos + 1}
				j.tasks = append(j.tasks, tk)
				work += c * int(tk.posEnd)
			}
		}
		row += n
	}
	if work*s.m.HeadDim < attnParallelMin {
		// Too little to share: handing tasks to a worker would cost
		// more than it saves (a small model's decode step).
		j.Do(0, len(j.tasks))
	} else {
		s.par.For(len(j.tasks), j)
	}
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
		qt:     make([]float32, kernel.QueriesLen(s.m.HeadDim)),
		keys:   make([]float32, s.kv.BlockTokens*s.m.HeadDim),
		scores: make([]float32, kernel.TileLanes*s.cfg.MaxContext),
		w:      make([]float32, kernel.TileLanes*s.cfg.MaxContext),
		vs:     make([]float32, s.cfg.MaxContext),
		ks:     make([]float32, s.cfg.MaxContext),
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

	if nq == 1 {
		j.taskRow(tk, sc)
		return
	}

	// Gather this head's queries into a contiguous [nq][hd].
	qh := sc.qh[:nq*hd]
	for i := 0; i < nq; i++ {
		r := int(tk.row) + i
		copy(qh[i*hd:(i+1)*hd], j.q[r*qd+h*hd:r*qd+(h+1)*hd])
	}

	kt := kvType(kv.DType)
	es := kv.DType.ElemBytes()
	scale := float32(1 / math.Sqrt(float64(hd)))

	// Scores: one matrix product per block of keys, scaled and stored
	// position-major (scores[pos*L+i]), the layout of SoftmaxTile.
	const L = kernel.TileLanes
	scores := sc.scores[:posEnd*L]
	var vs []float32
	if kv.DType == kvcache.I8 {
		vs = sc.vs[:posEnd]
	}
	qt := sc.qt
	kernel.TransposeQueries(qt, qh, nq, hd)
	nBlocks := (posEnd + bt - 1) / bt
	for b := 0; b < nBlocks; b++ {
		slot := s.pool.Slot(j.layer, seq.Blocks[b])
		rows := min(bt, posEnd-b*bt)
		off := kv.KOffset(g, 0)
		var keys, ks []float32
		if kt == kernel.F32 {
			keys = f32s(slot[off : off+rows*hd*4])
		} else {
			keys = sc.keys[:rows*hd]
			kernel.ToF32(kt, keys, slot[off:off+rows*hd*es])
		}
		if kv.DType == kvcache.I8 {
			ks = f32s(slot[kv.KScaleOffset(g, 0) : kv.KScaleOffset(g, 0)+4*rows])
			copy(vs[b*bt:b*bt+rows], f32s(slot[kv.VScaleOffset(g, 0):kv.VScaleOffset(g, 0)+4*rows]))
		}
		kernel.AttnScores(scores[b*bt*L:], keys, hd, rows, qt, nq, hd, scale, ks)
	}

	// Softmax per query in key order, the int8 value scales folded into
	// the weights (w[pos*L+i]).
	w := sc.w[:posEnd*L]
	kernel.SoftmaxTile(w, scores, posEnd, nq, firstPos, vs)

	// The weighted sum of values, block by block in key order: the keys
	// every query sees in one call for the whole tile, then, on the causal
	// edge, each query's remaining keys of the block. Each output element
	// still takes its keys in order, one FMA each.
	row := int(tk.row)
	dst := j.out[row*qd+h*hd:]
	for i := 0; i < nq; i++ {
		clear(dst[i*qd : i*qd+hd])
	}
	vrow := hd * es
	for b := 0; b < nBlocks; b++ {
		slot := s.pool.Slot(j.layer, seq.Blocks[b])
		k0, k1 := b*bt, min((b+1)*bt, posEnd)
		vb := slot[kv.VOffset(g, 0) : kv.VOffset(g, 0)+bt*vrow]
		if ce := min(k1, firstPos+1); ce > k0 {
			kernel.WeightedSum(kt, dst, qd, w[k0*L:], L, vb, nq, ce-k0, hd)
		}
		for i := 1; i < nq; i++ {
			e0, e1 := max(k0, firstPos+1), min(k1, firstPos+i+1)
			if e1 > e0 {
				kernel.WeightedSum(kt, dst[i*qd:], qd, w[e0*L+i:], L, vb[(e0-k0)*vrow:], 1, e1-e0, hd)
			}
		}
	}
}

// kvType is the kernels' name for the cache's element type.
func kvType(d kvcache.DType) kernel.DType {
	switch d {
	case kvcache.F16:
		return kernel.F16
	case kvcache.I8:
		return kernel.I8
	}
	return kernel.F32
}

// taskRow is task for a single query (a decode step): its scores are one
// contiguous row (kernel.DotRows) taken by the one-query softmax, whose
// lanes are positions rather than queries.
func (j *attnJob) taskRow(tk *attnTask, sc *attnScratch) {
	s := j.s
	m, kv := s.m, s.kv
	hd, bt := m.HeadDim, kv.BlockTokens
	h := int(tk.head)
	g := h / (m.Heads / m.KVHeads)
	qd := m.QDim()
	seq := s.steps[tk.step].Seq
	n := int(tk.posEnd)
	row := int(tk.row)
	q := j.q[row*qd+h*hd : row*qd+(h+1)*hd]
	kt := kvType(kv.DType)
	es := kv.DType.ElemBytes()
	scores := sc.scores[:n]
	var ks, vs []float32
	if kv.DType == kvcache.I8 {
		ks, vs = sc.ks[:n], sc.vs[:n]
	}
	nBlocks := (n + bt - 1) / bt
	for b := 0; b < nBlocks; b++ {
		slot := s.pool.Slot(j.layer, seq.Blocks[b])
		rows := min(bt, n-b*bt)
		off := kv.KOffset(g, 0)
		keys := sc.keys[:rows*hd]
		if kt == kernel.F32 {
			keys = f32s(slot[off : off+rows*hd*4])
		} else {
			kernel.ToF32(kt, keys, slot[off:off+rows*hd*es])
		}
		kernel.DotRows(scores[b*bt:], keys, rows, q)
		if ks != nil {
			copy(ks[b*bt:b*bt+rows], f32s(slot[kv.KScaleOffset(g, 0):kv.KScaleOffset(g, 0)+4*rows]))
			copy(vs[b*bt:b*bt+rows], f32s(slot[kv.VScaleOffset(g, 0):kv.VScaleOffset(g, 0)+4*rows]))
		}
	}
	w := sc.w[:n]
	kernel.SoftmaxRow(w, scores, n, float32(1/math.Sqrt(float64(hd))), ks, vs)
	dst := j.out[row*qd+h*hd : row*qd+(h+1)*hd]
	clear(dst)
	vrow := hd * es
	for b := 0; b < nBlocks; b++ {
		slot := s.pool.Slot(j.layer, seq.Blocks[b])
		k0, k1 := b*bt, min((b+1)*bt, n)
		vb := slot[kv.VOffset(g, 0) : kv.VOffset(g, 0)+bt*vrow]
		kernel.WeightedSum(kt, dst, hd, w[k0:], 1, vb, 1, k1-k0, hd)
	}
}
