package sample

import (
	"errors"
	"fmt"
	"math"
)

// Limits of the request parameters (OpenAI's where OpenAI has one).
const (
	// MaxTopLogprobs is the largest TopLogprobs a request may ask for.
	MaxTopLogprobs = 20
	// MaxStops is the largest number of stop strings a request may give.
	MaxStops = 4
	// MaxVocab is the largest vocabulary a Sampler accepts. It bounds the
	// fixed-point probability mass so that the sum over the vocabulary cannot
	// overflow 64 bits (see doc.go, "Exact arithmetic").
	MaxVocab = 1 << 20
)

// Sentinel errors. A *ParamError wraps ErrInvalidParams; every other error
// wraps one of the rest.
var (
	ErrInvalidParams = errors.New("sample: invalid parameters")
	ErrVocab         = errors.New("sample: invalid vocabulary size")
	ErrLogits        = errors.New("sample: logits row does not fit the vocabulary")
	ErrNoCandidates  = errors.New("sample: no token can be sampled: every logit is NaN or -Inf")
	ErrInfLogit      = errors.New("sample: logits row holds +Inf")
	ErrToken         = errors.New("sample: token id out of range")
	ErrHistory       = errors.New("sample: generated tokens do not fit the parameters")
	ErrFinished      = errors.New("sample: completion already finished")
	ErrWorkspace     = errors.New("sample: workspace vocabulary does not match")
)

// ParamError says which request parameter is wrong and why. Param is the
// OpenAI wire name ("temperature", "top_p", ...) so that the HTTP edge can put
// it in the error body; the message is meant for the client as it is.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return "sample: invalid " + e.Param + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidParams) hold.
func (e *ParamError) Unwrap() error { return ErrInvalidParams }

// Params are the sampling parameters of one completion, with OpenAI
// semantics. The zero value is not valid (TopP and RepetitionPenalty must be
// > 0): start from DefaultParams and set what the request sets.
type Params struct {
	// Temperature divides the logits before the softmax; 0 means greedy
	// (argmax, lowest token id on ties), and so does a temperature so small
	// that 1/temperature overflows float32. Range [0, 2].
	Temperature float32
	// TopK keeps the K most likely tokens (by penalized logit, lowest id on
	// ties). 0 (or -1, vLLM's spelling) turns it off; K >= vocab is off too.
	TopK int
	// TopP keeps the smallest prefix of the tokens, sorted by probability,
	// whose probability sums to at least TopP (always at least one token).
	// Range (0, 1]; 1 turns it off.
	TopP float32
	// MinP drops tokens whose probability is below MinP times the
	// probability of the most likely token. Range [0, 1]; 0 turns it off.
	MinP float32
	// PresencePenalty is subtracted once from the logit of every token that
	// occurs in the output so far (OpenAI). Range [-2, 2].
	PresencePenalty float32
	// FrequencyPenalty is subtracted from the logit of every token as many
	// times as it occurs in the output so far (OpenAI). Range [-2, 2].
	FrequencyPenalty float32
	// RepetitionPenalty (HF transformers / llama.cpp / vLLM semantics, not
	// OpenAI) divides the positive logits and multiplies the negative logits
	// of every distinct token that occurs in the prompt or the output so far,
	// once per token whatever its count. Must be > 0; 1 turns it off; > 1
	// discourages repetition.
	RepetitionPenalty float32
	// Seed makes the completion reproducible: the random number for output
	// token i is a pure function of (Seed, i). Nil means New draws one from
	// crypto/rand (read it back with Sampler.Seed). OpenAI's seed is an
	// int64; convert it with uint64(seed).
	Seed *uint64
	// Logprobs asks for the chosen token's log probability.
	Logprobs bool
	// TopLogprobs asks for that many most likely alternatives per token
	// (needs Logprobs). Range [0, MaxTopLogprobs].
	TopLogprobs int
	// StopTokens end the completion when sampled (the token is returned with
	// FinishStop; the caller does not print it). The model's end-of-sequence
	// ids belong here unless the request ignores EOS.
	StopTokens []int32
	// MaxTokens ends the completion after that many output tokens
	// (FinishLength). 0 means no limit from the sampler; the caller still
	// stops at the context length.
	MaxTokens int
}

// DefaultParams returns OpenAI's defaults: temperature 1, no truncation, no
// penalties, no logprobs, no stop tokens, no token limit.
func DefaultParams() Params {
	return Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
}

// Validate checks every field and returns a *ParamError (wrapping
// ErrInvalidParams) for the first one that is out of range. NaN is out of
// every range.
func (p Params) Validate() error {
	if !inRange(p.Temperature, 0, 2) {
		return paramErr("temperature", "must be between 0 and 2 (0 is greedy), got %v", p.Temperature)
	}
	if p.TopK < -1 {
		return paramErr("top_k", "must be 0 or -1 (off) or a positive count, got %d", p.TopK)
	}
	if !(p.TopP > 0 && p.TopP <= 1) {
		return paramErr("top_p", "must be greater than 0 and at most 1 (1 is off), got %v", p.TopP)
	}
	if !inRange(p.MinP, 0, 1) {
		return paramErr("min_p", "must be between 0 (off) and 1, got %v", p.MinP)
	}
	if !inRange(p.PresencePenalty, -2, 2) {
		return paramErr("presence_penalty", "must be between -2 and 2, got %v", p.PresencePenalty)
	}
	if !inRange(p.FrequencyPenalty, -2, 2) {
		return paramErr("frequency_penalty", "must be between -2 and 2, got %v", p.FrequencyPenalty)
	}
	if !(p.RepetitionPenalty > 0 && p.RepetitionPenalty <= math.MaxFloat32) {
		return paramErr("repetition_penalty", "must be a finite number greater than 0 (1 is off), got %v", p.RepetitionPenalty)
	}
	if p.TopLogprobs < 0 || p.TopLogprobs > MaxTopLogprobs {
		return paramErr("top_logprobs", "must be between 0 and %d, got %d", MaxTopLogprobs, p.TopLogprobs)
	}
	if p.TopLogprobs > 0 && !p.Logprobs {
		return paramErr("top_logprobs", "needs logprobs to be true")
	}
	for _, id := range p.StopTokens {
		if id < 0 {
			return paramErr("stop_token_ids", "token ids must not be negative, got %d", id)
		}
	}
	if p.MaxTokens < 0 {
		return paramErr("max_tokens", "must not be negative, got %d", p.MaxTokens)
	}
	return nil
}

func inRange(x, lo, hi float32) bool { return x >= lo && x <= hi } // false for NaN

func paramErr(param, format string, args ...any) error {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}
