package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/sample"
)

// golden: llama2.c's greedy continuation of "Once upon a time" on
// stories260K (../shared/models/README.md), after the 4 prompt tokens.
var golden = []int32{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310}

func open(t testing.TB, name string, o Options) *Engine {
	t.Helper()
	m, err := OpenModel(enginetest.ModelPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e, err := New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func greedy(max int) sample.Params {
	p := sample.DefaultParams()
	p.Temperature, p.MaxTokens = 0, max
	return p
}

func TestGenerateGolden(t *testing.T) {
	for _, dt := range []kvcache.DType{kvcache.F32, kvcache.F16} {
		o := DefaultOptions()
		o.KVDType = dt
		e := open(t, enginetest.Stories260K, o)
		m := e.Model()
		prompt := m.Encode("Once upon a time")
		if want := []int32{1, 403, 407, 261, 378}; !equal(prompt, want) {
			t.Fatalf("prompt %v, want %v", prompt, want)
		}
		var got []int32
		reason, err := e.Generate(context.Background(), prompt, greedy(len(golden)), func(tok sample.Token) error {
			got = append(got, tok.ID)
			return nil
		})
		if err != nil || reason != "length" {
			t.Fatalf("generate: %q %v", reason, err)
		}
		if dt == kvcache.F32 && !equal(got, golden) {
			t.Fatalf("got  %v\nwant %v", got, golden)
		}
		if len(got) != len(golden) {
			t.Fatalf("%s: %d tokens", dt, len(got))
		}
		if free := e.Pool().FreeBlocks(); free != e.Pool().NumBlocks() {
			t.Fatalf("%d of %d blocks free after Generate", free, e.Pool().NumBlocks())
		}
	}
}

func TestTextStreamAndStops(t *testing.T) {
	e := open(t, enginetest.Stories260K, DefaultOptions())
	m := e.Model()
	ts, err := m.NewTextStream([]string{"park"})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	stopped := false
	e.Generate(context.Background(), m.Encode("Once upon a time"), greedy(60), func(tok sample.Token) error {
		s, stop := ts.Push(tok.ID)
		text += s
		if stop {
			stopped = true
			return errors.New("stop")
		}
		return nil
	})
	if !stopped || text != ", there was a little girl named Lily. She loved to play outside in the " {
		t.Fatalf("stopped %v text %q", stopped, text)
	}
}

func TestGenerateErrors(t *testing.T) {
	o := DefaultOptions()
	o.MaxContext = 64
	e := open(t, enginetest.Stories260K, o)
	long := make([]int32, 64)
	for i := range long {
		long[i] = 300
	}
	nop := func(sample.Token) error { return nil }
	if _, err := e.Generate(context.Background(), long, greedy(4), nop); !errors.Is(err, ErrPromptTooLong) {
		t.Errorf("long prompt: %v", err)
	}
	if _, err := e.Generate(context.Background(), nil, greedy(4), nop); !errors.Is(err, ErrEmptyPrompt) {
		t.Errorf("empty prompt: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := e.Generate(ctx, []int32{1, 300}, greedy(0), func(sample.Token) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Errorf("cancel: %v after %d tokens", err, n)
	}
	// The context bound ends generation with "length".
	reason, err := e.Generate(context.Background(), long[:60], greedy(0), nop)
	if err != nil || reason != "length" {
		t.Errorf("full context: %q %v", reason, err)
	}
	if e.Pool().FreeBlocks() != e.Pool().NumBlocks() {
		t.Error("blocks leaked")
	}
	if _, err := New(e.Model(), Options{}); !errors.Is(err, ErrOptions) {
		t.Errorf("zero options: %v", err)
	}
}

// TestDecodeAllocs: a decode step allocates nothing at steady state.
func TestDecodeAllocs(t *testing.T) {
	for _, name := range []string{enginetest.Stories260K, enginetest.TinyRandomF16} {
		e := open(t, name, DefaultOptions())
		vocab := e.Model().LM.Vocab
		steps := make([]Step, 8)
		for i := range steps {
			seq := &kvcache.Seq{}
			if err := e.Pool().Grow(seq, 512); err != nil {
				t.Fatal(err)
			}
			steps[i] = Step{Seq: seq, Tokens: []int32{1, 300, int32(301 + i)}, Logits: make([]float32, vocab)}
		}
		if err := e.Forward(steps, nil); err != nil {
			t.Fatal(err)
		}
		for i := range steps {
			steps[i].Tokens = steps[i].Tokens[:1]
		}
		allocs := testing.AllocsPerRun(50, func() {
			if err := e.Forward(steps, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per decode step", name, allocs)
		}
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512MiB": 512 << 20, "8GiB": 8 << 30, "1.5KiB": 1536, "2GB": 2e9, " 3 MiB ": 3 << 20} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1", "12XB", "1e30GiB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s := FormatBytes(256 << 20); s != "256MiB" {
		t.Errorf("format %s", s)
	}
}
