package tokenizer

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func splitAll(p preTokenizer, s string) []string {
	var out []string
	start := int32(0)
	for _, e := range p.split(s, nil) {
		out = append(out, s[start:e])
		start = e
	}
	return out
}

// The expectations below are derived by hand from the regexes (see the
// comments on the preTokenizer constants), alternative by alternative.
func TestPreTokenizers(t *testing.T) {
	type tc struct {
		in   string
		want []string
	}
	cases := map[preTokenizer][]tc{
		preGPT2: {
			{"Hello world", []string{"Hello", " world"}},
			{"I'm you're they'll we've he'd it's can't", []string{"I", "'m", " you", "'re", " they", "'ll", " we", "'ve", " he", "'d", " it", "'s", " can", "'t"}},
			{"DON'T", []string{"DON", "'", "T"}}, // contractions are case-sensitive here
			{"12345 67", []string{"12345", " 67"}},
			{"a  b", []string{"a", " ", " b"}},
			{"hello\n\nworld", []string{"hello", "\n", "\n", "world"}},
			{"trailing   ", []string{"trailing", "   "}},
			{"  leading", []string{" ", " leading"}},
			{"!!! ??", []string{"!!!", " ??"}},
			{"日本語のテキスト", []string{"日本語のテキスト"}},
			{"hi 🦙🦙!", []string{"hi", " 🦙🦙!"}},
			{"e\u0301te", []string{"e", "\u0301", "te"}}, // a combining mark is not \p{L}
			{"\t\tx", []string{"\t", "\t", "x"}},
			{"x 1", []string{"x", " 1"}},
			{"", nil},
		},
		preLlama3: {
			{"Hello world", []string{"Hello", " world"}},
			{"I'M YOU'RE don't", []string{"I", "'M", " YOU", "'RE", " don", "'t"}},
			{"1", []string{"1"}},
			{"12", []string{"12"}},
			{"123", []string{"123"}},
			{"1234", []string{"123", "4"}},
			{"12345", []string{"123", "45"}},
			{"123456", []string{"123", "456"}},
			{"1234567", []string{"123", "456", "7"}},
			{" 123", []string{" ", "123"}},
			{"hello  \n  world", []string{"hello", "  \n", " ", " world"}},
			{"a\n\nb", []string{"a", "\n\n", "b"}},
			{"...\n\nx", []string{"...\n\n", "x"}},
			{" ...", []string{" ..."}},
			{"$100", []string{"$", "100"}},
			{"(hello)", []string{"(hello", ")"}},
			{"🦙llama", []string{"🦙llama"}},
			{"e\u0301te", []string{"e", "\u0301te"}},
			{"日本語 text", []string{"日本語", " text"}},
			{"trailing  ", []string{"trailing", "  "}},
			{"\r\n", []string{"\r\n"}},
			{"x\t\ty", []string{"x", "\t", "\ty"}},
			{"'hello", []string{"'hello"}},
			{"'", []string{"'"}},
			{"a   !", []string{"a", "  ", " !"}},
			{"\u00a0x", []string{"\u00a0x"}}, // NBSP is \s, and [^\r\n\p{L}\p{N}]
		},
		preQwen2: {
			{"1234567", []string{"1", "2", "3", "4", "5", "6", "7"}},
			{"abc123", []string{"abc", "1", "2", "3"}},
			{"I'M here", []string{"I", "'M", " here"}},
			{"a\n\nb", []string{"a", "\n\n", "b"}},
		},
		preSmolLM: {
			{"abc123 def", []string{"abc", "1", "2", "3", " def"}},
			{"a 1", []string{"a", " ", "1"}}, // the space ends its own stretch
			{"x²", []string{"x", "²"}},       // ² is \p{N}
			{"Hello world", []string{"Hello", " world"}},
		},
		preTekken: {
			{"HelloWorld", []string{"Hello", "World"}},
			{"ABCdef", []string{"ABCdef"}},
			{"ABC", []string{"ABC"}},
			{"AB!", []string{"AB", "!"}},
			{" hello", []string{" hello"}},
			{"123", []string{"1", "2", "3"}},
			{"a/b", []string{"a", "/b"}},
			{"!!\n/x", []string{"!!\n/", "x"}},
			{"A\u0301", []string{"A\u0301"}}, // marks are in both letter classes
			{"a\n\nb", []string{"a", "\n\n", "b"}},
		},
	}
	for pre, tcs := range cases {
		for _, c := range tcs {
			t.Run(pre.String()+"/"+c.in, func(t *testing.T) {
				if got := splitAll(pre, c.in); !reflect.DeepEqual(got, c.want) {
					t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
				}
			})
		}
	}
}

// TestPreTokenizersOracle checks the scanners against splits computed by
// Python's regex module (third-party, full Unicode properties and
// lookahead) from the original patterns; testdata/pretok_oracle.py wrote
// the file.
func TestPreTokenizersOracle(t *testing.T) {
	data, err := os.ReadFile("testdata/pretok_oracle.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Pre    string   `json:"pre"`
		Text   string   `json:"text"`
		Pieces []string `json:"pieces"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 100 {
		t.Fatalf("only %d oracle cases", len(cases))
	}
	names := map[string]preTokenizer{"gpt2": preGPT2, "llama3": preLlama3, "qwen2": preQwen2, "smollm": preSmolLM, "tekken": preTekken}
	bad := 0
	for _, c := range cases {
		pre, ok := names[c.Pre]
		if !ok {
			t.Fatalf("unknown pre-tokenizer %q", c.Pre)
		}
		if got := splitAll(pre, c.Text); !reflect.DeepEqual(got, c.Pieces) && !(len(got) == 0 && len(c.Pieces) == 0) {
			bad++
			if bad <= 10 {
				t.Errorf("%s split(%q) = %q, oracle %q", c.Pre, c.Text, got, c.Pieces)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d oracle cases differ", bad, len(cases))
	}
}

func FuzzPreTokenize(f *testing.F) {
	for _, s := range []string{"Hello world", "I'M 1234567 \n\n  x", "日本語🦙e\u0301", "\xff\xfe a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, pre := range []preTokenizer{preGPT2, preLlama3, preQwen2, preSmolLM, preTekken} {
			pieces := splitAll(pre, s)
			if strings.Join(pieces, "") != s {
				t.Fatalf("%s: pieces %q do not cover %q", pre, pieces, s)
			}
			for _, p := range pieces {
				if p == "" {
					t.Fatalf("%s: empty piece in %q", pre, pieces)
				}
				if utf8.ValidString(s) && !utf8.ValidString(p) {
					t.Fatalf("%s: piece %q splits a character", pre, p)
				}
			}
		}
	})
}
