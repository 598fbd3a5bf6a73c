package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
)

func TestGoldenIDs(t *testing.T) {
	model := enginetest.ModelPath(t, enginetest.Stories260K)
	var out, errb bytes.Buffer
	if rc := run([]string{"--model", model, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "60", "--ids"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	want := "432,383,286,261,376,298,315,421,395,317,426,338,401,396,267,337,410,408,419,292,411,322,265,282,295,433,426,385,328,432,358,394,261,370,432,352,266,268,388,426,338,391,266,267,337,335,312,432,398,312,286,267,414,270,333,415,426,13,438,310\n"
	if out.String() != want {
		t.Fatalf("got %q", out.String())
	}
	out.Reset()
	if rc := run([]string{"--model", model, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "20"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d", rc)
	}
	if !strings.HasPrefix(out.String(), ", there was a little girl named Lily.") {
		t.Fatalf("text %q", out.String())
	}
}

func TestSeededSamplingRepeats(t *testing.T) {
	model := enginetest.ModelPath(t, enginetest.TinyRandomF16)
	gen := func(seed string) string {
		var out, errb bytes.Buffer
		if rc := run([]string{"--model", model, "--prompt", "Hello", "--max-tokens", "16", "--seed", seed, "--ids"}, &out, &errb); rc != 0 {
			t.Fatalf("rc %d: %s", rc, errb.String())
		}
		return out.String()
	}
	if a, b := gen("5"), gen("5"); a != b {
		t.Fatalf("same seed, different output: %s vs %s", a, b)
	}
	if gen("5") == gen("6") {
		t.Fatal("different seeds, same output")
	}
}

func TestBadModels(t *testing.T) {
	v1 := enginetest.ModelPath(t, enginetest.Stories260KGGv1)
	for name, args := range map[string][]string{
		"missing": {"--model", t.TempDir() + "/none.gguf"},
		"v1":      {"--model", v1},
		"no flag": {},
	} {
		var out, errb bytes.Buffer
		if rc := run(args, &out, &errb); rc == 0 || errb.Len() == 0 {
			t.Errorf("%s: rc %d, stderr %q", name, rc, errb.String())
		}
	}
}
