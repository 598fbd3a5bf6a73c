package tokenizer

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func texts(tk *Tokenizer, ids []int32) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tk.TokenText(id))
	}
	return out
}

func TestBPEMerges(t *testing.T) {
	cases := []struct {
		name   string
		pre    string
		merges []string
		extra  []string // normal tokens no merge builds
		in     string
		want   []string
	}{
		{"words", "gpt2", []string{"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"}, nil,
			"hello world", []string{"hello", "Ġworld"}},
		{"lower rank first", "gpt2", []string{"b c", "a b"}, nil, "abc", []string{"a", "bc"}},
		{"rank order reversed", "gpt2", []string{"a b", "b c"}, nil, "abc", []string{"ab", "c"}},
		{"ties go left", "gpt2", []string{"a a"}, nil, "aaa", []string{"aa", "a"}},
		{"ties go left, even", "gpt2", []string{"a a"}, nil, "aaaa", []string{"aa", "aa"}},
		{"no merge across pre-tokens", "gpt2", []string{"o Ġ"}, nil, "o w", []string{"o", "Ġ", "w"}},
		{"bytes of a character", "gpt2", nil, nil, "é", []string{"Ã", "©"}},
		{"newline and space", "llama-bpe", []string{"Ċ Ċ"}, nil, "a\n\n b", []string{"a", "ĊĊ", "Ġ", "b"}},
		{"ignore merges: whole word", "llama-bpe", []string{"a b"}, []string{"abc"}, "abc", []string{"abc"}},
		{"merges without ignore_merges", "gpt2", []string{"a b"}, []string{"abc"}, "abc", []string{"ab", "c"}},
		{"qwen2 digits one by one", "qwen2", []string{"1 2"}, nil, "123", []string{"1", "2", "3"}},
		{"llama3 digits by three", "llama-bpe", []string{"1 2", "12 3"}, nil, "1234", []string{"123", "4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newBPEVocab(c.pre, c.merges)
			for _, e := range c.extra {
				v.withSpecial(e, TypeNormal)
			}
			tk := v.build(t)
			ids := tk.Encode(c.in, false)
			if got := texts(tk, ids); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Encode(%q) = %q, want %q", c.in, got, c.want)
			}
			if got := tk.Decode(ids); got != c.in {
				t.Errorf("Decode = %q", got)
			}
		})
	}
}

func TestBPESpecialTokens(t *testing.T) {
	v := trainedVocab("llama-bpe")
	tk := v.build(t)
	id := func(s string) int32 {
		i, ok := tk.TokenID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return i
	}
	bos, eot, imEnd, tool := id("<|begin_of_text|>"), id("<|eot_id|>"), id("<|im_end|>"), id("<tool>")
	const chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi <tool> there<|eot_id|><|im_end|><|reserved|>"

	special := tk.EncodeSpecial(chat, false)
	want := []int32{bos, id("<|start_header_id|>")}
	if !slices.Equal(special[:2], want) || !slices.Contains(special, eot) || !slices.Contains(special, imEnd) || !slices.Contains(special, tool) {
		t.Errorf("EncodeSpecial: %q", texts(tk, special))
	}
	if slices.Contains(special, id("<|reserved|>")) {
		t.Errorf("an unused token was matched: %q", texts(tk, special))
	}
	if got := tk.Decode(special); got != "user\n\nHi <tool> there<|reserved|>" {
		t.Errorf("Decode(EncodeSpecial) = %q", got)
	}

	// Plain text: only the user-defined <tool> is matched; control texts
	// (including <|im_end|>, user-defined in the file but turn-ending)
	// stay text and round-trip.
	plain := tk.Encode(chat, false)
	for _, x := range plain {
		if ty := tk.TokenType(x); ty == TypeControl || ty == TypeUnknown {
			t.Fatalf("plain Encode produced %s token %q", ty, tk.TokenText(x))
		}
	}
	if !slices.Contains(plain, tool) {
		t.Errorf("user-defined token not matched: %q", texts(tk, plain))
	}
	if got := tk.Decode(plain); got != chat {
		t.Errorf("Decode(Encode) = %q", got)
	}

	if got := tk.Encode("x", true); got[0] != bos || len(got) != 2 {
		t.Errorf("Encode with BOS = %v", got)
	}
	if tk.TokenType(imEnd) != TypeControl {
		t.Errorf("<|im_end|> is %s", tk.TokenType(imEnd))
	}
	for s, want := range map[string]bool{"<|end_of_text|>": true, "<|eot_id|>": true, "<|im_end|>": true, "<|start_header_id|>": false, "<tool>": false, "a": false} {
		if got := tk.IsEndOfGeneration(id(s)); got != want {
			t.Errorf("IsEndOfGeneration(%s) = %v", s, got)
		}
	}
	if eog := tk.EndOfGeneration(); len(eog) != 3 {
		t.Errorf("EndOfGeneration = %v", eog)
	}
}

// A merge whose result is a control token never applies: plain text
// cannot build a control token through merges.
func TestBPEMergeIntoControlIgnored(t *testing.T) {
	v := newBPEVocab("gpt2", nil)
	v.withSpecial("ab", TypeControl)
	v.merges = []string{"a b"}
	tk := v.build(t)
	if got := texts(tk, tk.Encode("ab", false)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Encode = %q", got)
	}
	if got := texts(tk, tk.EncodeSpecial("ab", false)); !reflect.DeepEqual(got, []string{"ab"}) {
		t.Errorf("EncodeSpecial = %q", got)
	}
}

func TestBPEDefaults(t *testing.T) {
	cases := []struct {
		pre     string
		extra   map[string]any
		addBOS  bool
		name    string
		known   bool
		ignoreM bool
	}{
		{"llama-bpe", nil, true, "llama3", true, true},
		{"llama-bpe", map[string]any{"tokenizer.ggml.add_bos_token": false}, false, "llama3", true, true},
		{"qwen2", nil, false, "qwen2", true, false},
		{"qwen2", map[string]any{"tokenizer.ggml.add_bos_token": true}, true, "qwen2", true, false},
		{"smollm", nil, false, "smollm", true, false},
		{"tekken", nil, true, "tekken", true, true},
		{"gpt-2", nil, false, "gpt2", true, false},
		{"default", nil, false, "gpt2", false, false},
		{"", nil, false, "gpt2", false, false},
		{"no-such-pre", nil, false, "gpt2", false, false},
	}
	for _, c := range cases {
		t.Run(c.pre, func(t *testing.T) {
			v := newBPEVocab(c.pre, nil)
			v.bos = v.withSpecial("<bos>", TypeControl)
			v.extra = c.extra
			tk := v.build(t)
			name, known := tk.PreTokenizer()
			if tk.AddBOS() != c.addBOS || name != c.name || known != c.known || tk.ignoreMerges != c.ignoreM {
				t.Errorf("addBOS %v pre %q known %v ignoreMerges %v", tk.AddBOS(), name, known, tk.ignoreMerges)
			}
			if tk.Kind() != KindBPE || tk.AddSpacePrefix() || tk.AddEOS() {
				t.Errorf("kind %s prefix %v eos %v", tk.Kind(), tk.AddSpacePrefix(), tk.AddEOS())
			}
		})
	}
}

// The trained vocabulary compresses English (the merges work) and round
// trips it.
func TestBPETrainedVocab(t *testing.T) {
	for _, pre := range []string{"llama-bpe", "qwen2", "gpt2", "smollm", "tekken"} {
		tk := trainedVocab(pre).build(t)
		ids := tk.Encode(englishText, false)
		if got := tk.Decode(ids); got != englishText {
			t.Fatalf("%s: round trip failed", pre)
		}
		if r := float64(len(englishText)) / float64(len(ids)); r < 2.5 {
			t.Errorf("%s: %.2f bytes per token", pre, r)
		}
	}
	tk := trainedVocab("llama-bpe").build(t)
	long := strings.Repeat(englishText, 8)
	if tk.Decode(tk.Encode(long, false)) != long {
		t.Error("long round trip failed")
	}
}

// The word cache returns what merging returns, and stays bounded.
func TestBPEWordCache(t *testing.T) {
	tk := trainedVocab("qwen2").build(t)
	ref := trainedVocab("qwen2").build(t)
	ref.cache = nil
	cold := tk.Encode(englishText, false)
	hot := tk.Encode(englishText, false)
	if want := ref.Encode(englishText, false); !slices.Equal(cold, want) || !slices.Equal(hot, want) {
		t.Fatal("cached encoding differs")
	}
	hits := 0
	for _, w := range strings.Fields(englishText) {
		if _, ok := tk.cache.appendTo(" "+w, nil); ok {
			hits++
		}
	}
	if hits == 0 {
		t.Error("nothing was cached")
	}
	for i := 0; i < 3*cacheShards*cacheShardWords; i++ {
		tk.cache.put(fmt.Sprintf("word%d", i), []int32{1})
	}
	for i := range tk.cache.shards {
		if n := len(tk.cache.shards[i].m); n > cacheShardWords {
			t.Errorf("shard %d holds %d words", i, n)
		}
	}
}
