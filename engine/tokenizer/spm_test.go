package tokenizer

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
)

func TestStories260KGolden(t *testing.T) {
	tk := loadModel(t, enginetest.Stories260K)
	if tk.Kind() != KindSPM || tk.VocabSize() != 512 {
		t.Fatalf("kind %s, %d tokens", tk.Kind(), tk.VocabSize())
	}
	if got, want := tk.Encode("Once upon a time", true), []int32{1, 403, 407, 261, 378}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	// llama2.c's greedy continuation (shared/models/README.md) decodes to
	// its published text.
	golden := []int32{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310}
	const text = " Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily"
	if got := tk.DecodeContinuation(golden); got != text {
		t.Errorf("DecodeContinuation = %q", got)
	}
	if got := tk.Decode(golden); got != text[1:] {
		t.Errorf("Decode = %q", got)
	}
	if got := tk.Decode(append([]int32{1}, golden...)); got != text {
		t.Errorf("Decode with BOS = %q", got)
	}
	bos, ok := tk.BOS()
	eos, ok2 := tk.EOS()
	unk, ok3 := tk.Unknown()
	_, ok4 := tk.Padding()
	if bos != 1 || eos != 2 || unk != 0 || !ok || !ok2 || !ok3 || ok4 {
		t.Errorf("bos %d %v eos %d %v unk %d %v pad %v", bos, ok, eos, ok2, unk, ok3, ok4)
	}
	if !tk.AddBOS() || tk.AddEOS() || !tk.AddSpacePrefix() {
		t.Errorf("flags: bos %v eos %v prefix %v", tk.AddBOS(), tk.AddEOS(), tk.AddSpacePrefix())
	}
	if !tk.IsEndOfGeneration(2) || tk.IsEndOfGeneration(1) || tk.IsEndOfGeneration(403) {
		t.Errorf("end of generation: %v", tk.EndOfGeneration())
	}
}

// Llama-2's tokenizer on llama-2-tiny-random.gguf. Each id's vocabulary
// text is checked first (facts read from the file, not from memory), then
// the tokenization, which matches llama.cpp's test-tokenizer-0 vectors for
// the Llama SPM vocabulary.
func TestLlama2Vocab(t *testing.T) {
	tk := loadModel(t, enginetest.TinyRandomF16)
	if tk.VocabSize() != 32000 {
		t.Fatalf("%d tokens", tk.VocabSize())
	}
	facts := map[int32]string{
		1: "<s>", 2: "</s>", 12: "<0x09>", 13: "<0x0A>", 243: "<0xF0>", 259: "▁▁", 268: "▁▁▁▁",
		281: "▁w", 338: "▁is", 445: "▁this", 1678: "▁▁▁", 2787: "▁World", 3186: "▁world",
		8223: "cpp", 15043: "▁Hello", 29871: "▁", 29889: ".", 29892: ",", 29991: "!",
	}
	for id, want := range facts {
		if got := tk.TokenText(id); got != want {
			t.Fatalf("token %d is %q, want %q", id, got, want)
		}
	}
	cases := []struct {
		in   string
		want []int32
	}{
		{"", nil},
		{" ", []int32{259}},
		{"  ", []int32{1678}},
		{"   ", []int32{268}},
		{"\t", []int32{29871, 12}},
		{"\n", []int32{29871, 13}},
		{"\t\n", []int32{29871, 12, 13}},
		{"Hello world", []int32{15043, 3186}},
		{" Hello world", []int32{29871, 15043, 3186}},
		{"Hello World", []int32{15043, 2787}},
		{" Hello World!", []int32{29871, 15043, 2787, 29991}},
		{"Hello, world!", []int32{15043, 29892, 3186, 29991}},
		{" this is 🦙.cpp", []int32{29871, 445, 338, 29871, 243, 162, 169, 156, 29889, 8223}},
		{"w048 7tuijk dsdfhu", []int32{281, 29900, 29946, 29947, 29871, 29955, 9161, 13535, 18031, 2176, 6905}},
		{"нещо на Български", []int32{1538, 4851, 665, 1386, 29713, 1305}},
		{"កាន់តែពិសេសអាចខលចេញ", []int32{29871, 31849, 31324, 31934, 228, 162, 142, 228, 161, 146, 228, 162, 133, 228, 161, 153, 228, 161, 186, 31708, 228, 162, 132, 31708, 228, 161, 165, 31324, 228, 161, 136, 228, 161, 132, 228, 161, 158, 228, 161, 136, 228, 162, 132, 228, 161, 140}},
		{"🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)", []int32{29871, 243, 162, 157, 131, 313, 8945, 29897, 29871, 243, 162, 155, 185, 30722, 243, 162, 143, 174, 30598, 313, 20787, 953, 3848, 275, 16125, 630, 29897, 29871, 31681, 313, 6194, 953, 29877, 2397, 393, 756, 967, 1914, 5993, 29897}},
		{"ied 4 ½ months", []int32{474, 287, 29871, 29946, 29871, 30226, 7378}},
		{"Führer", []int32{383, 4000, 261}},
		{"   Hello", []int32{1678, 15043}},
		{"    Hello\n    Hello", []int32{268, 15043, 13, 1678, 15043}},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got := tk.Encode(c.in, false)
			if len(got) == 0 && len(c.want) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Encode(%q) = %v, want %v", c.in, got, c.want)
			}
			if back := tk.Decode(got); back != c.in {
				t.Errorf("Decode = %q", back)
			}
			withBOS := tk.Encode(c.in, true)
			if withBOS[0] != 1 || !reflect.DeepEqual(withBOS[1:], got) && len(got) > 0 {
				t.Errorf("Encode with BOS = %v", withBOS)
			}
		})
	}
	// Every result is a segmentation of the escaped input: the token texts
	// (bytes for byte tokens) concatenate to "▁" + text with spaces as "▁".
	for _, s := range []string{"The quick brown fox jumps over the lazy dog.", "naïve café — 東京 🦙 déjà vu", "a  b   c\t\td"} {
		var b strings.Builder
		for _, id := range tk.Encode(s, false) {
			if tk.TokenType(id) == TypeByte {
				b.WriteString(tk.pieces[id])
			} else {
				b.WriteString(tk.TokenText(id))
			}
		}
		if want := "▁" + strings.ReplaceAll(s, " ", "▁"); b.String() != want {
			t.Errorf("segmentation of %q: %q", s, b.String())
		}
	}
}

func TestSPMSpecialTokens(t *testing.T) {
	tk := loadModel(t, enginetest.TinyRandomF16)
	// Plain Encode keeps "<s>" as text; EncodeSpecial makes it BOS and
	// puts the dummy-prefix space after it, as llama.cpp does.
	plain := tk.Encode("<s>Hello</s>", false)
	for _, id := range plain {
		if ty := tk.TokenType(id); ty == TypeControl || ty == TypeUnknown {
			t.Fatalf("plain Encode produced %s token %d: %v", ty, id, plain)
		}
	}
	if got := tk.Decode(plain); got != "<s>Hello</s>" {
		t.Errorf("Decode(plain) = %q", got)
	}
	if got, want := tk.EncodeSpecial("<s>Hello</s>", false), []int32{1, 15043, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeSpecial = %v, want %v", got, want)
	}
	if got, want := tk.EncodeSpecial("Hello<unk>", true), []int32{1, 15043, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeSpecial with <unk> = %v, want %v", got, want)
	}
	// [INST] chat rendering: specials split the text, each stretch after
	// a special gets the dummy prefix.
	got := tk.EncodeSpecial("<s>[INST] Hi [/INST] Hello</s><s>[INST] Bye [/INST]", false)
	if got[0] != 1 || tk.Decode(got) != " [INST] Hi [/INST] Hello [INST] Bye [/INST]" {
		t.Errorf("chat: %v → %q", got, tk.Decode(got))
	}
	n := 0
	for _, id := range got {
		if id == 1 || id == 2 {
			n++
		}
	}
	if n != 3 {
		t.Errorf("chat: %d specials in %v", n, got)
	}
}

func TestSPMLeadingSpaceRule(t *testing.T) {
	tk := loadModel(t, enginetest.TinyRandomF16)
	cases := []struct {
		ids        []int32
		decode     string
		continuing string
	}{
		{[]int32{15043}, "Hello", " Hello"},
		{[]int32{1, 15043}, " Hello", " Hello"},      // after BOS the space stays (llama.cpp)
		{[]int32{2, 15043}, " Hello", " Hello"},      // the rule is spent on the first token, printed or not
		{[]int32{259, 15043}, "  Hello", "   Hello"}, // only one space goes
		{[]int32{1, 15043, 2}, " Hello", " Hello"},
		{[]int32{-5, 15043, 99999}, " Hello", " Hello"}, // out-of-range ids print nothing
		{nil, "", ""},
	}
	for _, c := range cases {
		if got := tk.Decode(c.ids); got != c.decode {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.decode)
		}
		if got := tk.DecodeContinuation(c.ids); got != c.continuing {
			t.Errorf("DecodeContinuation(%v) = %q, want %q", c.ids, got, c.continuing)
		}
	}
}

func TestSPMByteFallbackAndUnknown(t *testing.T) {
	tk := loadModel(t, enginetest.Stories260K)
	// 'Ω' is not in the 512-token vocabulary: its two UTF-8 bytes come out
	// as byte tokens <0xCE><0xA9> (ids 3+byte).
	got := tk.Encode("Ω", false)
	if want := []int32{410, 3 + 0xCE, 3 + 0xA9}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Encode(Ω) = %v, want %v", got, want)
	}
	if d := tk.Decode(got); d != "Ω" {
		t.Errorf("Decode = %q", d)
	}
	// Half a character decodes to U+FFFD, one per byte that cannot start
	// a character.
	if d := tk.Decode([]int32{3 + 0xCE}); d != "\uFFFD" {
		t.Errorf("half character: %q", d)
	}
	if d := tk.Decode([]int32{3 + 0xF0, 3 + 0x9F, 412}); d != "\uFFFD\uFFFDa" {
		t.Errorf("broken sequence: %q", d)
	}
	// Invalid UTF-8 in the input is encoded byte by byte.
	if got := tk.Encode("a\xffb", false); !reflect.DeepEqual(got, []int32{261, 3 + 0xff, 430}) {
		t.Errorf("Encode(invalid) = %v", got)
	}
}

// A vocabulary without byte tokens falls back to the unknown token.
func TestSPMUnknownWithoutBytes(t *testing.T) {
	md := spmMetadata(t, []string{"<unk>", "<s>", "</s>", "▁", "a", "▁a"}, []int32{2, 3, 3, 1, 1, 1}, []float32{0, 0, 0, -1, -2, -3})
	tk, err := FromGGUF(md)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.Encode("aΩa", false), []int32{5, 0, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	// The unknown token prints nothing (llama.cpp without special
	// rendering).
	if got := tk.Decode([]int32{5, 0, 4}); got != "aa" {
		t.Errorf("Decode = %q", got)
	}
}

// Merges go by score, highest first, leftmost on ties.
func TestSPMMergeOrder(t *testing.T) {
	toks := []string{"<unk>", "▁", "a", "b", "c", "ab", "bc", "▁a", "aa"}
	types := []int32{2, 1, 1, 1, 1, 1, 1, 1, 1}
	for _, c := range []struct {
		name   string
		scores []float32
		in     string
		want   []string
	}{
		{"bc beats ab", []float32{0, -1, -1, -1, -1, -5, -2, -100, -100}, "abc", []string{"▁a", "bc"}},
		{"ab beats bc", []float32{0, -1, -1, -1, -1, -2, -5, -100, -100}, "abc", []string{"▁", "ab", "c"}},
		{"▁a first", []float32{0, -1, -1, -1, -1, -2, -5, -1, -100}, "abc", []string{"▁a", "bc"}},
		{"ties go left", []float32{0, -1, -1, -1, -1, -5, -2, -100, -3}, "aaa", []string{"▁", "aa", "a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tk, err := FromGGUF(spmMetadata(t, toks, types, c.scores))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, id := range tk.Encode(c.in, false) {
				got = append(got, tk.TokenText(id))
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Encode(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// A 16 KiB prompt must not take quadratic time: merges run from a heap.
// (No timing assertion; this checks the result on a long input, and
// BenchmarkEncode measures the speed.)
func TestSPMLongInput(t *testing.T) {
	tk := loadModel(t, enginetest.TinyRandomF16)
	s := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 400)
	ids := tk.Encode(s, false)
	if tk.Decode(ids) != s {
		t.Fatal("long round trip failed")
	}
	if !slices.Equal(tk.Encode(englishText, false), unsplitModel(t, enginetest.TinyRandomF16).Encode(englishText, false)) {
		t.Error("word split changed the result")
	}
	one := tk.Encode("The quick brown fox jumps over the lazy dog.", false)
	if len(ids) < 400*len(one)-400 || len(ids) > 400*len(one)+400 {
		t.Errorf("%d tokens for 400 sentences of %d", len(ids), len(one))
	}
}

// A vocabulary with a token that has "▁" after another character cannot
// be cut into words before merging.
func TestSPMInnerSpaceToken(t *testing.T) {
	toks := []string{"<unk>", "▁", "a", "b", "▁a", "▁b", "a▁", "a▁b"}
	types := []int32{2, 1, 1, 1, 1, 1, 1, 1}
	scores := []float32{0, -10, -10, -10, -1, -5, -0.5, -3}
	tk, err := FromGGUF(spmMetadata(t, toks, types, scores))
	if err != nil {
		t.Fatal(err)
	}
	if tk.spmSplit {
		t.Fatal("split allowed")
	}
	if got := texts(tk, tk.Encode("a b", false)); !reflect.DeepEqual(got, []string{"▁", "a▁b"}) {
		t.Errorf("Encode = %q", got)
	}
	if !loadModel(t, enginetest.TinyRandomF16).spmSplit || !loadModel(t, enginetest.Stories260K).spmSplit {
		t.Error("Llama-2 and stories260K vocabularies should allow the word split")
	}
}

// unsplitModel loads a model's tokenizer with the word split turned off:
// the reference the split is checked against.
func unsplitModel(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	f, err := gguf.Open(enginetest.ModelPath(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	tk, err := FromGGUF(&f.Metadata)
	if err != nil {
		tb.Fatal(err)
	}
	tk.spmSplit = false
	return tk
}
