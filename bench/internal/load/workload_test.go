package load

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseLengths(t *testing.T) {
	tests := []struct {
		in   string
		want Lengths
		err  bool
	}{
		{"512", Lengths{512, 512}, false},
		{" 256:1024 ", Lengths{256, 1024}, false},
		{"7:7", Lengths{7, 7}, false},
		{"0", Lengths{}, true},
		{"10:5", Lengths{}, true},
		{"-3", Lengths{}, true},
		{"a", Lengths{}, true},
		{"1:b", Lengths{}, true},
		{"", Lengths{}, true},
		{"99999999", Lengths{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLengths(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrBadLengths) {
				t.Fatalf("err = %v, not ErrBadLengths", err)
			}
			if !tt.err && got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseClass(t *testing.T) {
	tests := []struct {
		in   string
		want Class
		err  string
	}{
		{"name=long,weight=2,prompt=1024:4096,output=16", Class{"long", 2, Lengths{1024, 4096}, Lengths{16, 16}}, ""},
		{"prompt=32,output=128", Class{"p32-o128", 1, Lengths{32, 32}, Lengths{128, 128}}, ""},
		{"prompt=32", Class{}, "required"},
		{"prompt=32,output=1,weight=0", Class{}, "positive"},
		{"prompt=32,output=1,weight=NaN", Class{}, "positive"},
		{"prompt=32,output=1,size=3", Class{}, "unknown key"},
		{"prompt=32,output=0", Class{}, "bad length"},
		{"prompt", Class{}, "key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseClass(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrBadClass) {
					t.Fatalf("err = %v, want ErrBadClass containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func baseWorkload() Workload {
	return Workload{Classes: []Class{{Name: "a", Weight: 1, Prompt: Lengths{10, 20}, Output: Fixed(8)}},
		Arrival: Poisson, Rate: 4, Requests: 100, Seed: 7, PromptIDs: true, Vocab: 512, FirstID: 3}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(w *Workload)
	}{
		{"no class", func(w *Workload) { w.Classes = nil }},
		{"zero rate", func(w *Workload) { w.Rate = 0 }},
		{"inf rate", func(w *Workload) { w.Rate = math.Inf(1) }},
		{"closed without concurrency", func(w *Workload) { w.Arrival = Closed }},
		{"unknown arrival", func(w *Workload) { w.Arrival = "burst" }},
		{"no requests", func(w *Workload) { w.Requests = 0 }},
		{"vocab too small", func(w *Workload) { w.Vocab = 3 }},
		{"bad output", func(w *Workload) { w.Classes[0].Output = Lengths{} }},
		{"negative duration", func(w *Workload) { w.Duration = -time.Second }},
	}
	w := baseWorkload()
	if err := w.Validate(); err != nil {
		t.Fatalf("base workload: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := baseWorkload()
			w.Classes = append([]Class(nil), w.Classes...)
			tt.edit(&w)
			if err := w.Validate(); err == nil {
				t.Fatal("Validate accepted it")
			}
		})
	}
}

func plan(w Workload) []Request {
	p := NewPlanner(w)
	var out []Request
	for {
		r, ok := p.Next()
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

func TestPlannerDeterministic(t *testing.T) {
	w := baseWorkload()
	a, b := plan(w), plan(w)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed planned different requests")
	}
	w.Seed++
	if reflect.DeepEqual(a, plan(w)) {
		t.Fatal("another seed planned the same requests")
	}
	// A rate change keeps the prompts and lengths.
	w = baseWorkload()
	w.Rate = 40
	c := plan(w)
	for i := range a {
		if !reflect.DeepEqual(a[i].PromptIDs, c[i].PromptIDs) || a[i].MaxTokens != c[i].MaxTokens {
			t.Fatalf("request %d changed with the rate", i)
		}
		if i > 0 && c[i].At >= a[i].At {
			t.Fatalf("request %d at %v with rate 40, %v with rate 4", i, c[i].At, a[i].At)
		}
	}
}

func TestPlannerPromptIDs(t *testing.T) {
	rs := plan(baseWorkload())
	if len(rs) != 100 {
		t.Fatalf("planned %d requests, want 100", len(rs))
	}
	for _, r := range rs {
		if len(r.PromptIDs) < 10 || len(r.PromptIDs) > 20 || r.PromptTokens != len(r.PromptIDs) || r.PromptText != "" {
			t.Fatalf("request %d: %d ids, %d tokens, text %q", r.ID, len(r.PromptIDs), r.PromptTokens, r.PromptText)
		}
		for _, id := range r.PromptIDs {
			if id < 3 || id >= 512 {
				t.Fatalf("id %d outside [3, 512)", id)
			}
		}
		if r.MaxTokens != 8 {
			t.Fatalf("max tokens %d", r.MaxTokens)
		}
	}
}

func TestPlannerText(t *testing.T) {
	w := baseWorkload()
	w.PromptIDs = false
	for _, r := range plan(w) {
		if n := len(strings.Fields(r.PromptText)); n != r.PromptTokens || r.PromptIDs != nil {
			t.Fatalf("request %d: %d words for %d tokens", r.ID, n, r.PromptTokens)
		}
	}
}

func TestPlannerArrivals(t *testing.T) {
	t.Run("poisson mean gap", func(t *testing.T) {
		w := baseWorkload()
		w.Requests, w.Rate = 20001, 50
		rs := plan(w)
		if rs[0].At != 0 {
			t.Fatalf("first request at %v", rs[0].At)
		}
		mean := rs[len(rs)-1].At.Seconds() / float64(len(rs)-1)
		// 20000 exponential gaps: the mean is within 3% of 1/rate with
		// overwhelming probability, and the seed is fixed.
		if math.Abs(mean*w.Rate-1) > 0.03 {
			t.Fatalf("mean gap %v s, want %v", mean, 1/w.Rate)
		}
		// Exponential gaps: about e^-1 of them exceed the mean.
		over := 0
		for i := 1; i < len(rs); i++ {
			if (rs[i].At - rs[i-1].At).Seconds() > 1/w.Rate {
				over++
			}
		}
		if f := float64(over) / float64(len(rs)-1); math.Abs(f-math.Exp(-1)) > 0.02 {
			t.Fatalf("%.3f of gaps exceed the mean, want %.3f", f, math.Exp(-1))
		}
	})
	t.Run("constant", func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 4, 5
		for i, r := range plan(w) {
			if want := time.Duration(i) * 250 * time.Millisecond; r.At != want {
				t.Fatalf("request %d at %v, want %v", i, r.At, want)
			}
		}
	})
	t.Run("duration cuts the schedule", func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests, w.Duration = Constant, 10, 1000, 2*time.Second
		if n := len(plan(w)); n != 20 {
			t.Fatalf("planned %d requests in 2 s at 10/s, want 20", n)
		}
	})
}

func TestPlannerClasses(t *testing.T) {
	w := baseWorkload()
	w.Requests = 4000
	w.Classes = []Class{
		{Name: "short", Weight: 3, Prompt: Fixed(4), Output: Fixed(100)},
		{Name: "long", Weight: 1, Prompt: Fixed(400), Output: Fixed(2)},
	}
	n := map[string]int{}
	for _, r := range plan(w) {
		n[r.Class]++
		if r.Class == "long" && (r.PromptTokens != 400 || r.MaxTokens != 2) || r.Class == "short" && (r.PromptTokens != 4 || r.MaxTokens != 100) {
			t.Fatalf("request %+v has the wrong lengths for its class", r.Class)
		}
	}
	if f := float64(n["long"]) / 4000; math.Abs(f-0.25) > 0.03 {
		t.Fatalf("long fraction %.3f, want 0.25", f)
	}
}

func TestPlannerPromptFile(t *testing.T) {
	w := baseWorkload()
	w.Requests = 5
	w.Prompts = []FilePrompt{{Text: "hello there", Tokens: 3}, {IDs: []int32{1, 2, 3, 4}, MaxTokens: 2}}
	rs := plan(w)
	for i, r := range rs {
		fp := w.Prompts[i%2]
		if r.PromptText != fp.Text || !reflect.DeepEqual(r.PromptIDs, fp.IDs) {
			t.Fatalf("request %d does not use prompt %d", i, i%2)
		}
	}
	if rs[0].MaxTokens != 8 || rs[1].MaxTokens != 2 || rs[0].PromptTokens != 3 || rs[1].PromptTokens != 4 {
		t.Fatalf("lengths: %+v %+v", rs[0], rs[1])
	}
}
