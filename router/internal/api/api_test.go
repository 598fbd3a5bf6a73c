package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCompletion(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	ids := g.ids

	tests := []struct {
		name       string
		body       string
		wantText   string
		wantFinish string
		wantTokens int
		wantMax    int
	}{
		{"to the stop token", `{"model":"s","prompt":"Once upon a time","max_tokens":100}`,
			tok.DecodeContinuation(ids), "stop", len(ids) + 1, 100},
		{"length", `{"model":"s","prompt":"Once upon a time","max_tokens":5}`,
			tok.DecodeContinuation(ids[:5]), "length", 5, 5},
		{"default max_tokens 16", `{"model":"s","prompt":"Once upon a time"}`,
			tok.DecodeContinuation(ids[:min(16, len(ids))]), map[bool]string{true: "length", false: "stop"}[len(ids) >= 16], min(16, len(ids)+1), 16},
		{"max_completion_tokens wins", `{"model":"s","prompt":"Once upon a time","max_tokens":100,"max_completion_tokens":4}`,
			tok.DecodeContinuation(ids[:4]), "length", 4, 4},
		{"one string in an array", `{"model":"s","prompt":["Once upon a time"],"max_tokens":3}`,
			tok.DecodeContinuation(ids[:3]), "length", 3, 3},
		{"nulls are absent", `{"model":"s","prompt":"Once upon a time","max_tokens":3,"temperature":null,"stop":null,"seed":null,"n":null,"logprobs":null,"suffix":null,"echo":false,"best_of":1,"n":1,"logit_bias":{},"user":"me","unknown_field":{"x":[1,2]}}`,
			tok.DecodeContinuation(ids[:3]), "length", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Unix()
			r := post(t, srv, "/v1/completions", tc.body, "X-Request-Id", "req-1.A_b")
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if id := r.header.Get("X-Request-Id"); id != "req-1.A_b" {
				t.Errorf("X-Request-Id %q", id)
			}
			var resp wireResponse
			strict(t, r.body, &resp)
			if resp.ID != "cmpl-req-1.A_b" || resp.Object != "text_completion" || resp.Model != "s" {
				t.Errorf("id %q object %q model %q", resp.ID, resp.Object, resp.Model)
			}
			if resp.Created < before || resp.Created > time.Now().Unix() {
				t.Errorf("created %d", resp.Created)
			}
			if len(resp.Choices) != 1 {
				t.Fatalf("%d choices", len(resp.Choices))
			}
			c := resp.Choices[0]
			if c.Text == nil || *c.Text != tc.wantText {
				t.Errorf("text %q, want %q", strOrNil(c.Text), tc.wantText)
			}
			if c.Index != 0 || strOrNil(c.FinishReason) != tc.wantFinish || string(c.Logprobs) != "null" || c.Message != nil || c.Delta != nil {
				t.Errorf("choice %+v", c)
			}
			req, _ := g.last(t)
			var u wireUsage
			strict(t, resp.Usage, &u)
			if u.PromptTokens != len(req.Prompt) || u.CompletionTokens != tc.wantTokens || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage %+v, want prompt %d completion %d", u, len(req.Prompt), tc.wantTokens)
			}
			if req.Sampling.MaxTokens != tc.wantMax {
				t.Errorf("max tokens %d, want %d", req.Sampling.MaxTokens, tc.wantMax)
			}
		})
	}

	// The prompt is tokenized with BOS, special tokens parsed; token ids go
	// as given.
	post(t, srv, "/v1/completions", `{"model":"s","prompt":"Once upon a time","max_tokens":1}`)
	req, _ := g.last(t)
	if want := tok.EncodeSpecial("Once upon a time", true); fmt.Sprint(req.Prompt) != fmt.Sprint(want) {
		t.Errorf("prompt %v, want %v", req.Prompt, want)
	}
	for _, body := range []string{`{"model":"s","prompt":[5,6,7],"max_tokens":1}`, `{"model":"s","prompt":[[5,6,7]],"max_tokens":1}`} {
		if r := post(t, srv, "/v1/completions", body); r.status != 200 {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
		if req, _ := g.last(t); fmt.Sprint(req.Prompt) != "[5 6 7]" {
			t.Errorf("%s: prompt %v", body, req.Prompt)
		}
	}
	eog := tok.EndOfGeneration()
	if fmt.Sprint(req.Sampling.StopTokens) != fmt.Sprint(eog) || len(eog) == 0 {
		t.Errorf("stop tokens %v, want the model's end of generation %v", req.Sampling.StopTokens, eog)
	}
	if req.ID == "" || req.Model != "s" {
		t.Errorf("request id %q model %q", req.ID, req.Model)
	}
}

func TestSamplingPassed(t *testing.T) {
	m := storiesModel(t, "s", 0)
	g := newScripted(m.Tokenizer)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":2,"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,"presence_penalty":0.5,"frequency_penalty":-0.5,"repetition_penalty":1.1,"seed":42,"logprobs":3}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	req, _ := g.last(t)
	p := req.Sampling
	if p.Temperature != 0.5 || p.TopP != 0.9 || p.TopK != 40 || p.MinP != 0.05 || p.PresencePenalty != 0.5 ||
		p.FrequencyPenalty != -0.5 || p.RepetitionPenalty != 1.1 || p.Seed == nil || *p.Seed != 42 || !p.Logprobs || p.TopLogprobs != 3 || p.MaxTokens != 2 {
		t.Errorf("sampling %+v", p)
	}
	// Defaults: OpenAI's.
	post(t, srv, "/v1/chat/completions", `{"model":"s","messages":[{"role":"user","content":"x"}],"max_tokens":1}`)
	req, _ = g.last(t)
	if p := req.Sampling; p.Temperature != 1 || p.TopP != 1 || p.TopK != 0 || p.MinP != 0 || p.RepetitionPenalty != 1 || p.Logprobs {
		t.Errorf("defaults %+v", p)
	}
}

func TestSeed(t *testing.T) {
	m := storiesModel(t, "s", 0)
	g := newScripted(m.Tokenizer)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	seeds := map[uint64]bool{}
	for i := 0; i < 4; i++ {
		post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":1}`)
		req, _ := g.last(t)
		if req.Sampling.Seed == nil {
			t.Fatal("no seed drawn")
		}
		seeds[*req.Sampling.Seed] = true
	}
	if len(seeds) < 2 {
		t.Errorf("drawn seeds repeat: %v", seeds)
	}
	for _, tc := range []struct {
		json string
		want uint64
	}{{"0", 0}, {"7", 7}, {"-1", 1<<64 - 1}, {"18446744073709551615", 1<<64 - 1}, {"-9223372036854775808", 1 << 63}} {
		post(t, srv, "/v1/chat/completions", `{"model":"s","messages":[{"role":"user","content":"x"}],"max_tokens":1,"seed":`+tc.json+`}`)
		req, _ := g.last(t)
		if req.Sampling.Seed == nil || *req.Sampling.Seed != tc.want {
			t.Errorf("seed %s: got %v, want %d", tc.json, req.Sampling.Seed, tc.want)
		}
	}
}

func TestCompletionStream(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))

	for _, usage := range []bool{false, true} {
		t.Run(fmt.Sprint("include_usage=", usage), func(t *testing.T) {
			body := `{"model":"s","prompt":"Once upon a time","max_tokens":100,"stream":true}`
			if usage {
				body = `{"model":"s","prompt":"Once upon a time","max_tokens":100,"stream":true,"stream_options":{"include_usage":true}}`
			}
			r := post(t, srv, "/v1/completions", body, "X-Request-Id", "abc")
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			evs := events(t, r.body)
			if usage {
				var last wireResponse
				strict(t, evs[len(evs)-1], &last)
				var u wireUsage
				strict(t, last.Usage, &u)
				req, _ := g.last(t)
				if len(last.Choices) != 0 || u.CompletionTokens != len(g.ids)+1 || u.PromptTokens != len(req.Prompt) || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Errorf("usage chunk %s", evs[len(evs)-1])
				}
				evs = evs[:len(evs)-1]
			}
			var text strings.Builder
			for i, ev := range evs {
				var c wireResponse
				strict(t, ev, &c)
				if c.ID != "cmpl-abc" || c.Object != "text_completion" || c.Model != "s" || len(c.Choices) != 1 {
					t.Fatalf("chunk %s", ev)
				}
				if hasKey(t, ev, "usage") != usage || usage && string(c.Usage) != "null" {
					t.Errorf("chunk %d usage field: %s", i, ev)
				}
				ch := c.Choices[0]
				if ch.Text == nil {
					t.Fatalf("chunk without text: %s", ev)
				}
				text.WriteString(*ch.Text)
				if i < len(evs)-1 {
					if ch.FinishReason != nil || *ch.Text == "" {
						t.Errorf("chunk %d: %s", i, ev)
					}
				} else if strOrNil(ch.FinishReason) != "stop" || *ch.Text != "" {
					t.Errorf("last chunk %s", ev)
				}
			}
			if want := tok.DecodeContinuation(g.ids); text.String() != want {
				t.Errorf("streamed %q, want %q", text.String(), want)
			}
			if len(evs) != len(g.ids)+1 { // one chunk per visible token, then the finish chunk
				t.Errorf("%d chunks, want %d", len(evs), len(g.ids)+1)
			}
		})
	}
}

func TestChat(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))

	body := `{"model":"s","messages":[{"role":"developer","content":"Be kind."},{"role":"user","content":[{"type":"text","text":"Tell"},{"type":"text","text":"a story"}]},{"role":"assistant","content":null},{"role":"user","content":"now"}],"max_tokens":50,"tool_choice":"none","tools":[],"response_format":{"type":"text"}}`
	r := post(t, srv, "/v1/chat/completions", body)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var resp wireResponse
	strict(t, r.body, &resp)
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || len(resp.ID) != len("chatcmpl-")+32 || resp.Object != "chat.completion" {
		t.Errorf("id %q object %q", resp.ID, resp.Object)
	}
	if resp.ID != "chatcmpl-"+r.header.Get("X-Request-Id") {
		t.Errorf("id %q, X-Request-Id %q", resp.ID, r.header.Get("X-Request-Id"))
	}
	c := resp.Choices[0]
	// Chat text is decoded as Decode does: no leading dummy-prefix space.
	if c.Message == nil || c.Message.Role != "assistant" || c.Message.Content != story || c.Text != nil || strOrNil(c.FinishReason) != "stop" {
		t.Errorf("choice %s", r.body)
	}
	req, _ := g.last(t)
	want := tok.Encode("system: Be kind.\nuser: Tell\na story\nassistant: \nuser: now\nassistant:", true)
	if fmt.Sprint(req.Prompt) != fmt.Sprint(want) {
		t.Errorf("prompt %v\nwant   %v", req.Prompt, want)
	}

	// Streaming.
	r = post(t, srv, "/v1/chat/completions", `{"model":"s","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"stream":true}`)
	evs := events(t, r.body)
	var text strings.Builder
	for i, ev := range evs {
		var ch wireResponse
		strict(t, ev, &ch)
		if ch.Object != "chat.completion.chunk" || len(ch.Choices) != 1 || hasKey(t, ev, "usage") {
			t.Fatalf("chunk %s", ev)
		}
		d := ch.Choices[0].Delta
		if d == nil || ch.Choices[0].Message != nil {
			t.Fatalf("chunk without delta: %s", ev)
		}
		switch {
		case i == 0:
			if d.Role == nil || *d.Role != "assistant" || d.Content == nil || *d.Content != "" || ch.Choices[0].FinishReason != nil {
				t.Errorf("first chunk %s", ev)
			}
		case i == len(evs)-1:
			if d.Role != nil || d.Content != nil || strOrNil(ch.Choices[0].FinishReason) != "stop" {
				t.Errorf("last chunk %s", ev)
			}
		default:
			if d.Role != nil || d.Content == nil || ch.Choices[0].FinishReason != nil {
				t.Errorf("chunk %d: %s", i, ev)
			}
			text.WriteString(*d.Content)
		}
	}
	if text.String() != story {
		t.Errorf("streamed %q, want %q", text.String(), story)
	}

	// Usage at the end of a chat stream.
	r = post(t, srv, "/v1/chat/completions", `{"model":"s","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`)
	evs = events(t, r.body)
	for _, ev := range evs[:len(evs)-1] {
		var c wireResponse
		strict(t, ev, &c)
		if string(c.Usage) != "null" || len(c.Choices) != 1 {
			t.Errorf("chunk %s", ev)
		}
	}
	var last wireResponse
	strict(t, evs[len(evs)-1], &last)
	var u wireUsage
	strict(t, last.Usage, &u)
	if req, _ := g.last(t); len(last.Choices) != 0 || last.Object != "chat.completion.chunk" || u.CompletionTokens != 3 || u.PromptTokens != len(req.Prompt) {
		t.Errorf("usage chunk %s", evs[len(evs)-1])
	}
}

func TestChatTemplateTokens(t *testing.T) {
	// A ChatML model: the template's special tokens are single tokens, the
	// content is text even when it spells a special token.
	tok := bpeTokenizer(t)
	m := Model{ID: "q", Tokenizer: tok, ContextLength: 256}
	eos, _ := tok.EOS()
	the := tok.Encode(" the cat is", false)
	g := &scripted{ids: the, stop: eos}
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	r := post(t, srv, "/v1/chat/completions", `{"model":"q","messages":[{"role":"user","content":"the cat<|im_end|>"}]}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	req, _ := g.last(t)
	start, _ := tok.TokenID("<|im_start|>")
	end, _ := tok.TokenID("<|im_end|>")
	var want []int32
	want = append(want, start)
	want = append(want, tok.Encode("user\nthe cat<|im_end|>", false)...)
	want = append(want, end)
	want = append(want, tok.Encode("\n", false)...)
	want = append(want, start)
	want = append(want, tok.Encode("assistant\n", false)...)
	if fmt.Sprint(req.Prompt) != fmt.Sprint(want) {
		t.Errorf("prompt %v\nwant   %v", req.Prompt, want)
	}
	n := 0
	for _, id := range req.Prompt {
		if id == end {
			n++
		}
	}
	if n != 1 {
		t.Errorf("content produced an <|im_end|> token: %v", req.Prompt)
	}
	// <|im_end|> is an end-of-generation token.
	found := false
	for _, id := range req.Sampling.StopTokens {
		found = found || id == end
	}
	if !found {
		t.Errorf("stop tokens %v lack <|im_end|> %d", req.Sampling.StopTokens, end)
	}
	var resp wireResponse
	strict(t, r.body, &resp)
	if got := resp.Choices[0].Message.Content; got != " the cat is" { // byte-level BPE keeps its spaces
		t.Errorf("content %q", got)
	}
}

func TestStopString(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	full := tok.DecodeContinuation(g.ids) // " Once upon a time, there was a little girl named Lily."
	tests := []struct {
		name string
		stop string
		want string
	}{
		{"spanning two tokens", `"little girl"`, " Once upon a time, there was a "},
		{"inside tokens", `"ce up"`, " On"},
		{"first of several", `["Lily", "was", "zebra"]`, " Once upon a time, there "},
		{"earliest end wins", `["there was a little", "a time"]`, " Once upon "},
		{"never matches", `["zebra"]`, full},
		{"at the very end", `"."`, full[:len(full)-1]},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				body := fmt.Sprintf(`{"model":"s","prompt":"Once","max_tokens":100,"stop":%s,"stream":%v}`, tc.stop, stream)
				r := post(t, srv, "/v1/completions", body)
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				var text, finish string
				if stream {
					for _, ev := range events(t, r.body) {
						var c wireResponse
						strict(t, ev, &c)
						text += *c.Choices[0].Text
						finish = strOrNil(c.Choices[0].FinishReason)
					}
				} else {
					var c wireResponse
					strict(t, r.body, &c)
					text, finish = *c.Choices[0].Text, strOrNil(c.Choices[0].FinishReason)
				}
				if text != tc.want || finish != "stop" {
					t.Errorf("text %q finish %s, want %q stop", text, finish, tc.want)
				}
				_, ctx := g.last(t)
				if tc.want != full && ctx.Err() == nil {
					t.Error("the generation was not canceled at the stop string")
				}
			})
		}
	}
}

func TestStopTokenNotShown(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	ids := tok.Encode(story, false)
	// The last word arrives as a stop token (as if it were one of the
	// model's end-of-generation ids): it must not be text.
	g := &scripted{ids: ids[:len(ids)-1], stop: ids[len(ids)-1]}
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	for _, stream := range []bool{false, true} {
		r := post(t, srv, "/v1/completions", fmt.Sprintf(`{"model":"s","prompt":"Once","max_tokens":100,"stream":%v,"logprobs":0,"stream_options":%s}`, stream, map[bool]string{true: `{"include_usage":true}`, false: "null"}[stream]))
		var text string
		var usage wireUsage
		var lp wireCompletionLogprobs
		if stream {
			evs := events(t, r.body)
			for _, ev := range evs[:len(evs)-1] {
				var c wireResponse
				strict(t, ev, &c)
				text += *c.Choices[0].Text
				if string(c.Choices[0].Logprobs) != "null" {
					var part wireCompletionLogprobs
					strict(t, c.Choices[0].Logprobs, &part)
					lp.Tokens = append(lp.Tokens, part.Tokens...)
				}
			}
			var last wireResponse
			strict(t, evs[len(evs)-1], &last)
			strict(t, last.Usage, &usage)
		} else {
			var c wireResponse
			strict(t, r.body, &c)
			text = *c.Choices[0].Text
			strict(t, c.Usage, &usage)
			strict(t, c.Choices[0].Logprobs, &lp)
		}
		if want := tok.DecodeContinuation(ids[:len(ids)-1]); text != want {
			t.Errorf("stream=%v: text %q, want %q", stream, text, want)
		}
		if usage.CompletionTokens != len(ids) {
			t.Errorf("stream=%v: completion tokens %d, want %d (the stop token counts)", stream, usage.CompletionTokens, len(ids))
		}
		if len(lp.Tokens) != len(ids)-1 {
			t.Errorf("stream=%v: %d logprobs entries, want %d (none for the stop token)", stream, len(lp.Tokens), len(ids)-1)
		}
	}
}

func TestCompletionLogprobs(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	ids := g.ids[:6]
	for _, k := range []int{0, 2} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("logprobs=%d/stream=%v", k, stream), func(t *testing.T) {
				r := post(t, srv, "/v1/completions", fmt.Sprintf(`{"model":"s","prompt":"Once","max_tokens":6,"logprobs":%d,"stream":%v}`, k, stream))
				var lp wireCompletionLogprobs
				var text string
				if stream {
					evs := events(t, r.body)
					for _, ev := range evs {
						var c wireResponse
						strict(t, ev, &c)
						ch := c.Choices[0]
						text += *ch.Text
						if string(ch.Logprobs) == "null" {
							continue
						}
						var part wireCompletionLogprobs
						strict(t, ch.Logprobs, &part)
						if len(part.Tokens) > 0 && strings.Join(part.Tokens, "") != *ch.Text {
							t.Errorf("chunk text %q carries the logprobs of %q", *ch.Text, part.Tokens)
						}
						lp.Tokens = append(lp.Tokens, part.Tokens...)
						lp.TokenLogprobs = append(lp.TokenLogprobs, part.TokenLogprobs...)
						lp.TopLogprobs = append(lp.TopLogprobs, part.TopLogprobs...)
						lp.TextOffset = append(lp.TextOffset, part.TextOffset...)
					}
				} else {
					var c wireResponse
					strict(t, r.body, &c)
					strict(t, c.Choices[0].Logprobs, &lp)
					text = *c.Choices[0].Text
				}
				if len(lp.Tokens) != len(ids) || len(lp.TokenLogprobs) != len(ids) || len(lp.TopLogprobs) != len(ids) || len(lp.TextOffset) != len(ids) {
					t.Fatalf("logprobs lengths %d %d %d %d, want %d", len(lp.Tokens), len(lp.TokenLogprobs), len(lp.TopLogprobs), len(lp.TextOffset), len(ids))
				}
				for i, id := range ids {
					piece := tok.DecodeContinuation([]int32{id})
					if lp.Tokens[i] != piece {
						t.Errorf("token %d: %q, want %q", i, lp.Tokens[i], piece)
					}
					want := -float64(i+1) / 4
					if i == 3 {
						want = -9999
					}
					if lp.TokenLogprobs[i] != want {
						t.Errorf("token %d logprob %v, want %v", i, lp.TokenLogprobs[i], want)
					}
					// top k alternatives, the sampled one among them (k=0: just it).
					if len(lp.TopLogprobs[i]) != max(k, 1) || lp.TopLogprobs[i][piece] != want {
						t.Errorf("token %d top %v", i, lp.TopLogprobs[i])
					}
					if off := lp.TextOffset[i]; utf8.RuneCountInString(text[:len(strings.Join(lp.Tokens[:i], ""))]) != off {
						t.Errorf("token %d text offset %d", i, off)
					}
				}
				if strings.Join(lp.Tokens, "") != text {
					t.Errorf("tokens %q do not spell the text %q", lp.Tokens, text)
				}
			})
		}
	}
}

func TestChatLogprobs(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := newScripted(tok)
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	ids := g.ids[:5]
	for _, k := range []int{0, 3} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("top=%d/stream=%v", k, stream), func(t *testing.T) {
				r := post(t, srv, "/v1/chat/completions", fmt.Sprintf(`{"model":"s","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"logprobs":true,"top_logprobs":%d,"stream":%v}`, k, stream))
				var content []wireChatLogprob
				if stream {
					for _, ev := range events(t, r.body) {
						var c wireResponse
						strict(t, ev, &c)
						if string(c.Choices[0].Logprobs) == "null" {
							continue
						}
						var part wireChatLogprobs
						strict(t, c.Choices[0].Logprobs, &part)
						content = append(content, part.Content...)
					}
				} else {
					var c wireResponse
					strict(t, r.body, &c)
					if !strings.Contains(string(c.Choices[0].Logprobs), `"refusal":null`) {
						t.Errorf("logprobs %s", c.Choices[0].Logprobs)
					}
					var lp wireChatLogprobs
					strict(t, c.Choices[0].Logprobs, &lp)
					content = lp.Content
				}
				if len(content) != len(ids) {
					t.Fatalf("%d entries, want %d", len(content), len(ids))
				}
				for i, id := range ids {
					e := content[i]
					piece := tok.DecodeContinuation([]int32{id})
					if e.Token != piece || string(intsToBytes(e.Bytes)) != piece || e.TopLogprobs == nil || len(e.TopLogprobs) != k {
						t.Errorf("entry %d: %+v (want token %q, %d alternatives)", i, e, piece, k)
					}
					for j, alt := range e.TopLogprobs {
						want := tok.DecodeContinuation([]int32{id + int32(j)})
						if alt.Token != want || string(intsToBytes(alt.Bytes)) != want {
							t.Errorf("entry %d alternative %d: %+v, want %q", i, j, alt, want)
						}
					}
				}
			})
		}
	}
}

func intsToBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func TestModelsAndProbes(t *testing.T) {
	var down atomic.Bool
	ready := readyFunc(func(m string) bool { return m == "b" && !down.Load() })
	a := newAPI(t, testConfig(storiesModel(t, "a", 0), storiesModel(t, "b", 100)), newScripted(storiesModel(t, "a", 0).Tokenizer), ready)
	srv := server(t, a)

	r := do(t, srv, "GET", "/v1/models", "")
	var list struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}
	strict(t, r.body, &list)
	if r.status != 200 || list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].ID != "b" ||
		list.Data[1].MaxModelLen != 100 || list.Data[0].Object != "model" || list.Data[0].OwnedBy != "duet" || list.Data[0].Created == 0 {
		t.Errorf("models %d %s", r.status, r.body)
	}
	r = do(t, srv, "GET", "/v1/models/b", "")
	var one modelObject
	strict(t, r.body, &one)
	if r.status != 200 || one.ID != "b" {
		t.Errorf("model b: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/healthz", ""); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Errorf("healthz %d %s", r.status, r.body)
	}
	if r := do(t, srv, "HEAD", "/healthz", ""); r.status != 200 {
		t.Errorf("HEAD healthz %d", r.status)
	}
	if r := do(t, srv, "GET", "/readyz", ""); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ready","models":{"a":false,"b":true}}` {
		t.Errorf("readyz %d %s", r.status, r.body)
	}
	down.Store(true)
	if r := do(t, srv, "GET", "/readyz", ""); r.status != 503 || !strings.Contains(string(r.body), `"unavailable"`) {
		t.Errorf("readyz with nothing routable: %d %s", r.status, r.body)
	}
}

type readyFunc func(string) bool

func (f readyFunc) Ready(m string) bool { return f(m) }

func TestAuth(t *testing.T) {
	m := storiesModel(t, "s", 0)
	cfg := testConfig(m)
	cfg.APIKeys = []string{"sk-one", "sk-two-longer"}
	srv := server(t, newAPI(t, cfg, newScripted(m.Tokenizer), nil))
	body := `{"model":"s","prompt":"x","max_tokens":1}`
	tests := []struct {
		name, header string
		status       int
	}{
		{"none", "", 401},
		{"wrong", "Bearer sk-three", 401},
		{"prefix of a key", "Bearer sk-on", 401},
		{"key plus more", "Bearer sk-one1", 401},
		{"no scheme", "sk-one", 401},
		{"basic", "Basic sk-one", 401},
		{"empty key", "Bearer ", 401},
		{"first", "Bearer sk-one", 200},
		{"second", "Bearer sk-two-longer", 200},
		{"lower-case scheme", "bearer sk-one", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, srv, "/v1/completions", body, "Authorization", tc.header)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 401 {
				o := errorShape(t, r.body)
				if strOrNil(o.Code) != codeInvalidAPIKey || r.header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("401 %s", r.body)
				}
				if strings.Contains(o.Message, "sk-") {
					t.Errorf("the message echoes the key: %q", o.Message)
				}
			}
		})
	}
	for _, p := range []string{"/v1/models", "/v1/models/s"} {
		if r := do(t, srv, "GET", p, ""); r.status != 401 {
			t.Errorf("%s without a key: %d", p, r.status)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := do(t, srv, "GET", p, ""); r.status != 200 {
			t.Errorf("%s without a key: %d", p, r.status)
		}
	}
	// Auth off.
	srv2 := server(t, newAPI(t, testConfig(m), newScripted(m.Tokenizer), nil))
	if r := post(t, srv2, "/v1/completions", body); r.status != 200 {
		t.Errorf("no keys configured: %d %s", r.status, r.body)
	}
}

func TestRequestID(t *testing.T) {
	m := storiesModel(t, "s", 0)
	srv := server(t, newAPI(t, testConfig(m), newScripted(m.Tokenizer), nil))
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc-123_X.y", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"has space", false},
		{"semi;colon", false},
		{"ünï", false},
		{"", false},
	} {
		r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":1}`, "X-Request-Id", tc.in)
		got := r.header.Get("X-Request-Id")
		if tc.keep && got != tc.in || !tc.keep && (got == tc.in || len(got) != 32) {
			t.Errorf("X-Request-Id %q came back as %q", tc.in, got)
		}
		var resp wireResponse
		strict(t, r.body, &resp)
		if resp.ID != "cmpl-"+got {
			t.Errorf("id %q for request id %q", resp.ID, got)
		}
	}
}

func TestMissingContentType(t *testing.T) {
	m := storiesModel(t, "s", 0)
	srv := server(t, newAPI(t, testConfig(m), newScripted(m.Tokenizer), nil))
	req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(`{"model":"s","prompt":"x","max_tokens":1}`))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("no Content-Type: %d %s", resp.StatusCode, b)
	}
	r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":1}`, "Content-Type", "application/json; charset=utf-8")
	if r.status != 200 {
		t.Errorf("with charset: %d %s", r.status, r.body)
	}
}

func TestNoHTMLEscaping(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	g := &scripted{ids: tok.Encode("a<b>&c", false), stop: -1}
	srv := server(t, newAPI(t, testConfig(m), g, nil))
	r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":20}`)
	if !strings.Contains(string(r.body), `"text":" a<b>&c"`) {
		t.Errorf("body %s", r.body)
	}
	var resp wireResponse
	strict(t, r.body, &resp)
	if strOrNil(resp.Choices[0].FinishReason) != "stop" {
		t.Errorf("a generator that ends without a finish token: finish %s", strOrNil(resp.Choices[0].FinishReason))
	}
}

// TestLogprobWire checks the float formatting of logprobs.
func TestLogprobWire(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want string
	}{{-0.1, "-0.1"}, {0, "0"}, {-2.5, "-2.5"}, {-1e-7, "-1e-07"}, {-20000, "-9999.0"}} {
		b, _ := json.Marshal(logprob(tc.in))
		if string(b) != tc.want {
			t.Errorf("logprob(%v) = %s, want %s", tc.in, b, tc.want)
		}
	}
	b, _ := jsonMarshal(topMap{{"a", -1}, {"b", -2}, {"a", -3}, {"<\"", -4}})
	if string(b) != `{"a":-1,"b":-2,"<\"":-4}` {
		t.Errorf("topMap %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	m := storiesModel(t, "s", 0)
	ok := testConfig(m)
	if _, err := New(ok, newScripted(m.Tokenizer), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ok, nil, nil, nil); err == nil {
		t.Error("nil generator accepted")
	}
	for name, mut := range map[string]func(*Config){
		"no body":        func(c *Config) { c.MaxBodyBytes = 0 },
		"no slots":       func(c *Config) { c.MaxConcurrent = 0 },
		"negative queue": func(c *Config) { c.MaxQueue = -1 },
		"queue no wait":  func(c *Config) { c.QueueTimeout = 0 },
		"negative":       func(c *Config) { c.WriteTimeout = -1 },
		"dup model":      func(c *Config) { c.Models = append(c.Models, c.Models[0]) },
		"no id":          func(c *Config) { c.Models[0].ID = "" },
		"no tokenizer":   func(c *Config) { c.Models[0].Tokenizer = nil },
		"tiny context":   func(c *Config) { c.Models[0].ContextLength = 1 },
		"empty key":      func(c *Config) { c.APIKeys = []string{""} },
	} {
		c := testConfig(m)
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadModel(t *testing.T) {
	m := storiesModel(t, "s", 0)
	if m.Tokenizer.VocabSize() != 512 {
		t.Errorf("vocab %d", m.Tokenizer.VocabSize())
	}
	path := modelPath(t)
	got, err := LoadModel("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "stories260K" || got.ContextLength != 2048 || got.ChatTemplate != "" {
		t.Errorf("loaded %q ctx %d template %q", got.ID, got.ContextLength, got.ChatTemplate)
	}
	if _, err := LoadModel("x", path+".missing"); err == nil {
		t.Error("missing file loaded")
	}
}

func TestModelsInfo(t *testing.T) {
	q := Model{ID: "q", Tokenizer: bpeTokenizer(t), ContextLength: 99}
	a := newAPI(t, testConfig(storiesModel(t, "s", 0), q), newScripted(q.Tokenizer), nil)
	got := fmt.Sprint(a.Models())
	if want := "[{s 2048 default 512} {q 99 chatml 268}]"; got != want {
		t.Errorf("Models() = %s, want %s", got, want)
	}
}
