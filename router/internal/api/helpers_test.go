package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/engine/tokenizer"
	"github.com/duet-llm/duet/router/internal/gen"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// story is the text the fake generators "generate" (in stories260K's
// vocabulary every word is one token).
const story = "Once upon a time, there was a little girl named Lily."

var (
	storiesOnce sync.Once
	storiesTok  *tokenizer.Tokenizer
	storiesErr  error
)

// storiesModel is the stories260K model (no chat template: the default
// layout) with the given context length (0: the file's).
func storiesModel(t testing.TB, id string, ctx int) Model {
	t.Helper()
	path := enginetest.ModelPath(t, enginetest.Stories260K)
	storiesOnce.Do(func() {
		var m Model
		m, storiesErr = LoadModel("", path)
		storiesTok = m.Tokenizer
	})
	if storiesErr != nil {
		t.Fatal(storiesErr)
	}
	if ctx == 0 {
		ctx = 2048
	}
	return Model{ID: id, Tokenizer: storiesTok, ContextLength: ctx}
}

// bpeTokenizer builds a small GPT-2 byte-level vocabulary with ChatML
// special tokens and a ChatML template: what a Qwen2 or SmolLM file holds,
// at toy size.
func bpeTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	var toks []string
	var types []int32
	for b := 0; b < 256; b++ { // the byte-level alphabet, in byte order
		r := rune(b)
		if !('!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF) {
			r = 256 + rune(len(toks)-countPrintable(b))
		}
		toks = append(toks, string(r))
		types = append(types, 1)
	}
	merges := []string{"Ġ t", "h e", "Ġt he", "Ġ a", "i s", "Ġ is", "Ġ c", "a t", "Ġc at"}
	for _, m := range merges {
		l, r, _ := strings.Cut(m, " ")
		toks = append(toks, l+r)
		types = append(types, 1)
	}
	eos := len(toks)
	for _, s := range []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"} {
		toks = append(toks, s)
		types = append(types, 3)
	}
	var md gguf.Metadata
	for k, v := range map[string]any{
		"tokenizer.ggml.model":        "gpt2",
		"tokenizer.ggml.pre":          "qwen2",
		"tokenizer.ggml.tokens":       toks,
		"tokenizer.ggml.token_type":   types,
		"tokenizer.ggml.merges":       merges,
		"tokenizer.ggml.eos_token_id": uint32(eos),
		"tokenizer.chat_template":     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
	} {
		if err := md.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := tokenizer.FromGGUF(&md)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// countPrintable counts the bytes below b that GPT-2 maps to themselves.
func countPrintable(b int) int {
	n := 0
	for c := 0; c < b; c++ {
		if '!' <= c && c <= '~' || 0xA1 <= c && c <= 0xAC || 0xAE <= c && c <= 0xFF {
			n++
		}
	}
	return n
}

// genFunc adapts a function to Generator.
type genFunc func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error)

func (f genFunc) Generate(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
	return f(ctx, req, emit)
}

// scripted emits ids in order (up to MaxTokens, the last with "length"),
// then, if stop >= 0, the stop token with "stop". With logprobs asked, the
// token at index i has logprob -(i+1)/4 (and -Inf at index 3) and its
// alternatives are the token itself then ids+1, ids+2, ...
type scripted struct {
	ids  []int32
	stop int32

	mu   sync.Mutex
	reqs []*gen.Request
	ctxs []context.Context
}

func (s *scripted) Generate(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	ids := s.ids
	if s.stop >= 0 {
		ids = append(append([]int32(nil), ids...), s.stop)
	}
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return gen.Result{}, err
		}
		t := gen.Token{ID: id, Index: i}
		switch {
		case s.stop >= 0 && i == len(ids)-1:
			t.Finish = gen.FinishStop
		case i+1 == req.Sampling.MaxTokens:
			t.Finish = gen.FinishLength
		}
		if req.Sampling.Logprobs {
			t.Logprob = -float32(i+1) / 4
			if i == 3 {
				t.Logprob = float32(math.Inf(-1))
			}
			for k := 0; k < req.Sampling.TopLogprobs; k++ {
				t.TopLogprobs = append(t.TopLogprobs, sample.TokenLogprob{ID: id + int32(k), Logprob: t.Logprob - float32(k)})
			}
		}
		if err := emit(t); err != nil {
			return gen.Result{}, err
		}
		if t.Finish != "" {
			return gen.Result{FinishReason: t.Finish, CompletionTokens: i + 1}, nil
		}
	}
	return gen.Result{FinishReason: gen.FinishStop, CompletionTokens: len(ids)}, nil
}

func (s *scripted) last(t *testing.T) (*gen.Request, context.Context) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("the generator was not called")
	}
	return s.reqs[len(s.reqs)-1], s.ctxs[len(s.ctxs)-1]
}

func (s *scripted) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// newScripted generates story, then EOS.
func newScripted(tok *tokenizer.Tokenizer) *scripted {
	eos, _ := tok.EOS()
	return &scripted{ids: tok.Encode(story, false), stop: eos}
}

func testConfig(models ...Model) Config {
	cfg := DefaultConfig()
	cfg.Models = models
	cfg.MaxBodyBytes = 64 << 10
	return cfg
}

func newAPI(t testing.TB, cfg Config, g Generator, ready Readiness) *API {
	t.Helper()
	a, err := New(cfg, g, ready, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// server serves a over a real loopback socket.
func server(t testing.TB, a *API) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return srv
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, srv *httptest.Server, method, path, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func post(t testing.TB, srv *httptest.Server, path, body string, header ...string) reply {
	t.Helper()
	return do(t, srv, http.MethodPost, path, body, header...)
}

// errorShape checks that b is exactly an OpenAI error body and returns it.
func errorShape(t testing.TB, b []byte) errorObject {
	t.Helper()
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(b, &outer); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("error body %s: want exactly one key \"error\"", b)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		t.Fatalf("error object %s: %v", outer["error"], err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := inner[k]; !ok {
			t.Errorf("error object %s has no %q", outer["error"], k)
		}
	}
	if len(inner) != 4 {
		t.Errorf("error object %s: want exactly message, type, param, code", outer["error"])
	}
	dec := json.NewDecoder(bytes.NewReader(outer["error"]))
	dec.DisallowUnknownFields()
	var o errorObject
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("error object %s: %v", outer["error"], err)
	}
	if o.Message == "" || o.Type == "" {
		t.Errorf("error object %s: empty message or type", outer["error"])
	}
	return o
}

func strOrNil(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// events splits a server-sent event stream, checking its framing exactly:
// only "data: <payload>\n\n" events, the last one "[DONE]". It returns the
// payloads before [DONE].
func events(t testing.TB, body []byte) []json.RawMessage {
	t.Helper()
	s := string(body)
	var out []json.RawMessage
	done := false
	for s != "" {
		if done {
			t.Fatalf("data after [DONE]: %q", s)
		}
		if !strings.HasPrefix(s, "data: ") {
			t.Fatalf("event does not start with \"data: \": %q", s)
		}
		end := strings.Index(s, "\n\n")
		if end < 0 {
			t.Fatalf("unterminated event: %q", s)
		}
		payload := s[len("data: "):end]
		s = s[end+2:]
		if strings.Contains(payload, "\n") {
			t.Fatalf("multi-line event %q", payload)
		}
		if payload == "[DONE]" {
			done = true
			continue
		}
		if !json.Valid([]byte(payload)) {
			t.Fatalf("event is not JSON: %q", payload)
		}
		out = append(out, json.RawMessage(payload))
	}
	if !done {
		t.Fatalf("stream does not end with data: [DONE]: %q", body)
	}
	return out
}

// Wire types for reading answers in tests (strict: unknown fields fail).
type (
	wireUsage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
	wireCompletionLogprobs struct {
		Tokens        []string             `json:"tokens"`
		TokenLogprobs []float64            `json:"token_logprobs"`
		TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		TextOffset    []int                `json:"text_offset"`
	}
	wireChatTop struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
		Bytes   []int   `json:"bytes"`
	}
	wireChatLogprob struct {
		Token       string        `json:"token"`
		Logprob     float64       `json:"logprob"`
		Bytes       []int         `json:"bytes"`
		TopLogprobs []wireChatTop `json:"top_logprobs"`
	}
	wireChatLogprobs struct {
		Content []wireChatLogprob `json:"content"`
		Refusal *string           `json:"refusal"`
	}
	wireChoice struct {
		Text    *string `json:"text"`
		Index   int     `json:"index"`
		Message *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	}
	wireResponse struct {
		ID      string          `json:"id"`
		Object  string          `json:"object"`
		Created int64           `json:"created"`
		Model   string          `json:"model"`
		Choices []wireChoice    `json:"choices"`
		Usage   json.RawMessage `json:"usage"`
	}
)

func strict(t testing.TB, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func hasKey(t testing.TB, b []byte, key string) bool {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	_, ok := m[key]
	return ok
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func modelPath(t testing.TB) string { return enginetest.ModelPath(t, enginetest.Stories260K) }
