package llama

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/duet-llm/duet/engine/internal/kernel"
	"github.com/duet-llm/duet/engine/internal/parallel"
	"github.com/duet-llm/duet/engine/kvcache"
)

// Errors from Forward.
var (
	ErrBatch    = errors.New("llama: batch exceeds the state's limits")
	ErrPosition = errors.New("llama: position beyond the context length")
	ErrToken    = errors.New("llama: token id out of range")
	ErrCapacity = errors.New("llama: sequence has too few KV blocks")
)

// Step is one sequence's part of a forward call: Tokens are appended after
// the Seq.Len tokens already in its KV cache (a whole prompt, a prefill
// chunk, or one decode token).
type Step struct {
	Seq    *kvcache.Seq
	Tokens []int32
	// Logits, when non-nil (Vocab long), receives the logits of the last
	// token. Leave it nil for prefill chunks whose output is not needed.
	Logits []float32
}

// StateConfig bounds what one Forward call may hold; buffers are sized from
// it once so that steady-state calls allocate nothing.
type StateConfig struct {
	MaxTokens  int // tokens per call, summed over steps
	MaxSteps   int // sequences per call
	MaxContext int // positions per sequence (0 = the model's context length)
}

// State is the scratch memory and the KV pool a model computes with. A
// State is used by one goroutine at a time.
type State struct {
	m    *Model
	pool *kvcache.Pool
	kv   kvcache.Layout
	par  *parallel.Pool
	cfg  StateConfig

	x, xb, q, k, v, att, hb, hb2 []float32
	last, logits                 []float32

	ropeCos, ropeSin []float32 // [MaxContext][RopeDims/2]

	rows  []rowRef // per token of the batch
	attn  attnJob
	rowsJ rowJob
	steps []Step
}

type rowRef struct {
	step int32
	pos  int32
}

// NewState allocates the scratch for m over pool.
func NewState(m *Model, pool *kvcache.Pool, par *parallel.Pool, cfg StateConfig) (*State, error) {
	if cfg.MaxContext <= 0 || cfg.MaxContext > m.ContextLen {
		cfg.MaxContext = m.ContextLen
	}
	if cfg.MaxTokens <= 0 || cfg.MaxSteps <= 0 {
		return nil, fmt.Errorf("%w: max tokens %d, max steps %d", ErrBatch, cfg.MaxTokens, cfg.MaxSteps)
	}
	kv := pool.Layout()
	if kv.Layers != m.Layers || kv.KVHeads != m.KVHeads || kv.HeadDim != m.HeadDim {
		return nil, fmt.Errorf("%w: KV layout %v does not fit the model (%d layers, %d KV heads, head dim %d)", ErrModel, kv, m.Layers, m.KVHeads, m.HeadDim)
	}
	T := cfg.MaxTokens
	s := &State{m: m, pool: pool, kv: kv, par: par, cfg: cfg,
		x: make([]float32, T*m.Dim), xb: make([]float32, T*m.Dim),
		q: make([]float32, T*m.QDim()), k: make([]float32, T*m.KVDim()), v: make([]float32, T*m.KVDim()),
		att: make([]float32, T*m.QDim()),
		hb:  make([]float32, T*m.FFN), hb2: make([]float32, T*m.FFN),
		last: make([]float32, cfg.MaxSteps*m.Dim), logits: make([]float32, cfg.MaxSteps*m.Vocab),
		rows: make([]rowRef, T),
	}
	s.initRope()
	s.attn.init(s)
	s.rowsJ.s = s
	return s, nil
}

// Model returns the state's model.
func (s *State) Model() *Model { return s.m }

// Pool returns the KV pool.
func (s *State) Pool() *kvcache.Pool { return s.pool }

// Config returns the limits the state was built with.
func (s *State) Config() StateConfig { return s.cfg }

func (s *State) initRope() {
	m := s.m
	half := m.RopeDims / 2
	s.ropeCos = make([]float32, s.cfg.MaxContext*half)
	s.ropeSin = make([]float32, s.cfg.MaxContext*half)
	for i := 0; i < half; i++ {
		theta := math.Pow(m.RopeBase, -float64(2*i)/float64(m.RopeDims))
		if m.FreqFactors != nil {
			theta /= float64(m.FreqFactors[i])
		}
		for p := 0; p < s.cfg.MaxContext; p++ {
			a := float64(p) / m.RopeScale * theta
			s.ropeCos[p*half+i] = float32(math.Cos(a))
			s.ropeSin[p*half+i] = float32(math.Sin(a))
		}
	}
}

// Forward runs the batch through the model: every step's tokens are
// appended to its sequence's KV cache and, where asked, the last token's
// logits are written. onLayer (optional) is called after each layer's K and
// V of the whole batch are in the cache, before that layer's attention, so
// a caller can ship the layer while the rest computes.
//
// Each sequence's blocks must already cover Seq.Len+len(Tokens) tokens.
// A sequence's results do not depend on the other steps in the batch nor on
// how its prompt was split into calls: every reduction has a fixed order.
func (s *State) Forward(steps []Step, onLayer func(layer int)) error {
	m := s.m
	if len(steps) > s.cfg.MaxSteps {
		return fmt.Errorf("%w: %d steps > %d", ErrBatch, len(steps), s.cfg.MaxSteps)
	}
	T, nLogits := 0, 0
	for i := range steps {
		st := &steps[i]
		n := len(st.Tokens)
		if n == 0 {
			return fmt.Errorf("%w: step %d has no tokens", ErrBatch, i)
		}
		if T+n > s.cfg.MaxTokens {
			return fmt.Errorf("%w: more than %d tokens", ErrBatch, s.cfg.MaxTokens)
		}
		end := st.Seq.Len + n
		if end > s.cfg.MaxContext {
			return fmt.Errorf("%w: step %d reaches position %d, limit %d", ErrPosition, i, end, s.cfg.MaxContext)
		}
		if st.Seq.Capacity(s.kv) < end {
			return fmt.Errorf("%w: step %d needs %d tokens, blocks hold %d", ErrCapacity, i, end, st.Seq.Capacity(s.kv))
		}
		for j, tok := range st.Tokens {
			if tok < 0 || int(tok) >= m.Vocab {
				return fmt.Errorf("%w: %d (vocabulary %d)", ErrToken, tok, m.Vocab)
			}
			s.rows[T+j] = rowRef{step: int32(i), pos: int32(st.Seq.Len + j)}
		}
		if st.Logits != nil {
			if len(st.Logits) != m.Vocab {
				return fmt.Errorf("%w: logits buffer of %d for vocabulary %d", ErrBatch, len(st.Logits), m.Vocab)
			}
			nLogits++
		}
		T += n
	}
	s.steps = steps

	D, qd, kvd := m.Dim, m.QDim(), m.KVDim()
	x, xb := s.x[:T*D], s.xb[:T*D]
	q, k, v, att := s.q[:T*qd], s.k[:T*kvd], s.v[:T*kvd], s.att[:T*qd]
	hb, hb2 := s.hb[:T*m.FFN], s.hb2[:T*m.FFN]

	t := 0
	for i := range steps {
		for _, tok := range steps[i].Tokens {
			kernel.ToF32(m.Embed.Type, x[t*D:(t+1)*D], m.Embed.Row(int(tok)))
			t++
		}
	}

	for l := range m.Blocks {
		ly := &m.Blocks[l]
		if l == 0 {
			s.rowsDo(rowNorm, l, ly.AttnNorm, T)
		} else {
			s.rowsDo(rowResidNorm, l, ly.AttnNorm, T) // the last layer's FFN residual, then this norm
		}
		s.par.MatMul(q, ly.Wq, xb, T)
		s.par.MatMul(k, ly.Wk, xb, T)
		s.par.MatMul(v, ly.Wv, xb, T)
		s.rowsDo(rowQKV, l, nil, T)
		if onLayer != nil {
			onLayer(l)
		}
		s.attn.run(l, q, att, T)
		s.par.MatMul(xb, ly.Wo, att, T)
		s.rowsDo(rowResidNorm, l, ly.FFNNorm, T)
		s.par.MatMul(hb, ly.Wgate, xb, T)
		s.par.MatMul(hb2, ly.Wup, xb, T)
		s.rowsDo(rowSwiGLU, l, nil, T)
		s.par.MatMul(xb, ly.Wdown, hb, T)
	}
	s.rowsDo(rowResid, 0, nil, T)

	if nLogits > 0 {
		last := s.last[:nLogits*D]
		t, j := 0, 0
		for i := range steps {
			t += len(steps[i].Tokens)
			if steps[i].Logits != nil {
				rmsNormRow(last[j*D:(j+1)*D], x[(t-1)*D:t*D], m.OutNorm, m.RMSEps)
				j++
			}
		}
		logits := s.logits[:nLogits*m.Vocab]
		s.par.MatMul(logits, m.Output, last, nLogits)
		j = 0
		for i := range steps {
			if steps[i].Logits != nil {
				copy(steps[i].Logits, logits[j*m.Vocab:(j+1)*m.Vocab])
				j++
			}
		}
	}
	for i := range steps {
		steps[i].Seq.Len += len(steps[i].Tokens)
	}
	s.steps = nil
	return nil
}

// rowKind is one of the element-wise steps between the matrix products.
type rowKind uint8

const (
	rowNorm      rowKind = iota // xb = rmsNorm(x)
	rowResidNorm                // x += xb; xb = rmsNorm(x)
	rowQKV                      // biases, RoPE, K and V into the cache
	rowSwiGLU                   // hb = silu(hb) * hb2
	rowResid                    // x += xb
)

// rowParallelMin is the least element-wise work, in elements (the
// exponentials of SwiGLU counted four times), that rowsDo splits across
// the workers; below it, a hand-off costs more than it saves.
const rowParallelMin = 32 << 10

// rowJob runs one element-wise step over a range of token rows. Every
// row's operations are the same whichever worker runs them and however
// the rows are split, so splitting them changes no bit.
type rowJob struct {
	s     *State
	kind  rowKind
	layer int
	w     []float32 // norm weights
	T     int
}

// rowsDo runs step kind on the T rows of the batch, across the workers
// when there is enough of it (a long prefill chunk) and on the caller
// otherwise (decode).
func (s *State) rowsDo(kind rowKind, layer int, w []float32, T int) {
	m := s.m
	per := m.Dim
	switch kind {
	case rowQKV:
		per = m.QDim() + 2*m.KVDim()
	case rowSwiGLU:
		per = 4 * m.FFN
	}
	j := &s.rowsJ
	j.kind, j.layer, j.w, j.T = kind, layer, w, T
	if T*per < rowParallelMin {
		j.Do(0, T)
	} else {
		s.par.For(T, j)
	}
	j.w = nil
}

func (j *rowJob) Do(lo, hi int) {
	s := j.s
	m := s.m
	D := m.Dim
	x, xb := s.x, s.xb
	switch j.kind {
	case rowNorm:
		for r := lo; r < hi; r++ {
			rmsNormRow(xb[r*D:(r+1)*D], x[r*D:(r+1)*D], j.w, m.RMSEps)
		}
	case rowResidNorm:
		for r := lo; r < hi; r++ {
			addInto(x[r*D:(r+1)*D], xb[r*D:(r+1)*D])
			rmsNormRow(xb[r*D:(r+1)*D], x[r*D:(r+1)*D], j.w, m.RMSEps)
		}
	case rowQKV:
		ly := &m.Blocks[j.layer]
		qd, kvd := m.QDim(), m.KVDim()
		for r := lo; r < hi; r++ {
			q, k, v := s.q[r*qd:(r+1)*qd], s.k[r*kvd:(r+1)*kvd], s.v[r*kvd:(r+1)*kvd]
			addBias(q, ly.Bq)
			addBias(k, ly.Bk)
			addBias(v, ly.Bv)
			pos := int(s.rows[r].pos)
			s.rope(q, m.Heads, pos)
			s.rope(k, m.KVHeads, pos)
			s.storeKV(j.layer, k, v, r)
		}
	case rowSwiGLU:
		F := m.FFN
		kernel.SwiGLU(s.hb[lo*F:hi*F], s.hb2[lo*F:hi*F])
	case rowResid:
		addInto(x[lo*D:hi*D], xb[lo*D:hi*D])
	}
}

// rmsNormRow: dst = x / sqrt(mean(x²) + eps) * w. The explicit float32
// conversions keep every operation separately rounded (no fused
// multiply-add), so results do not depend on the compiler's target level.
func rmsNormRow(dst, x, w []float32, eps float32) {
	var ss float32
	for _, v := range x {
		ss = ss + float32(v*v)
	}
	inv := float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
	for i, v := range x {
		dst[i] = float32(float32(v*inv) * w[i])
	}
}

// addBias adds b to one row (nothing when the model has no bias).
func addBias(x, b []float32) {
	for i := range b {
		x[i] += b[i]
	}
}

func addInto(x, y []float32) {
	for i := range x {
		x[i] += y[i]
	}
}

// rope rotates every head of one row x (heads×HeadDim wide) by the
// token's position.
func (s *State) rope(x []float32, heads, pos int) {
	m := s.m
	half, hd := m.RopeDims/2, m.HeadDim
	cos, sin := s.ropeCos[pos*half:(pos+1)*half], s.ropeSin[pos*half:(pos+1)*half]
	for h := 0; h < heads; h++ {
		v := x[h*hd : (h+1)*hd]
		for i := 0; i < half; i++ {
			a, b := i, i+half // NeoX
			if m.RopeLayout == RopeNorm {
				a, b = 2*i, 2*i+1
			}
			x0, x1 := v[a], v[b]
			v[a] = float32(x0*cos[i]) - float32(x1*sin[i])
			v[b] = float32(x0*sin[i]) + float32(x1*cos[i])
		}
	}
}

// storeKV writes batch row r's keys and values (k, v) of layer l into the
// cache, converted to the cache dtype.
func (s *State) storeKV(l int, k, v []float32, r int) {
	kv, hd := s.kv, s.m.HeadDim
	row := s.rows[r]
	seq := s.steps[row.step].Seq
	p := int(row.pos)
	slot := s.pool.Slot(l, seq.Blocks[p/kv.BlockTokens])
	pos := p % kv.BlockTokens
	for h := 0; h < kv.KVHeads; h++ {
		src := h * hd
		storeVec(kv.DType, slot, kv.KOffset(h, pos), kv.KScaleOffset(h, pos), k[src:src+hd])
		storeVec(kv.DType, slot, kv.VOffset(h, pos), kv.VScaleOffset(h, pos), v[src:src+hd])
	}
}

func storeVec(dt kvcache.DType, slot []byte, off, scaleOff int, src []float32) {
	n := len(src)
	switch dt {
	case kvcache.F32:
		copy(f32s(slot[off:off+4*n]), src)
	case kvcache.F16:
		kernel.F32ToF16(slot[off:off+2*n], src)
	case kvcache.I8:
		f32s(slot[scaleOff : scaleOff+4])[0] = kernel.QuantizeI8(slot[off:off+n], src)
	}
}

// f32s views little-endian float32 bytes as []float32 (the arena and the
// mapped model are 4-byte aligned at every offset this package uses).
func f32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}
