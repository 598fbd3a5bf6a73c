package load

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadPrompts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []FilePrompt
		err  string
	}{
		{"text and ids", "{\"prompt\":\"Once upon a time\",\"max_tokens\":32,\"prompt_tokens\":5}\n{\"prompt\":[1,15043,3186]}\n",
			[]FilePrompt{{Text: "Once upon a time", MaxTokens: 32, Tokens: 5}, {IDs: []int32{1, 15043, 3186}, Tokens: 3}}, ""},
		{"blank lines, comments, no final newline", "# prompts\n\n{\"prompt\":\"a\"}\r\n  \n{\"prompt\":\"b\"}",
			[]FilePrompt{{Text: "a"}, {Text: "b"}}, ""},
		{"unknown fields ignored", `{"prompt":"a","id":"x","meta":{"k":1}}`, []FilePrompt{{Text: "a"}}, ""},
		{"empty file", "", nil, "no prompts"},
		{"only comments", "# nothing\n", nil, "no prompts"},
		{"not json", "{\"prompt\":\"a\"}\nhello\n", nil, "line 2: not a JSON object"},
		{"no prompt", `{"max_tokens":3}`, nil, `line 1: no "prompt"`},
		{"null prompt", `{"prompt":null}`, nil, `no "prompt"`},
		{"empty text", `{"prompt":""}`, nil, "empty prompt"},
		{"empty ids", `{"prompt":[]}`, nil, "empty prompt"},
		{"fractional id", `{"prompt":[1.5]}`, nil, "not a token id"},
		{"negative id", `{"prompt":[-1]}`, nil, "not a token id"},
		{"huge id", `{"prompt":[1e12]}`, nil, "not a token id"},
		{"mixed array", `{"prompt":[1,"a"]}`, nil, "want a string or an array"},
		{"object prompt", `{"prompt":{"a":1}}`, nil, "want a string or an array"},
		{"zero max_tokens", `{"prompt":"a","max_tokens":0}`, nil, "max_tokens"},
		{"fractional max_tokens", `{"prompt":"a","max_tokens":2.5}`, nil, "max_tokens"},
		{"negative prompt_tokens", `{"prompt":"a","prompt_tokens":-1}`, nil, "prompt_tokens"},
		{"array line", `[1,2]`, nil, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPrompts(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrBadPromptFile) {
					t.Fatalf("err = %v, want ErrBadPromptFile with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadPromptsLongLine(t *testing.T) {
	in := `{"prompt":"` + strings.Repeat("a", maxPromptLine) + `"}`
	if _, err := ReadPrompts(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err = %v", err)
	}
	// Just under the limit is fine.
	in = `{"prompt":"` + strings.Repeat("a", maxPromptLine-20) + `"}` + "\n"
	if p, err := ReadPrompts(strings.NewReader(in)); err != nil || len(p[0].Text) != maxPromptLine-20 {
		t.Fatalf("err = %v", err)
	}
}

// FuzzReadPrompts feeds arbitrary file bytes to the prompt reader: an
// error or prompts that the planner can use, never a panic.
func FuzzReadPrompts(f *testing.F) {
	f.Add([]byte("{\"prompt\":\"a\",\"max_tokens\":3}\n{\"prompt\":[1,2]}\n"))
	f.Add([]byte("# c\n\n{\"prompt\":[0]}"))
	f.Add([]byte("{\"prompt\":[1e3,-0]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := ReadPrompts(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, p := range ps {
			if (p.Text == "") == (p.IDs == nil) || p.MaxTokens < 0 || p.Tokens < 0 {
				t.Fatalf("unusable prompt %+v", p)
			}
			for _, id := range p.IDs {
				if id < 0 {
					t.Fatalf("negative id in %+v", p)
				}
			}
		}
	})
}
