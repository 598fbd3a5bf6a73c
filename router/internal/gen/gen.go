package gen

import (
	"errors"
	"fmt"
	"time"

	"github.com/duet-llm/duet/engine/sample"
)

// Errors a generator returns before it emits any token. Wrap them with
// detail (fmt.Errorf("...: %w", gen.ErrOverloaded)); the API layer tests
// with errors.Is.
var (
	// ErrOverloaded: the cluster could serve the model but has no capacity
	// now (no decode node with free KV blocks, every prefill queue full).
	// Retrying later may succeed.
	ErrOverloaded = errors.New("gen: cluster overloaded")
	// ErrUnavailable: no routable (prefill, decode) pair serves the model.
	ErrUnavailable = errors.New("gen: no node pair available for the model")
)

// Finish reasons, as OpenAI spells them.
const (
	FinishStop   = "stop"   // a stop token (or, in the API layer, a stop string)
	FinishLength = "length" // max_tokens reached (or the context is full)
)

// Request is one generation, ready for the cluster.
type Request struct {
	// ID identifies the request end to end (the client's X-Request-Id when
	// it is sane, else one the API layer generated).
	ID string
	// Model is the model id the client asked for (a configured model).
	Model string
	// Prompt is the tokenized prompt, BOS included when the model wants it.
	// Never empty; len(Prompt)+Sampling.MaxTokens never exceeds the model's
	// context length.
	Prompt []int32
	// Sampling is validated. Seed is always set (the API layer draws one
	// when the client sent none, so the generation can be replayed),
	// MaxTokens is > 0, and StopTokens holds the model's end-of-generation
	// ids.
	Sampling sample.Params
}

// Token is one generated token.
type Token struct {
	ID int32
	// Index is the token's position in the completion: 0 for the first
	// generated token, then 1, 2, ... without gaps.
	Index int
	// Logprob is the token's log probability when Sampling.Logprobs is set
	// (it may be -Inf), else 0.
	Logprob float32
	// TopLogprobs holds the Sampling.TopLogprobs most likely alternatives,
	// best first. The receiver may keep the slice: the generator must not
	// reuse it.
	TopLogprobs []sample.TokenLogprob
	// Finish is "" while the completion goes on. On the last token it is
	// FinishStop (the token is one of Sampling.StopTokens and is not part of
	// the text) or FinishLength (the token is the last one allowed; it is
	// part of the text).
	Finish string
}

// Result is what a generation that ended returns.
type Result struct {
	// FinishReason is FinishStop or FinishLength, as on the last Token.
	FinishReason string
	// CompletionTokens is the number of tokens emitted.
	CompletionTokens int
	// Timings is an optional breakdown for logs (for example "queue",
	// "prefill", "kv-transfer", "decode"). May be nil.
	Timings map[string]time.Duration
}

// StreamError says that a generation failed after Tokens tokens were
// emitted. It is what a generator returns when, for example, the decode
// node died mid-stream: nothing can be retried without repeating text the
// client may already have.
type StreamError struct {
	Tokens int   // tokens emitted before the failure
	Err    error // the cause
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("gen: generation failed after %d tokens: %v", e.Tokens, e.Err)
}

// Unwrap returns the cause.
func (e *StreamError) Unwrap() error { return e.Err }
