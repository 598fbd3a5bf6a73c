package tokenizer

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/enginetest"
)

func stream(d *Decoder, ids []int32) ([]string, string) {
	var parts []string
	var all strings.Builder
	for _, id := range ids {
		p := d.Push(id)
		parts = append(parts, p)
		all.WriteString(p)
	}
	f := d.Flush()
	parts = append(parts, f)
	all.WriteString(f)
	return parts, all.String()
}

func TestDecoder(t *testing.T) {
	llama := loadModel(t, enginetest.TinyRandomF16)
	stories := loadModel(t, enginetest.Stories260K)
	bytesOnly := newBPEVocab("llama-bpe", nil).build(t)
	cases := []struct {
		name  string
		tk    *Tokenizer
		cont  bool
		ids   []int32
		parts []string // per Push, then Flush
	}{
		{"words", llama, false, []int32{15043, 3186}, []string{"Hello", " world", ""}},
		{"continuation keeps the space", llama, true, []int32{15043, 3186}, []string{" Hello", " world", ""}},
		{"BOS first keeps the space", llama, false, []int32{1, 15043}, []string{"", " Hello", ""}},
		{"emoji from byte tokens", llama, true, []int32{29871, 243, 162, 169, 156, 29889}, []string{" ", "", "", "", "🦙", ".", ""}},
		{"dangling bytes flush as U+FFFD", llama, true, []int32{15043, 243, 162}, []string{" Hello", "", "", "\uFFFD\uFFFD"}},
		{"broken sequence comes out at once", stories, true, []int32{3 + 0xCE, 412}, []string{"", "\uFFFDa", ""}},
		{"stray continuation byte", stories, true, []int32{3 + 0xA9, 412}, []string{"\uFFFD", "a", ""}},
		{"control tokens print nothing", stories, true, []int32{1, 403, 2}, []string{"", " Once", "", ""}},
		{"byte-level pieces of one character", bytesOnly, false, []int32{0xE6, 0x97, 0xA5}, []string{"", "", "日", ""}},
		{"byte-level, cut short", bytesOnly, false, []int32{0xE6, 0x97}, []string{"", "", "\uFFFD\uFFFD"}},
		{"out-of-range ids", stories, true, []int32{-1, 403, 100000}, []string{"", " Once", "", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.tk.NewDecoder()
			whole := c.tk.Decode(c.ids)
			if c.cont {
				d = c.tk.NewContinuationDecoder()
				whole = c.tk.DecodeContinuation(c.ids)
			}
			parts, all := stream(d, c.ids)
			if strings.Join(parts, "|") != strings.Join(c.parts, "|") {
				t.Errorf("parts %q, want %q", parts, c.parts)
			}
			if all != whole {
				t.Errorf("stream %q != whole %q", all, whole)
			}
			// Flush resets: the same decoder gives the same again.
			if _, again := stream(d, c.ids); again != all {
				t.Errorf("after Flush: %q", again)
			}
		})
	}
}

// The router calls Push for every streamed token: a token that is whole
// text must cost no allocation.
func TestDecoderNoAllocs(t *testing.T) {
	tk := loadModel(t, enginetest.TinyRandomF16)
	d := tk.NewContinuationDecoder()
	ids := tk.Encode("The quick brown fox jumps over the lazy dog, again and again.", false)
	allocs := testing.AllocsPerRun(100, func() {
		for _, id := range ids {
			d.Push(id)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per %d pushes", allocs, len(ids))
	}
}

func FuzzRoundTripSPM(f *testing.F) {
	tks := []*Tokenizer{loadModel(f, enginetest.Stories260K), loadModel(f, enginetest.TinyRandomF16)}
	ref := []*Tokenizer{unsplitModel(f, enginetest.Stories260K), unsplitModel(f, enginetest.TinyRandomF16)}
	f.Fuzz(func(t *testing.T, s string) {
		for i, tk := range tks {
			ids := tk.Encode(s, false)
			if want := ref[i].Encode(s, false); !slices.Equal(ids, want) {
				t.Fatalf("Encode(%q) = %v, merging the whole text gives %v", s, ids, want)
			}
			for _, id := range ids {
				if ty := tk.TokenType(id); ty == TypeControl || ty == TypeUnknown || ty == TypeUndefined {
					t.Fatalf("Encode(%q) produced %s token %d", s, ty, id)
				}
			}
			// SPM writes spaces as U+2581, so a literal U+2581 comes
			// back as a space; invalid UTF-8 comes back as U+FFFD.
			if !utf8.ValidString(s) || strings.Contains(s, spmSpace) {
				continue
			}
			if got := tk.Decode(ids); got != s {
				t.Fatalf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
			}
			// With BOS the first token keeps its dummy-prefix space.
			if got := tk.Decode(tk.Encode(s, true)); s != "" && got != " "+s {
				t.Fatalf("Decode(Encode(%q, BOS)) = %q", s, got)
			}
		}
	})
}

var (
	fuzzBPEOnce sync.Once
	fuzzBPE     []*Tokenizer
)

func bpeFuzzTokenizers(tb testing.TB) []*Tokenizer {
	fuzzBPEOnce.Do(func() {
		for _, pre := range []string{"llama-bpe", "qwen2", "gpt2", "smollm", "tekken"} {
			fuzzBPE = append(fuzzBPE, trainedVocab(pre).build(tb))
		}
	})
	return fuzzBPE
}

func FuzzRoundTripBPE(f *testing.F) {
	tks := bpeFuzzTokenizers(f)
	uncached := trainedVocab("llama-bpe").build(f)
	uncached.cache = nil
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := tks[0].Encode(s, false), uncached.Encode(s, false); !slices.Equal(got, want) {
			t.Fatalf("Encode(%q) = %v with the word cache, %v without", s, got, want)
		}
		for _, tk := range tks {
			ids := tk.Encode(s, false)
			for _, id := range ids {
				if ty := tk.TokenType(id); ty == TypeControl || ty == TypeUnknown || ty == TypeUndefined {
					t.Fatalf("Encode(%q) produced %s token %d", s, ty, id)
				}
			}
			if !utf8.ValidString(s) {
				continue
			}
			if got := tk.Decode(ids); got != s {
				name, _ := tk.PreTokenizer()
				t.Fatalf("%s: Decode(Encode(%q)) = %q", name, s, got)
			}
		}
	})
}

// FuzzDecoder checks that streaming equals decoding whole, for any ids.
func FuzzDecoder(f *testing.F) {
	tks := append(availableModels(f), bpeFuzzTokenizers(f)[0])
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tk := range tks {
			ids := make([]int32, 0, len(data)/2)
			for i := 0; i+1 < len(data); i += 2 {
				// ids in range, plus VocabSize() and -1 out of it
				id := int32(binary.LittleEndian.Uint16(data[i:])) % int32(tk.VocabSize()+2)
				if id == int32(tk.VocabSize()+1) {
					id = -1
				}
				ids = append(ids, id)
			}
			for _, cont := range []bool{false, true} {
				d, whole := tk.NewDecoder(), tk.Decode(ids)
				if cont {
					d, whole = tk.NewContinuationDecoder(), tk.DecodeContinuation(ids)
				}
				parts, all := stream(d, ids)
				for _, p := range parts {
					if !utf8.ValidString(p) {
						t.Fatalf("invalid UTF-8 part %q", p)
					}
				}
				if all != whole {
					t.Fatalf("ids %v: stream %q != whole %q", ids, all, whole)
				}
			}
		}
	})
}
