// Package synth writes synthetic Llama models: real GGUF files with given
// shapes and deterministic pseudo-random weights, carrying the tokenizer of
// a real model, so benchmarks run at realistic sizes with nothing
// downloaded.
//
// The weights are uniform in ±sqrt(3/fan_in) (unit variance after each
// projection) from a PCG stream seeded by the spec's seed and the tensor's
// name, so the same spec always gives the same bytes.
package synth

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/internal/kernel"
)

// Spec is the shape of a synthetic model.
type Spec struct {
	Name       string
	Layers     int
	Dim        int
	Heads      int
	KVHeads    int
	FFN        int
	Vocab      int // 0: the tokenizer's vocabulary size
	ContextLen int
	Type       gguf.Type // weight type of the matrices: F32, F16, BF16 or Q8_0
	Seed       uint64
}

// Presets are the shapes of well-known Llama models.
var Presets = map[string]Spec{
	// llama2.c's stories110M: the ~110M-parameter Llama-2 shape.
	"110m": {Name: "synthetic-110m", Layers: 12, Dim: 768, Heads: 12, KVHeads: 12, FFN: 2048, ContextLen: 4096},
	// TinyLlama 1.1B: grouped-query attention with 4 KV heads.
	"1.1b": {Name: "synthetic-1.1b", Layers: 22, Dim: 2048, Heads: 32, KVHeads: 4, FFN: 5632, ContextLen: 4096},
	// A small shape for tests.
	"tiny": {Name: "synthetic-tiny", Layers: 2, Dim: 64, Heads: 4, KVHeads: 2, FFN: 160, ContextLen: 1024},
}

// ParseType parses a weight type name.
func ParseType(s string) (gguf.Type, error) {
	switch strings.ToLower(s) {
	case "f32":
		return gguf.TypeF32, nil
	case "f16":
		return gguf.TypeF16, nil
	case "bf16":
		return gguf.TypeBF16, nil
	case "q8_0", "q8":
		return gguf.TypeQ8_0, nil
	}
	return 0, fmt.Errorf("synth: weight type %q (want f32, f16, bf16 or q8_0)", s)
}

func (s Spec) validate() error {
	switch {
	case s.Layers <= 0 || s.Dim <= 0 || s.Heads <= 0 || s.KVHeads <= 0 || s.FFN <= 0 || s.ContextLen <= 0:
		return errors.New("synth: every dimension must be positive")
	case s.Dim%s.Heads != 0:
		return fmt.Errorf("synth: dim %d is not a multiple of %d heads", s.Dim, s.Heads)
	case s.Heads%s.KVHeads != 0:
		return fmt.Errorf("synth: %d heads is not a multiple of %d KV heads", s.Heads, s.KVHeads)
	case (s.Dim/s.Heads)%2 != 0:
		return fmt.Errorf("synth: head dimension %d is odd", s.Dim/s.Heads)
	}
	switch s.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
	case gguf.TypeQ8_0:
		if s.Dim%32 != 0 || s.FFN%32 != 0 {
			return fmt.Errorf("synth: Q8_0 needs dim and ffn multiples of 32")
		}
	default:
		return fmt.Errorf("synth: weight type %s not supported", s.Type)
	}
	return nil
}

// tokenizerKeys are copied from the tokenizer source model.
func isTokenizerKey(k string) bool { return strings.HasPrefix(k, "tokenizer.") }

// Write writes the model to w, with the tokenizer metadata of tok.
func Write(w io.Writer, s Spec, tok *gguf.Metadata) error {
	toks, err := tok.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return fmt.Errorf("synth: tokenizer source: %w", err)
	}
	if s.Vocab == 0 {
		s.Vocab = len(toks)
	}
	if s.Vocab != len(toks) {
		return fmt.Errorf("synth: vocab %d differs from the tokenizer's %d tokens", s.Vocab, len(toks))
	}
	if err := s.validate(); err != nil {
		return err
	}
	var gw gguf.Writer
	md := &gw.Metadata
	set := func(k string, v any) {
		if err == nil {
			err = md.Set(k, v)
		}
	}
	set("general.architecture", "llama")
	set("general.name", s.Name)
	set("general.file_type", uint32(fileType(s.Type)))
	set("llama.context_length", uint32(s.ContextLen))
	set("llama.embedding_length", uint32(s.Dim))
	set("llama.block_count", uint32(s.Layers))
	set("llama.feed_forward_length", uint32(s.FFN))
	set("llama.attention.head_count", uint32(s.Heads))
	set("llama.attention.head_count_kv", uint32(s.KVHeads))
	set("llama.rope.dimension_count", uint32(s.Dim/s.Heads))
	set("llama.attention.layer_norm_rms_epsilon", float32(1e-5))
	set("llama.rope.freq_base", float32(10000))
	for _, k := range tok.Keys() {
		if isTokenizerKey(k) {
			v, _ := tok.Lookup(k)
			set(k, v)
		}
	}
	if err != nil {
		return err
	}
	hd := s.Dim / s.Heads
	add := func(name string, typ gguf.Type, cols, rows int, scale float32) {
		if err != nil {
			return
		}
		dims := []uint64{uint64(cols)}
		if rows > 0 {
			dims = append(dims, uint64(rows))
		}
		seed := s.Seed ^ nameHash(name)
		err = gw.AddTensor(name, typ, dims, func(out io.Writer) error {
			return fill(out, typ, cols, max(rows, 1), seed, scale)
		})
	}
	one := float32(-1) // marks norm weights: all ones
	add("token_embd.weight", s.Type, s.Dim, s.Vocab, 1)
	for i := 0; i < s.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		add(p+"attn_norm.weight", gguf.TypeF32, s.Dim, 0, one)
		add(p+"attn_q.weight", s.Type, s.Dim, s.Dim, fan(s.Dim))
		add(p+"attn_k.weight", s.Type, s.Dim, s.KVHeads*hd, fan(s.Dim))
		add(p+"attn_v.weight", s.Type, s.Dim, s.KVHeads*hd, fan(s.Dim))
		add(p+"attn_output.weight", s.Type, s.Dim, s.Dim, fan(s.Dim))
		add(p+"ffn_norm.weight", gguf.TypeF32, s.Dim, 0, one)
		add(p+"ffn_gate.weight", s.Type, s.Dim, s.FFN, fan(s.Dim))
		add(p+"ffn_up.weight", s.Type, s.Dim, s.FFN, fan(s.Dim))
		add(p+"ffn_down.weight", s.Type, s.FFN, s.Dim, fan(s.FFN))
	}
	add("output_norm.weight", gguf.TypeF32, s.Dim, 0, one)
	add("output.weight", s.Type, s.Dim, s.Vocab, fan(s.Dim))
	if err != nil {
		return err
	}
	_, err = gw.WriteTo(w)
	return err
}

// WriteFile writes the model to path atomically (a temporary file renamed
// into place), so an interrupted run never leaves a half-written model.
func WriteFile(path string, s Spec, tok *gguf.Metadata) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".synth-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := Write(tmp, s, tok); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func fan(n int) float32 { return float32(math.Sqrt(3 / float64(n))) }

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func fileType(t gguf.Type) int {
	switch t {
	case gguf.TypeF16:
		return 1
	case gguf.TypeQ8_0:
		return 7
	case gguf.TypeBF16:
		return 32
	}
	return 0
}

// fill streams rows×cols values of type typ: uniform in ±scale, or ones
// when scale is negative.
func fill(out io.Writer, typ gguf.Type, cols, rows int, seed uint64, scale float32) error {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	bw := bufio.NewWriterSize(out, 1<<20)
	row := make([]float32, cols)
	buf := make([]byte, 0, 4*cols)
	for range rows {
		for i := range row {
			if scale < 0 {
				row[i] = 1
			} else {
				row[i] = (2*r.Float32() - 1) * scale
			}
		}
		buf = encodeRow(buf[:0], typ, row)
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func encodeRow(b []byte, typ gguf.Type, row []float32) []byte {
	switch typ {
	case gguf.TypeF32:
		for _, v := range row {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case gguf.TypeF16:
		n := len(b)
		b = append(b, make([]byte, 2*len(row))...)
		kernel.F32ToF16(b[n:], row)
	case gguf.TypeBF16:
		for _, v := range row {
			u := math.Float32bits(v)
			u += 0x7fff + (u>>16)&1 // round to nearest even
			b = binary.LittleEndian.AppendUint16(b, uint16(u>>16))
		}
	case gguf.TypeQ8_0:
		for k := 0; k < len(row); k += 32 {
			blk := row[k : k+32]
			var amax float32
			for _, v := range blk {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			d := amax / 127
			var h [2]byte
			kernel.F32ToF16(h[:], []float32{d})
			var dd [1]float32
			kernel.ToF32(kernel.F16, dd[:], h[:])
			d = dd[0] // quantize against the scale as stored
			b = append(b, h[:]...)
			for _, v := range blk {
				q := float32(0)
				if d != 0 {
					q = float32(math.RoundToEven(float64(v / d)))
				}
				b = append(b, byte(int8(q)))
			}
		}
	}
	return b
}
