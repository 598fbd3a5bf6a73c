package engine

import (
	"context"
	"fmt"

	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/engine/tokenizer"
)

// Encode tokenizes a prompt as the model expects it (with BOS when the
// model's tokenizer asks for one).
func (m *Model) Encode(text string) []int32 {
	return m.Tokenizer.Encode(text, m.Tokenizer.AddBOS())
}

// StopTokens are the ids that end generation for this model (EOS and the
// end-of-turn tokens of chat models).
func (m *Model) StopTokens() []int32 { return m.Tokenizer.EndOfGeneration() }

// Budget is the number of tokens a sequence with this prompt may generate
// at most, given maxTokens (0: as many as the context allows).
func (e *Engine) Budget(promptLen, maxTokens int) (int, error) {
	if promptLen == 0 {
		return 0, ErrEmptyPrompt
	}
	room := e.opts.MaxContext - promptLen
	if room < 1 {
		return 0, fmt.Errorf("%w: %d prompt tokens, context %d", ErrPromptTooLong, promptLen, e.opts.MaxContext)
	}
	if maxTokens <= 0 || maxTokens > room {
		return room, nil
	}
	return maxTokens, nil
}

// Prefill runs a prompt into seq in chunks of at most MaxBatchTokens and
// writes the last token's logits. seq's blocks must cover the prompt.
func (e *Engine) Prefill(ctx context.Context, seq *kvcache.Seq, prompt []int32, logits []float32, onLayer func(layer int)) error {
	chunk := e.opts.MaxBatchTokens
	for done := 0; done < len(prompt); done += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(done+chunk, len(prompt))
		st := Step{Seq: seq, Tokens: prompt[done:end]}
		if end == len(prompt) {
			st.Logits = logits
		}
		if err := e.Forward([]Step{st}, onLayer); err != nil {
			return err
		}
	}
	return nil
}

// Generate runs one completion on its own: the prompt is prefilled, then
// tokens are sampled and decoded one at a time, each passed to emit, until
// the sampler finishes (a stop token or params.MaxTokens), the context is
// full, emit returns an error, or ctx ends. It returns the finish reason
// ("stop" or "length"). This is the single-process reference that a PD
// cluster must reproduce token for token.
func (e *Engine) Generate(ctx context.Context, prompt []int32, params sample.Params, emit func(sample.Token) error) (string, error) {
	budget, err := e.Budget(len(prompt), params.MaxTokens)
	if err != nil {
		return "", err
	}
	params.MaxTokens = budget
	sm, err := sample.New(params, e.model.LM.Vocab)
	if err != nil {
		return "", err
	}
	if err := sm.Restore(prompt, nil); err != nil {
		return "", err
	}
	seq := &kvcache.Seq{}
	if err := e.pool.Grow(seq, len(prompt)+budget); err != nil {
		return "", err
	}
	defer e.pool.Release(seq)

	logits := make([]float32, e.model.LM.Vocab)
	if err := e.Prefill(ctx, seq, prompt, logits, nil); err != nil {
		return "", err
	}
	for {
		tok, err := sm.Sample(logits)
		if err != nil {
			return "", err
		}
		if err := emit(tok); err != nil {
			return "", err
		}
		if tok.Finish != sample.NotFinished {
			return tok.Finish.String(), nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := e.Forward([]Step{{Seq: seq, Tokens: []int32{tok.ID}, Logits: logits}}, nil); err != nil {
			return "", err
		}
	}
}

// TextStream turns generated token ids into text as they arrive: it never
// emits half a UTF-8 character and holds back text that may begin a stop
// string.
type TextStream struct {
	dec  *tokenizer.Decoder
	stop *sample.Stopper
}

// NewTextStream starts a text stream for a completion that continues its
// prompt: the first token's leading space is kept ("Once upon a" + "▁time"
// reads "Once upon a time").
func (m *Model) NewTextStream(stops []string) (*TextStream, error) {
	st, err := sample.NewStopper(stops)
	if err != nil {
		return nil, err
	}
	return &TextStream{dec: m.Tokenizer.NewContinuationDecoder(), stop: st}, nil
}

// Push adds a token and returns the text that may be shown now; stopped
// reports that a stop string matched (the completion should end; the stop
// string itself is never emitted).
func (t *TextStream) Push(id int32) (text string, stopped bool) {
	return t.stop.Push(t.dec.Push(id))
}

// Flush returns what is held back at the end of the completion.
func (t *TextStream) Flush() string {
	if t.stop.Stopped() {
		return ""
	}
	text, _ := t.stop.Push(t.dec.Flush())
	return text + t.stop.Flush()
}
