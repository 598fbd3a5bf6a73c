package llama

import (
	"errors"
	"fmt"
	"math"

	"github.com/duet-llm/duet/engine/gguf"
)

// ErrModel is wrapped by every error about an unusable model file.
var ErrModel = errors.New("llama: unsupported or invalid model")

// RopeLayout says which pairs of a head's dimensions RoPE rotates together.
type RopeLayout uint8

const (
	// RopeNorm rotates adjacent pairs (x[2i], x[2i+1]): Meta's Llama layout,
	// ggml rope mode 0, used by llama.cpp for the llama architecture.
	RopeNorm RopeLayout = iota
	// RopeNeoX rotates (x[i], x[i+d/2]): GPT-NeoX / Hugging Face layout, used
	// for qwen2 and other architectures.
	RopeNeoX
)

func (r RopeLayout) String() string {
	if r == RopeNeoX {
		return "neox"
	}
	return "norm"
}

// Config is the shape of a model, read from GGUF metadata.
type Config struct {
	Arch       string
	Name       string
	Dim        int // embedding length
	Layers     int
	Heads      int
	KVHeads    int
	HeadDim    int
	FFN        int // feed-forward (hidden) length
	Vocab      int
	ContextLen int // trained context length
	RMSEps     float32

	RopeLayout RopeLayout
	RopeDims   int     // dimensions of each head that are rotated (≤ HeadDim)
	RopeBase   float64 // frequency base θ
	RopeScale  float64 // linear position scale: positions are divided by it (1 = none)
}

// archs lists the supported architectures and their RoPE layout. Mistral
// and TinyLlama files use the llama architecture name.
var archs = map[string]RopeLayout{
	"llama": RopeNorm,
	"qwen2": RopeNeoX,
}

// ConfigFromGGUF reads and checks a model's configuration.
func ConfigFromGGUF(md *gguf.Metadata) (Config, error) {
	var c Config
	arch, err := md.String("general.architecture")
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrModel, err)
	}
	layout, ok := archs[arch]
	if !ok {
		return c, fmt.Errorf("%w: architecture %q (supported: llama, qwen2)", ErrModel, arch)
	}
	c.Arch, c.RopeLayout = arch, layout
	c.Name, _ = md.String("general.name")

	req := func(dst *int, key string) {
		if err != nil {
			return
		}
		var v uint64
		v, err = md.Uint(arch + "." + key)
		if err == nil && (v == 0 || v > 1<<24) {
			err = fmt.Errorf("%s.%s = %d is out of range", arch, key, v)
		}
		*dst = int(v)
	}
	opt := func(dst *int, key string, def int) {
		if err != nil {
			return
		}
		if !md.Has(arch + "." + key) {
			*dst = def
			return
		}
		req(dst, key)
	}
	req(&c.Dim, "embedding_length")
	req(&c.Layers, "block_count")
	req(&c.FFN, "feed_forward_length")
	req(&c.Heads, "attention.head_count")
	opt(&c.KVHeads, "attention.head_count_kv", c.Heads)
	opt(&c.ContextLen, "context_length", 2048)
	if err == nil && c.Heads > 0 {
		opt(&c.HeadDim, "attention.key_length", c.Dim/c.Heads)
	}
	opt(&c.RopeDims, "rope.dimension_count", c.HeadDim)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrModel, err)
	}

	c.RMSEps = 1e-5
	if k := arch + ".attention.layer_norm_rms_epsilon"; md.Has(k) {
		eps, err := md.Float(k)
		if err != nil || !(eps > 0 && eps < 1) {
			return c, fmt.Errorf("%w: %s = %v", ErrModel, k, eps)
		}
		c.RMSEps = float32(eps)
	}
	c.RopeBase = 10000
	if k := arch + ".rope.freq_base"; md.Has(k) {
		b, err := md.Float(k)
		if err != nil || !(b > 1 && b < 1e12) {
			return c, fmt.Errorf("%w: %s = %v", ErrModel, k, b)
		}
		c.RopeBase = b
	}
	c.RopeScale = 1
	scalingType, _ := md.String(arch + ".rope.scaling.type")
	switch scalingType {
	case "", "none":
	case "linear":
		f, err := md.Float(arch + ".rope.scaling.factor")
		if err != nil || !(f >= 1 && f <= 1024) {
			return c, fmt.Errorf("%w: linear rope scaling factor %v", ErrModel, f)
		}
		c.RopeScale = f
	default:
		return c, fmt.Errorf("%w: rope scaling type %q (supported: none, linear)", ErrModel, scalingType)
	}
	if k := arch + ".rope.scale_linear"; md.Has(k) && scalingType == "" {
		f, err := md.Float(k)
		if err != nil || !(f >= 1 && f <= 1024) {
			return c, fmt.Errorf("%w: %s = %v", ErrModel, k, f)
		}
		c.RopeScale = f
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("%w: %d heads is not a multiple of %d KV heads", ErrModel, c.Heads, c.KVHeads)
	case c.HeadDim > 1024:
		return fmt.Errorf("%w: head dimension %d", ErrModel, c.HeadDim)
	case c.RopeDims > c.HeadDim || c.RopeDims%2 != 0:
		return fmt.Errorf("%w: rope dimension count %d with head dimension %d", ErrModel, c.RopeDims, c.HeadDim)
	case math.IsNaN(c.RopeBase):
		return fmt.Errorf("%w: rope base", ErrModel)
	}
	return nil
}

// KVDim is the width of one token's keys (or values) in one layer.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim }

// QDim is the width of one token's queries.
func (c Config) QDim() int { return c.Heads * c.HeadDim }
