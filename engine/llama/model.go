package llama

import (
	"fmt"

	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/kernel"
)

// Layer holds one transformer block's weights. Matrices point into the
// model file's mapping; norms and biases are small float32 copies.
type Layer struct {
	AttnNorm   []float32
	Wq, Wk, Wv kernel.Mat
	Bq, Bk, Bv []float32 // optional (qwen2)
	Wo         kernel.Mat
	FFNNorm    []float32
	Wgate, Wup kernel.Mat
	Wdown      kernel.Mat
}

// Model is a loaded model: its configuration and weights.
type Model struct {
	Config
	Embed   kernel.Mat // Vocab rows of Dim
	OutNorm []float32
	Output  kernel.Mat // Vocab rows of Dim; the embedding when weights are tied
	Tied    bool
	Blocks  []Layer
	// FreqFactors divides RoPE frequencies (rope_freqs.weight, Llama 3.1).
	FreqFactors []float32
}

// Load builds a model over an open GGUF file. The file must stay open while
// the model is used: the weight matrices are views into its mapping.
func Load(f *gguf.File) (*Model, error) {
	cfg, err := ConfigFromGGUF(&f.Metadata)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg}
	l := loader{f: f}
	m.Embed = l.mat("token_embd.weight", cfg.Dim, -1)
	if l.err != nil {
		return nil, l.err
	}
	m.Vocab = m.Embed.Rows
	if toks, err := f.Metadata.Strings("tokenizer.ggml.tokens"); err == nil && len(toks) != m.Vocab {
		return nil, fmt.Errorf("%w: vocabulary has %d tokens but token_embd has %d rows", ErrModel, len(toks), m.Vocab)
	}
	m.OutNorm = l.vec("output_norm.weight", cfg.Dim)
	if _, err := f.Tensor("output.weight"); err == nil {
		m.Output = l.mat("output.weight", cfg.Dim, m.Vocab)
	} else {
		m.Output, m.Tied = m.Embed, true
	}
	if _, err := f.Tensor("rope_freqs.weight"); err == nil {
		m.FreqFactors = l.vec("rope_freqs.weight", cfg.RopeDims/2)
	}
	qd, kvd := cfg.QDim(), cfg.KVDim()
	m.Blocks = make([]Layer, cfg.Layers)
	for i := range m.Blocks {
		p := fmt.Sprintf("blk.%d.", i)
		ly := &m.Blocks[i]
		ly.AttnNorm = l.vec(p+"attn_norm.weight", cfg.Dim)
		ly.Wq = l.mat(p+"attn_q.weight", cfg.Dim, qd)
		ly.Wk = l.mat(p+"attn_k.weight", cfg.Dim, kvd)
		ly.Wv = l.mat(p+"attn_v.weight", cfg.Dim, kvd)
		ly.Bq = l.optVec(p+"attn_q.bias", qd)
		ly.Bk = l.optVec(p+"attn_k.bias", kvd)
		ly.Bv = l.optVec(p+"attn_v.bias", kvd)
		ly.Wo = l.mat(p+"attn_output.weight", qd, cfg.Dim)
		ly.FFNNorm = l.vec(p+"ffn_norm.weight", cfg.Dim)
		ly.Wgate = l.mat(p+"ffn_gate.weight", cfg.Dim, cfg.FFN)
		ly.Wup = l.mat(p+"ffn_up.weight", cfg.Dim, cfg.FFN)
		ly.Wdown = l.mat(p+"ffn_down.weight", cfg.FFN, cfg.Dim)
	}
	if l.err != nil {
		return nil, l.err
	}
	return m, nil
}

// WeightBytes is the number of weight bytes one decode step reads
// (every matrix once; the embedding row is negligible).
func (m *Model) WeightBytes() int64 {
	n := int64(len(m.Output.Data))
	for _, ly := range m.Blocks {
		for _, w := range []kernel.Mat{ly.Wq, ly.Wk, ly.Wv, ly.Wo, ly.Wgate, ly.Wup, ly.Wdown} {
			n += int64(len(w.Data))
		}
	}
	return n
}

// FlopsPerToken is the multiply-add count ×2 of the matrix products for
// one token (attention over the context excluded).
func (m *Model) FlopsPerToken() int64 {
	n := int64(m.Output.Rows) * int64(m.Output.Cols)
	for _, ly := range m.Blocks {
		for _, w := range []kernel.Mat{ly.Wq, ly.Wk, ly.Wv, ly.Wo, ly.Wgate, ly.Wup, ly.Wdown} {
			n += int64(w.Rows) * int64(w.Cols)
		}
	}
	return 2 * n
}

type loader struct {
	f   *gguf.File
	err error
}

func (l *loader) tensor(name string) *gguf.Tensor {
	if l.err != nil {
		return nil
	}
	t, err := l.f.Tensor(name)
	if err != nil {
		l.err = fmt.Errorf("%w: %v", ErrModel, err)
		return nil
	}
	return t
}

// mat loads a 2-D weight of rows×cols in ggml order [cols, rows]; rows < 0
// accepts any row count.
func (l *loader) mat(name string, cols, rows int) kernel.Mat {
	t := l.tensor(name)
	if t == nil {
		return kernel.Mat{}
	}
	var dt kernel.DType
	switch t.Type {
	case gguf.TypeF32:
		dt = kernel.F32
	case gguf.TypeF16:
		dt = kernel.F16
	case gguf.TypeBF16:
		dt = kernel.BF16
	case gguf.TypeQ8_0:
		dt = kernel.Q8_0
	default:
		l.err = fmt.Errorf("%w: tensor %s has type %s (supported: F32, F16, BF16, Q8_0)", ErrModel, name, t.Type)
		return kernel.Mat{}
	}
	if len(t.Dims) != 2 || t.Dims[0] != uint64(cols) || (rows >= 0 && t.Dims[1] != uint64(rows)) {
		l.err = fmt.Errorf("%w: tensor %s has shape %v, want [%d, %d]", ErrModel, name, t.Dims, cols, rows)
		return kernel.Mat{}
	}
	m := kernel.Mat{Type: dt, Rows: int(t.Dims[1]), Cols: cols, Data: t.Data}
	if err := m.Validate(); err != nil {
		l.err = fmt.Errorf("%w: tensor %s: %v", ErrModel, name, err)
	}
	return m
}

// vec loads a 1-D float vector (F32 or F16) as a float32 copy.
func (l *loader) vec(name string, n int) []float32 {
	t := l.tensor(name)
	if t == nil {
		return nil
	}
	if len(t.Dims) != 1 || t.Dims[0] != uint64(n) {
		l.err = fmt.Errorf("%w: tensor %s has shape %v, want [%d]", ErrModel, name, t.Dims, n)
		return nil
	}
	out := make([]float32, n)
	switch t.Type {
	case gguf.TypeF32:
		kernel.ToF32(kernel.F32, out, t.Data)
	case gguf.TypeF16:
		kernel.ToF32(kernel.F16, out, t.Data)
	case gguf.TypeBF16:
		kernel.ToF32(kernel.BF16, out, t.Data)
	default:
		l.err = fmt.Errorf("%w: tensor %s has type %s (want F32, F16 or BF16)", ErrModel, name, t.Type)
		return nil
	}
	return out
}

func (l *loader) optVec(name string, n int) []float32 {
	if l.err != nil {
		return nil
	}
	if _, err := l.f.Tensor(name); err != nil {
		return nil
	}
	return l.vec(name, n)
}
