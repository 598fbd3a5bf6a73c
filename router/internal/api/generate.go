package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/engine/tokenizer"
	"github.com/duet-llm/duet/router/internal/chat"
	"github.com/duet-llm/duet/router/internal/gen"
)

// Reasons the API layer stops a generation itself; Generate returns them
// (or ctx's error) and the completion still succeeds.
var (
	errStopString = errors.New("api: stop string matched")
	errMaxTokens  = errors.New("api: max_tokens reached")
	errProtocol   = errors.New("api: generator broke the emit contract")
)

// completions serves POST /v1/completions.
func (a *API) completions(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	body, aerr := a.readBody(w, r)
	if aerr == nil {
		var req *request
		if req, aerr = parseCompletion(body); aerr == nil {
			aerr = a.serveGeneration(w, r, rl, req)
		}
	}
	if aerr != nil {
		rl.err = aerr
		writeError(w, aerr)
	}
}

// chatCompletions serves POST /v1/chat/completions.
func (a *API) chatCompletions(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	body, aerr := a.readBody(w, r)
	if aerr == nil {
		var req *request
		if req, aerr = parseChat(body); aerr == nil {
			aerr = a.serveGeneration(w, r, rl, req)
		}
	}
	if aerr != nil {
		rl.err = aerr
		writeError(w, aerr)
	}
}

// serveGeneration checks the request against the model, waits for a slot
// and runs the generation. It returns an error only while nothing was
// written.
func (a *API) serveGeneration(w http.ResponseWriter, r *http.Request, rl *reqLog, req *request) *apiError {
	if err := req.params.Validate(); err != nil {
		return paramError(err)
	}
	m, aerr := a.model(req.model)
	if aerr != nil {
		return aerr
	}
	rl.model, rl.stream = m.ID, req.stream
	greq, aerr := a.prepare(m, req, rl)
	if aerr != nil {
		return aerr
	}
	rl.promptTokens = len(greq.Prompt)
	stopper, err := sample.NewStopper(req.stops)
	if err != nil {
		return paramError(err)
	}

	ctx := r.Context()
	queued := time.Now()
	if err := a.adm.acquire(ctx); err != nil {
		if errors.Is(err, errQueueFull) || errors.Is(err, errQueueTimeout) {
			return &apiError{status: http.StatusTooManyRequests, typ: typeRateLimit, code: codeRateLimit, retryAfter: a.cfg.RetryAfter,
				message: "Too many requests: the server is at capacity, please retry after a short wait."}
		}
		rl.clientGone, rl.err = true, err
		return nil
	}
	defer a.adm.release()
	rl.queueWait = time.Since(queued)

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := a.newRun(w, r, rl, m, req, greq, stopper, cancel)
	defer run.clearDeadline()
	deadline := queued.Add(a.cfg.QueueTimeout)
	backoff := a.cfg.OverloadBackoff
	for {
		res, err := a.gen.Generate(gctx, greq, run.emit)
		if err != nil && errors.Is(err, gen.ErrOverloaded) && run.tokens == 0 && ctx.Err() == nil {
			if wait := min(backoff, time.Until(deadline)); wait > 0 && sleep(ctx, wait) {
				rl.retries++
				backoff = min(2*backoff, time.Second)
				continue
			}
		}
		return run.done(res, err)
	}
}

// sleep waits d, false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// paramError turns a sample.ParamError into a 400 naming the parameter.
func paramError(err error) *apiError {
	var pe *sample.ParamError
	if errors.As(err, &pe) {
		return badRequest(pe.Param, codeInvalidValue, "Invalid '%s': %s.", pe.Param, pe.Reason)
	}
	return badRequest("", codeInvalidValue, "%v", err)
}

// prepare renders and tokenizes the prompt and checks it, with max_tokens,
// against the context length.
func (a *API) prepare(m *model, req *request, rl *reqLog) (*gen.Request, *apiError) {
	tok := m.Tokenizer
	var prompt []int32
	param := "prompt"
	switch {
	case req.ep == epChat:
		param = "messages"
		p, err := m.tpl.Render(req.messages)
		if err != nil {
			return nil, badRequest(param, codeInvalidValue, "Invalid 'messages': %s.", strings.TrimPrefix(err.Error(), "chat: "))
		}
		prompt = encodeChat(tok, p)
	case req.idsPrompt:
		vocab := tok.VocabSize()
		for i, id := range req.promptIDs {
			if int(id) >= vocab {
				return nil, badRequest(param, codeInvalidValue, "Invalid 'prompt': token id %d at position %d is out of range (the vocabulary has %d tokens).", id, i, vocab)
			}
		}
		prompt = req.promptIDs
	default:
		// Like vLLM and llama.cpp, a raw completion prompt may spell special
		// tokens (a prompt rendered by the client from a chat template).
		prompt = tok.EncodeSpecial(req.promptText, tok.AddBOS())
	}
	if len(prompt) == 0 {
		return nil, badRequest(param, codeInvalidValue, "Invalid '%s': the prompt is empty.", param)
	}

	n, ctxLen := len(prompt), m.ContextLength
	maxTokens := req.maxTokens
	if maxTokens == 0 {
		if req.ep == epChat {
			if n >= ctxLen {
				return nil, badRequest(param, codeContextLength,
					"This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.", ctxLen, n)
			}
			maxTokens = int64(ctxLen - n)
		} else {
			maxTokens = defaultCompletionLimit
		}
	}
	if maxTokens > int64(ctxLen-n) {
		total := int64(math.MaxInt64)
		if maxTokens <= math.MaxInt64-int64(n) {
			total = int64(n) + maxTokens
		}
		if req.ep == epChat {
			return nil, badRequest(param, codeContextLength,
				"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.", ctxLen, total, n, maxTokens)
		}
		return nil, badRequest(param, codeContextLength,
			"This model's maximum context length is %d tokens, however you requested %d tokens (%d in your prompt; %d for the completion). Please reduce your prompt; or completion length.", ctxLen, total, n, maxTokens)
	}

	p := req.params
	p.MaxTokens = int(maxTokens)
	p.StopTokens = m.eog
	if p.Seed == nil {
		seed := rand.Uint64()
		p.Seed = &seed
	}
	rl.seed, rl.hasSeed = *p.Seed, true
	if err := p.Validate(); err != nil {
		return nil, paramError(err)
	}
	return &gen.Request{ID: rl.id, Model: m.ID, Prompt: prompt, Sampling: p}, nil
}

// encodeChat tokenizes a rendered conversation: BOS when the model wants
// it, each special segment as its token (when the vocabulary has it as a
// token that EncodeSpecial would produce), and the text between as plain
// text, so message content never turns into special tokens. Text is split
// only at special tokens, exactly where EncodeSpecial splits it, so a
// conversation without special-token texts in its content tokenizes as
// EncodeSpecial of the rendered string.
func encodeChat(tok *tokenizer.Tokenizer, p chat.Prompt) []int32 {
	var ids []int32
	if bos, ok := tok.BOS(); ok && tok.AddBOS() {
		ids = append(ids, bos)
	}
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			ids = append(ids, tok.Encode(text.String(), false)...)
			text.Reset()
		}
	}
	for _, s := range p {
		if s.Special {
			if id, ok := tok.TokenID(s.Text); ok {
				switch tok.TokenType(id) {
				case tokenizer.TypeControl, tokenizer.TypeUserDefined, tokenizer.TypeUnknown:
					flush()
					ids = append(ids, id)
					continue
				}
			}
		}
		text.WriteString(s.Text)
	}
	flush()
	return ids
}

// run is the state of one generation's answer: detokenizing, stop strings,
// logprobs, and writing (all at once, or as server-sent events).
type run struct {
	a       *API
	w       http.ResponseWriter
	rc      *http.ResponseController
	r       *http.Request
	rl      *reqLog
	m       *model
	req     *request
	greq    *gen.Request
	dec     *tokenizer.Decoder
	stop    *sample.Stopper
	cancel  context.CancelFunc
	id      string
	created int64
	start   time.Time

	tokens   int    // tokens received
	finish   string // set once the completion is over
	stopHit  bool   // a stop string matched
	ownStop  bool   // the API layer canceled the generation
	flushed  bool   // decoder and stopper flushed
	started  bool   // stream: headers and first chunk written
	deadline bool   // a write deadline was set (cleared at the end)
	writeErr error
	runes    int // code points decoded so far: text_offset

	text strings.Builder    // non-stream: the completion text
	clp  completionLogprobs // logprobs not yet sent (stream) or all of them
	chlp []chatTokenLogprob
	buf  []byte
}

func (a *API) newRun(w http.ResponseWriter, r *http.Request, rl *reqLog, m *model, req *request, greq *gen.Request, stop *sample.Stopper, cancel context.CancelFunc) *run {
	ru := &run{a: a, w: w, rc: http.NewResponseController(w), r: r, rl: rl, m: m, req: req, greq: greq,
		stop: stop, cancel: cancel, created: time.Now().Unix(), start: time.Now()}
	if req.ep == epChat {
		// The assistant's text starts after the template's separator: as in
		// Decode, the first token's dummy-prefix space is not part of it.
		ru.dec = m.Tokenizer.NewDecoder()
		ru.id = "chatcmpl-" + rl.id
	} else {
		// A completion continues the prompt: its first space is text.
		ru.dec = m.Tokenizer.NewContinuationDecoder()
		ru.id = "cmpl-" + rl.id
	}
	return ru
}

// emit receives one token from the Generator.
func (ru *run) emit(t gen.Token) error {
	if ru.finish != "" {
		return fmt.Errorf("%w: token %d after the end", errProtocol, t.Index)
	}
	if t.Index != ru.tokens {
		return fmt.Errorf("%w: token index %d, want %d", errProtocol, t.Index, ru.tokens)
	}
	ru.tokens++
	now := time.Now()
	if ru.tokens == 1 {
		ru.rl.ttft = now.Sub(ru.start)
		ru.rl.firstAt = now
	} else if o := ru.a.cfg.Observer; o != nil {
		o.InterToken(now.Sub(ru.rl.lastAt))
	}
	ru.rl.lastAt = now
	if t.Finish == gen.FinishStop { // a stop token: never text
		ru.finish = gen.FinishStop
		return nil
	}
	piece := ru.dec.Push(t.ID)
	if ru.greq.Sampling.Logprobs {
		ru.addLogprob(t)
	}
	ru.runes += utf8.RuneCountInString(piece)
	out, stopped := ru.stop.Push(piece)
	last := t.Finish == gen.FinishLength || ru.tokens >= ru.greq.Sampling.MaxTokens
	if !stopped && last {
		more, s := ru.flush()
		out, stopped = out+more, s
	}
	switch {
	case stopped:
		ru.finish, ru.stopHit = gen.FinishStop, true
	case last:
		ru.finish = gen.FinishLength
	}
	if err := ru.out(out); err != nil {
		ru.writeErr = err
		return err
	}
	if ru.stopHit {
		ru.ownStop = true
		ru.cancel()
		return errStopString
	}
	if ru.finish == gen.FinishLength && t.Finish != gen.FinishLength {
		ru.ownStop = true
		ru.cancel()
		return errMaxTokens
	}
	return nil
}

// flush ends the decoder and the stopper: the text they still hold.
func (ru *run) flush() (string, bool) {
	if ru.flushed {
		return "", ru.stopHit
	}
	ru.flushed = true
	tail := ru.dec.Flush()
	ru.runes += utf8.RuneCountInString(tail)
	out, stopped := ru.stop.Push(tail)
	if !stopped {
		out += ru.stop.Flush()
	}
	return out, stopped
}

func (ru *run) addLogprob(t gen.Token) {
	tok := ru.m.Tokenizer
	raw := tokenBytes(tok, t.ID)
	if ru.req.ep == epChat {
		e := chatTokenLogprob{Token: tokenString(raw), Logprob: logprob(t.Logprob), Bytes: intsOf(raw), TopLogprobs: []chatTopLogprob{}}
		for _, alt := range t.TopLogprobs[:min(len(t.TopLogprobs), ru.greq.Sampling.TopLogprobs)] {
			b := tokenBytes(tok, alt.ID)
			e.TopLogprobs = append(e.TopLogprobs, chatTopLogprob{Token: tokenString(b), Logprob: logprob(alt.Logprob), Bytes: intsOf(b)})
		}
		ru.chlp = append(ru.chlp, e)
		return
	}
	// Completions: the top alternatives plus the sampled token, which OpenAI
	// always lists ("up to logprobs+1 elements").
	top := make(topMap, 0, ru.greq.Sampling.TopLogprobs+1)
	sampled := false
	for _, alt := range t.TopLogprobs[:min(len(t.TopLogprobs), ru.greq.Sampling.TopLogprobs)] {
		sampled = sampled || alt.ID == t.ID
		top = append(top, topEntry{tokenString(tokenBytes(tok, alt.ID)), logprob(alt.Logprob)})
	}
	if !sampled {
		top = append(top, topEntry{tokenString(raw), logprob(t.Logprob)})
	}
	ru.clp.Tokens = append(ru.clp.Tokens, tokenString(raw))
	ru.clp.TokenLogprobs = append(ru.clp.TokenLogprobs, logprob(t.Logprob))
	ru.clp.TopLogprobs = append(ru.clp.TopLogprobs, top)
	ru.clp.TextOffset = append(ru.clp.TextOffset, ru.runes)
}

// out takes text that is final (past the stop-string check).
func (ru *run) out(s string) error {
	if !ru.req.stream {
		ru.text.WriteString(s)
		return nil
	}
	if s == "" {
		return nil // logprobs wait for the chunk that carries their text
	}
	return ru.chunk(s, "")
}

// done finishes the answer after Generate returned.
func (ru *run) done(res gen.Result, err error) *apiError {
	rl := ru.rl
	rl.completionTokens = ru.tokens
	rl.timings = res.Timings
	if err != nil && !ru.ownStop && ru.finish == "" {
		rl.err = err
		if ru.writeErr != nil || ru.r.Context().Err() != nil {
			rl.clientGone = true
			return nil
		}
		if ru.started {
			rl.streamFailed = true
			ru.streamError()
			return nil
		}
		return ru.a.generatorError(err, ru.m.ID, rl.id)
	}
	if err != nil && !ru.ownStop {
		rl.err = err // the completion was over; the generator failed after
	}
	if ru.finish == "" {
		switch {
		case res.FinishReason != "":
			ru.finish = res.FinishReason
		case ru.tokens >= ru.greq.Sampling.MaxTokens:
			ru.finish = gen.FinishLength
		default:
			ru.finish = gen.FinishStop
		}
	}
	rl.finish = ru.finish
	more, _ := ru.flush()
	if !ru.req.stream {
		ru.text.WriteString(more)
		ru.respond()
		return nil
	}
	if more != "" {
		if ru.chunk(more, "") != nil {
			rl.clientGone = true
			return nil
		}
	}
	if ru.chunk("", ru.finish) != nil {
		rl.clientGone = true
		return nil
	}
	if ru.req.includeUsage {
		if ru.usageChunk() != nil {
			rl.clientGone = true
			return nil
		}
	}
	if ru.write([]byte("data: [DONE]\n\n")) != nil {
		rl.clientGone = true
	}
	return nil
}

func (ru *run) usage() usage {
	return usage{PromptTokens: len(ru.greq.Prompt), CompletionTokens: ru.tokens, TotalTokens: len(ru.greq.Prompt) + ru.tokens}
}

// respond writes the non-streamed answer.
func (ru *run) respond() {
	u, _ := jsonMarshal(ru.usage())
	finish := ru.finish
	if ru.req.ep == epChat {
		c := chatChoice{Message: &chatMessage{Role: "assistant", Content: ru.text.String()}, FinishReason: &finish}
		if ru.greq.Sampling.Logprobs {
			c.Logprobs = &chatLogprobs{Content: nonNil(ru.chlp)}
		}
		writeJSON(ru.w, http.StatusOK, response[chatChoice]{ID: ru.id, Object: "chat.completion", Created: ru.created, Model: ru.m.ID, Choices: []chatChoice{c}, Usage: u})
		return
	}
	c := completionChoice{Text: ru.text.String(), FinishReason: &finish}
	if ru.greq.Sampling.Logprobs {
		c.Logprobs = ru.takeCompletionLogprobs()
	}
	writeJSON(ru.w, http.StatusOK, response[completionChoice]{ID: ru.id, Object: "text_completion", Created: ru.created, Model: ru.m.ID, Choices: []completionChoice{c}, Usage: u})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (ru *run) takeCompletionLogprobs() *completionLogprobs {
	l := &completionLogprobs{
		Tokens: nonNil(ru.clp.Tokens), TokenLogprobs: nonNil(ru.clp.TokenLogprobs),
		TopLogprobs: nonNil(ru.clp.TopLogprobs), TextOffset: nonNil(ru.clp.TextOffset),
	}
	ru.clp = completionLogprobs{}
	return l
}

// chunk writes one server-sent event with text (or, with finish set, the
// last choice chunk) and the logprobs gathered since the previous chunk.
func (ru *run) chunk(text, finish string) error {
	if err := ru.startStream(); err != nil {
		return err
	}
	var fin *string
	if finish != "" {
		fin = &finish
	}
	var b []byte
	var err error
	if ru.req.ep == epChat {
		d := &chatDelta{}
		if finish == "" {
			d.Content = &text
		}
		c := chatChoice{Delta: d, FinishReason: fin}
		if ru.greq.Sampling.Logprobs && (len(ru.chlp) > 0 || finish == "") {
			c.Logprobs = &chatLogprobs{Content: nonNil(ru.chlp)}
			ru.chlp = nil
		}
		b, err = jsonMarshal(response[chatChoice]{ID: ru.id, Object: "chat.completion.chunk", Created: ru.created, Model: ru.m.ID, Choices: []chatChoice{c}, Usage: ru.nullUsage()})
	} else {
		c := completionChoice{Text: text, FinishReason: fin}
		if ru.greq.Sampling.Logprobs && (ru.clp.len() > 0 || finish == "") {
			c.Logprobs = ru.takeCompletionLogprobs()
		}
		b, err = jsonMarshal(response[completionChoice]{ID: ru.id, Object: "text_completion", Created: ru.created, Model: ru.m.ID, Choices: []completionChoice{c}, Usage: ru.nullUsage()})
	}
	if err != nil {
		return err
	}
	return ru.event(b)
}

// nullUsage is "usage": null on every chunk but the last when the client
// asked for usage (stream_options.include_usage), else no usage field.
func (ru *run) nullUsage() []byte {
	if ru.req.includeUsage {
		return []byte("null")
	}
	return nil
}

// usageChunk is the extra last chunk with empty choices and the usage.
func (ru *run) usageChunk() error {
	u, _ := jsonMarshal(ru.usage())
	var b []byte
	var err error
	if ru.req.ep == epChat {
		b, err = jsonMarshal(response[chatChoice]{ID: ru.id, Object: "chat.completion.chunk", Created: ru.created, Model: ru.m.ID, Choices: []chatChoice{}, Usage: u})
	} else {
		b, err = jsonMarshal(response[completionChoice]{ID: ru.id, Object: "text_completion", Created: ru.created, Model: ru.m.ID, Choices: []completionChoice{}, Usage: u})
	}
	if err != nil {
		return err
	}
	return ru.event(b)
}

// startStream writes the headers (and, for chat, the role chunk) before
// the first event. Until then a failure can still be a normal error answer.
func (ru *run) startStream() error {
	if ru.started {
		return nil
	}
	ru.started = true
	h := ru.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	ru.w.WriteHeader(http.StatusOK)
	if ru.req.ep != epChat {
		return nil
	}
	empty := ""
	c := chatChoice{Delta: &chatDelta{Role: "assistant", Content: &empty}}
	b, err := jsonMarshal(response[chatChoice]{ID: ru.id, Object: "chat.completion.chunk", Created: ru.created, Model: ru.m.ID, Choices: []chatChoice{c}, Usage: ru.nullUsage()})
	if err != nil {
		return err
	}
	return ru.event(b)
}

// streamError ends a started stream with an error event and [DONE].
func (ru *run) streamError() {
	e := &apiError{typ: typeServer, code: codeUpstream,
		message: fmt.Sprintf("The generation failed after %d tokens (request id %s).", ru.tokens, ru.rl.id)}
	b, _ := jsonMarshal(e.body())
	if ru.event(b) == nil {
		_ = ru.write([]byte("data: [DONE]\n\n"))
	}
}

// event writes "data: <json>\n\n" and flushes it to the client.
func (ru *run) event(json []byte) error {
	ru.buf = append(append(append(ru.buf[:0], "data: "...), json...), "\n\n"...)
	return ru.write(ru.buf)
}

func (ru *run) write(b []byte) error {
	if d := ru.a.cfg.WriteTimeout; d > 0 {
		if ru.rc.SetWriteDeadline(time.Now().Add(d)) == nil {
			ru.deadline = true
		}
	}
	if _, err := ru.w.Write(b); err != nil {
		return err
	}
	return ru.rc.Flush()
}

// clearDeadline removes the write deadline so that it does not outlive the
// stream on a kept-alive connection.
func (ru *run) clearDeadline() {
	if ru.deadline {
		_ = ru.rc.SetWriteDeadline(time.Time{})
	}
}
