package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/duet-llm/duet/engine/gguf"
)

// baseSPM is a small valid SPM vocabulary as key/value pairs.
func baseSPM() map[string]any {
	return map[string]any{
		"tokenizer.ggml.model":      "llama",
		"tokenizer.ggml.tokens":     []string{"<unk>", "<s>", "</s>", "<0x41>", "▁", "a"},
		"tokenizer.ggml.token_type": []int32{2, 3, 3, 6, 1, 1},
		"tokenizer.ggml.scores":     []float32{0, 0, 0, 0, -1, -2},
	}
}

func baseBPE() map[string]any {
	v := newBPEVocab("gpt2", []string{"a b"})
	return map[string]any{
		"tokenizer.ggml.model":      "gpt2",
		"tokenizer.ggml.tokens":     v.tokens,
		"tokenizer.ggml.token_type": v.types,
		"tokenizer.ggml.merges":     v.merges,
	}
}

func metadataOf(tb testing.TB, kv map[string]any) *gguf.Metadata {
	tb.Helper()
	var md gguf.Metadata
	for k, v := range kv {
		if v == nil {
			continue
		}
		if err := md.Set(k, v); err != nil {
			tb.Fatal(err)
		}
	}
	return &md
}

func TestFromGGUFErrors(t *testing.T) {
	bpeMerges := func(m ...string) map[string]any {
		kv := baseBPE()
		kv["tokenizer.ggml.merges"] = m
		return kv
	}
	with := func(base map[string]any, k string, v any) map[string]any {
		base[k] = v
		return base
	}
	cases := []struct {
		name string
		kv   map[string]any
		want error
	}{
		{"no model key", with(baseSPM(), "tokenizer.ggml.model", nil), ErrMissing},
		{"unknown model", with(baseSPM(), "tokenizer.ggml.model", "bert"), ErrUnsupported},
		{"model not a string", with(baseSPM(), "tokenizer.ggml.model", uint32(1)), ErrBadVocab},
		{"no tokens", with(baseSPM(), "tokenizer.ggml.tokens", nil), ErrMissing},
		{"empty tokens", with(with(with(baseSPM(), "tokenizer.ggml.tokens", []string{}), "tokenizer.ggml.token_type", nil), "tokenizer.ggml.scores", nil), ErrBadVocab},
		{"tokens not strings", with(baseSPM(), "tokenizer.ggml.tokens", []int32{1, 2, 3, 4, 5, 6}), ErrBadVocab},
		{"short scores", with(baseSPM(), "tokenizer.ggml.scores", []float32{0, 0, 0, 0, 0}), ErrBadVocab},
		{"scores not floats", with(baseSPM(), "tokenizer.ggml.scores", []int32{0, 0, 0, 0, 0, 0}), ErrBadVocab},
		{"NaN score", with(baseSPM(), "tokenizer.ggml.scores", []float32{0, 0, 0, 0, float32(math.NaN()), 0}), ErrBadVocab},
		{"long token types", with(baseSPM(), "tokenizer.ggml.token_type", []int32{2, 3, 3, 6, 1, 1, 1}), ErrBadVocab},
		{"token types not integers", with(baseSPM(), "tokenizer.ggml.token_type", []string{"a", "b", "c", "d", "e", "f"}), ErrBadVocab},
		{"bos past the end", with(baseSPM(), "tokenizer.ggml.bos_token_id", uint32(6)), ErrSpecialID},
		{"eos far past the end", with(baseSPM(), "tokenizer.ggml.eos_token_id", uint64(1)<<40), ErrSpecialID},
		{"negative unk", with(baseSPM(), "tokenizer.ggml.unknown_token_id", int32(-2)), ErrSpecialID},
		{"bos not an integer", with(baseSPM(), "tokenizer.ggml.bos_token_id", "1"), ErrBadVocab},
		{"eot past the end", with(baseSPM(), "tokenizer.ggml.eot_token_id", uint32(100)), ErrSpecialID},
		{"duplicate tokens", with(baseSPM(), "tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>", "<0x41>", "a", "a"}), ErrBadVocab},
		{"malformed byte token", with(baseSPM(), "tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>", "<0xZZ>", "▁", "a"}), ErrBadVocab},
		{"two tokens for one byte", with(with(baseSPM(), "tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>", "<0x0a>", "<0x0A>", "a"}), "tokenizer.ggml.token_type", []int32{2, 3, 3, 6, 6, 1}), ErrBadVocab},
		{"add_bos_token not a bool", with(baseSPM(), "tokenizer.ggml.add_bos_token", "yes"), ErrBadVocab},
		{"add_space_prefix not a bool", with(baseSPM(), "tokenizer.ggml.add_space_prefix", uint8(1)), ErrBadVocab},
		{"chat template not a string", with(baseSPM(), "tokenizer.chat_template", uint32(7)), ErrBadVocab},
		{"gpt2 without merges", with(baseBPE(), "tokenizer.ggml.merges", nil), ErrMissing},
		{"merges not strings", with(baseBPE(), "tokenizer.ggml.merges", []uint32{1}), ErrBadMerges},
		{"pre not a string", with(baseBPE(), "tokenizer.ggml.pre", uint32(1)), ErrBadVocab},
		{"merge without a space", bpeMerges("ab"), ErrBadMerges},
		{"merge with empty right", bpeMerges("a "), ErrBadMerges},
		{"empty merge", bpeMerges(""), ErrBadMerges},
		{"merge of one space", bpeMerges(" "), ErrBadMerges},
		{"merge part not a token", bpeMerges("a zz"), ErrBadMerges},
		{"merge result not a token", bpeMerges("a c"), ErrBadMerges},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk, err := FromGGUF(metadataOf(t, c.kv))
			if !errors.Is(err, c.want) {
				t.Fatalf("FromGGUF: %v (tokenizer %v), want %v", err, tk != nil, c.want)
			}
			if tk != nil {
				t.Error("a tokenizer came back with the error")
			}
		})
	}
	if _, err := FromGGUF(nil); !errors.Is(err, ErrMissing) {
		t.Errorf("nil metadata: %v", err)
	}
}

func TestFromGGUFAccepts(t *testing.T) {
	cases := []struct {
		name  string
		kv    map[string]any
		check func(*testing.T, *Tokenizer)
	}{
		{"no special ids", baseSPM(), func(t *testing.T, tk *Tokenizer) {
			if _, ok := tk.BOS(); ok {
				t.Error("BOS without a key")
			}
			if got := tk.Encode("a", true); len(got) != 2 || got[0] != 4 { // "▁", "a"
				t.Errorf("addBOS without a BOS token: %v", got)
			}
		}},
		{"0xFFFFFFFF is none", func() map[string]any {
			kv := baseSPM()
			kv["tokenizer.ggml.padding_token_id"] = uint32(0xFFFFFFFF)
			kv["tokenizer.ggml.bos_token_id"] = int32(-1)
			return kv
		}(), func(t *testing.T, tk *Tokenizer) {
			if _, ok := tk.Padding(); ok {
				t.Error("padding")
			}
			if _, ok := tk.BOS(); ok {
				t.Error("bos")
			}
		}},
		{"duplicate of an unused token", func() map[string]any {
			kv := baseSPM()
			kv["tokenizer.ggml.tokens"] = []string{"<unk>", "<s>", "</s>", "<0x41>", "a", "a"}
			kv["tokenizer.ggml.token_type"] = []int32{2, 3, 3, 6, 5, 1}
			return kv
		}(), func(t *testing.T, tk *Tokenizer) {
			if id, _ := tk.TokenID("a"); id != 5 {
				t.Errorf("TokenID(a) = %d", id)
			}
		}},
		{"unknown token types are undefined", func() map[string]any {
			kv := baseSPM()
			kv["tokenizer.ggml.token_type"] = []int32{2, 3, 3, 6, 1, 42}
			return kv
		}(), func(t *testing.T, tk *Tokenizer) {
			if tk.TokenType(5) != TypeUndefined || tk.Decode([]int32{5}) != "" {
				t.Errorf("type %s", tk.TokenType(5))
			}
		}},
		{"no types or scores", func() map[string]any {
			kv := baseSPM()
			kv["tokenizer.ggml.token_type"] = nil
			kv["tokenizer.ggml.scores"] = nil
			return kv
		}(), func(t *testing.T, tk *Tokenizer) {
			if tk.TokenType(1) != TypeNormal {
				t.Errorf("type %s", tk.TokenType(1))
			}
		}},
		{"flags and template", func() map[string]any {
			kv := baseSPM()
			kv["tokenizer.ggml.add_bos_token"] = false
			kv["tokenizer.ggml.add_eos_token"] = true
			kv["tokenizer.ggml.add_space_prefix"] = false
			kv["tokenizer.chat_template"] = "{{ messages }}"
			kv["tokenizer.ggml.eos_token_id"] = uint32(2)
			return kv
		}(), func(t *testing.T, tk *Tokenizer) {
			if tk.AddBOS() || !tk.AddEOS() || tk.AddSpacePrefix() || tk.ChatTemplate() != "{{ messages }}" {
				t.Errorf("bos %v eos %v prefix %v template %q", tk.AddBOS(), tk.AddEOS(), tk.AddSpacePrefix(), tk.ChatTemplate())
			}
			if got := tk.Encode("a", false); len(got) != 1 || got[0] != 5 {
				t.Errorf("no dummy prefix: %v", got)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk, err := FromGGUF(metadataOf(t, c.kv))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, tk)
		})
	}
}

func TestAccessorsOutOfRange(t *testing.T) {
	tk, err := FromGGUF(metadataOf(t, baseSPM()))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int32{-1, 6, math.MaxInt32, math.MinInt32} {
		if tk.TokenText(id) != "" || tk.TokenType(id) != TypeUndefined || tk.IsEndOfGeneration(id) {
			t.Errorf("id %d", id)
		}
	}
	if tk.Decode([]int32{-1, 6, 5}) != "a" {
		t.Errorf("Decode = %q", tk.Decode([]int32{-1, 6, 5}))
	}
}

// FromGGUF reads metadata parsed from outside files: whatever the bytes,
// it returns a tokenizer or an error, and a tokenizer it returns works.
func FuzzFromGGUF(f *testing.F) {
	for _, kv := range []map[string]any{baseSPM(), baseBPE(), trainedVocabKV()} {
		var w gguf.Writer
		for k, v := range kv {
			if err := w.Metadata.Set(k, v); err != nil {
				f.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := gguf.Parse(b)
		if err != nil {
			return
		}
		tk, err := FromGGUF(&file.Metadata)
		if err != nil {
			return
		}
		for _, s := range []string{"", "Hello world", "<s>a</s> <|eot_id|>", "\xff日本🦙  \n"} {
			ids := tk.EncodeSpecial(s, true)
			for _, id := range ids {
				if id < 0 || int(id) >= tk.VocabSize() {
					t.Fatalf("id %d out of range", id)
				}
			}
			_ = tk.Decode(ids)
			_ = tk.Encode(s, false)
		}
	})
}

func trainedVocabKV() map[string]any {
	v := newBPEVocab("llama-bpe", []string{"Ġ t", "h e", "Ġt he"})
	v.bos = v.withSpecial("<|begin_of_text|>", TypeControl)
	v.withSpecial("<|eot_id|>", TypeControl)
	return map[string]any{
		"tokenizer.ggml.model":        "gpt2",
		"tokenizer.ggml.pre":          "llama-bpe",
		"tokenizer.ggml.tokens":       v.tokens,
		"tokenizer.ggml.token_type":   v.types,
		"tokenizer.ggml.merges":       v.merges,
		"tokenizer.ggml.bos_token_id": uint32(v.bos),
	}
}

// A Tokenizer is shared by every request of the router: concurrent
// encodes (which share pooled scratch) must not disturb each other.
func TestConcurrentEncode(t *testing.T) {
	tks := append(availableModels(t), trainedVocab("llama-bpe").build(t))
	inputs := []string{englishText, "日本語のテキスト 🦙", strings.Repeat("ab ", 300), "<|eot_id|>x<s>y"}
	for _, tk := range tks {
		want := make([][]int32, len(inputs))
		for i, s := range inputs {
			want[i] = tk.EncodeSpecial(s, true)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for n := 0; n < 50; n++ {
					i := (g + n) % len(inputs)
					if got := tk.EncodeSpecial(inputs[i], true); !slices.Equal(got, want[i]) {
						errs <- fmt.Sprintf("goroutine %d: input %d differs", g, i)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}
