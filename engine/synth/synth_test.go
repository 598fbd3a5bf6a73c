package synth

import (
	"bytes"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/llama"
)

func TestWriteLoads(t *testing.T) {
	src, err := gguf.Open(enginetest.ModelPath(t, enginetest.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			s := Presets["tiny"]
			s.Type, s.Seed = typ, 42
			var a, b bytes.Buffer
			if err := Write(&a, s, &src.Metadata); err != nil {
				t.Fatal(err)
			}
			if err := Write(&b, s, &src.Metadata); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("same spec gave different bytes")
			}
			f, err := gguf.Parse(a.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			m, err := llama.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if m.Dim != 64 || m.Layers != 2 || m.KVHeads != 2 || m.Vocab != 512 || m.FFN != 160 {
				t.Fatalf("config %+v", m.Config)
			}
			if toks, _ := f.Metadata.Strings("tokenizer.ggml.tokens"); len(toks) != 512 {
				t.Fatal("tokenizer not copied")
			}
			s.Seed = 43
			var c bytes.Buffer
			Write(&c, s, &src.Metadata)
			if bytes.Equal(a.Bytes(), c.Bytes()) {
				t.Fatal("different seeds gave the same bytes")
			}
		})
	}
}

func TestWriteRefusesBadSpecs(t *testing.T) {
	src, err := gguf.Open(enginetest.ModelPath(t, enginetest.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	base := Presets["tiny"]
	for name, mut := range map[string]func(*Spec){
		"heads":     func(s *Spec) { s.Heads = 3 },
		"kv heads":  func(s *Spec) { s.KVHeads = 3 },
		"vocab":     func(s *Spec) { s.Vocab = 100 },
		"zero":      func(s *Spec) { s.Layers = 0 },
		"q8 shape":  func(s *Spec) { s.Type, s.FFN = gguf.TypeQ8_0, 100 },
		"bad dtype": func(s *Spec) { s.Type = gguf.TypeQ4_K },
	} {
		s := base
		mut(&s)
		if err := Write(&bytes.Buffer{}, s, &src.Metadata); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
