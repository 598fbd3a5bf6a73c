package sample

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	nan32 := float32(math.NaN())
	tests := []struct {
		name  string
		set   func(*Params)
		param string // "" means valid
	}{
		{"defaults", nil, ""},
		{"greedy", func(p *Params) { p.Temperature = 0 }, ""},
		{"temperature 2", func(p *Params) { p.Temperature = 2 }, ""},
		{"temperature above 2", func(p *Params) { p.Temperature = 2.01 }, "temperature"},
		{"temperature negative", func(p *Params) { p.Temperature = -0.1 }, "temperature"},
		{"temperature NaN", func(p *Params) { p.Temperature = nan32 }, "temperature"},
		{"top_k 40", func(p *Params) { p.TopK = 40 }, ""},
		{"top_k -1 off", func(p *Params) { p.TopK = -1 }, ""},
		{"top_k -2", func(p *Params) { p.TopK = -2 }, "top_k"},
		{"top_p 0.9", func(p *Params) { p.TopP = 0.9 }, ""},
		{"top_p 0", func(p *Params) { p.TopP = 0 }, "top_p"},
		{"top_p above 1", func(p *Params) { p.TopP = 1.5 }, "top_p"},
		{"top_p NaN", func(p *Params) { p.TopP = nan32 }, "top_p"},
		{"min_p 1", func(p *Params) { p.MinP = 1 }, ""},
		{"min_p negative", func(p *Params) { p.MinP = -0.01 }, "min_p"},
		{"min_p above 1", func(p *Params) { p.MinP = 1.01 }, "min_p"},
		{"presence -2", func(p *Params) { p.PresencePenalty = -2 }, ""},
		{"presence 2.5", func(p *Params) { p.PresencePenalty = 2.5 }, "presence_penalty"},
		{"presence NaN", func(p *Params) { p.PresencePenalty = nan32 }, "presence_penalty"},
		{"frequency 2", func(p *Params) { p.FrequencyPenalty = 2 }, ""},
		{"frequency -3", func(p *Params) { p.FrequencyPenalty = -3 }, "frequency_penalty"},
		{"repetition 1.3", func(p *Params) { p.RepetitionPenalty = 1.3 }, ""},
		{"repetition 0", func(p *Params) { p.RepetitionPenalty = 0 }, "repetition_penalty"},
		{"repetition negative", func(p *Params) { p.RepetitionPenalty = -1 }, "repetition_penalty"},
		{"repetition +Inf", func(p *Params) { p.RepetitionPenalty = float32(math.Inf(1)) }, "repetition_penalty"},
		{"logprobs with 20", func(p *Params) { p.Logprobs = true; p.TopLogprobs = 20 }, ""},
		{"top_logprobs 21", func(p *Params) { p.Logprobs = true; p.TopLogprobs = 21 }, "top_logprobs"},
		{"top_logprobs negative", func(p *Params) { p.Logprobs = true; p.TopLogprobs = -1 }, "top_logprobs"},
		{"top_logprobs without logprobs", func(p *Params) { p.TopLogprobs = 2 }, "top_logprobs"},
		{"stop tokens", func(p *Params) { p.StopTokens = []int32{0, 2} }, ""},
		{"negative stop token", func(p *Params) { p.StopTokens = []int32{2, -1} }, "stop_token_ids"},
		{"max tokens", func(p *Params) { p.MaxTokens = 16 }, ""},
		{"negative max tokens", func(p *Params) { p.MaxTokens = -1 }, "max_tokens"},
		{"zero value", func(p *Params) { *p = Params{} }, "top_p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := params(tt.set)
			err := p.Validate()
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("Validate = %v, want a *ParamError", err)
			}
			if pe.Param != tt.param {
				t.Fatalf("Param = %q, want %q (%v)", pe.Param, tt.param, err)
			}
			if !strings.HasPrefix(err.Error(), "sample: invalid "+tt.param+": ") || pe.Reason == "" {
				t.Fatalf("message %q does not say what is wrong", err)
			}
			if _, nerr := New(p, 10); !errors.Is(nerr, ErrInvalidParams) {
				t.Fatalf("New accepted what Validate rejects: %v", nerr)
			}
		})
	}
}
