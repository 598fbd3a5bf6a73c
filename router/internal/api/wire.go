package api

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
)

// The OpenAI response shapes. Field order follows OpenAI's answers.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// response is a completion or a chunk of one. Usage is raw so that a chunk
// can carry "usage": null (stream_options.include_usage) or leave it out.
type response[C any] struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []C             `json:"choices"`
	Usage   json.RawMessage `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string              `json:"text"`
	Index        int                 `json:"index"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *chatMessage  `json:"message,omitempty"`
	Delta        *chatDelta    `json:"delta,omitempty"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// completionLogprobs is the legacy completions logprobs object: parallel
// lists, one entry per generated token.
type completionLogprobs struct {
	Tokens        []string  `json:"tokens"`
	TokenLogprobs []logprob `json:"token_logprobs"`
	TopLogprobs   []topMap  `json:"top_logprobs"`
	TextOffset    []int     `json:"text_offset"`
}

func (l *completionLogprobs) len() int { return len(l.Tokens) }

// chatLogprobs is the chat logprobs object.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal *string            `json:"refusal"`
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     logprob          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob logprob `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// logprob is a log probability on the wire: the shortest decimal that reads
// back as the same float32, and -9999.0 for -Inf (JSON has no infinity;
// OpenAI and vLLM send -9999.0).
type logprob float32

func (l logprob) MarshalJSON() ([]byte, error) {
	f := float32(l)
	switch {
	case math.IsInf(float64(f), -1) || f < -9999:
		return []byte("-9999.0"), nil
	case math.IsNaN(float64(f)) || math.IsInf(float64(f), 1):
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 32), nil
}

// topMap is one token's alternatives as a JSON object {token: logprob},
// best first. A token text seen twice keeps its first (better) entry: a
// JSON object cannot hold a key twice.
type topMap []topEntry

type topEntry struct {
	token string
	lp    logprob
}

func (m topMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	seen := make(map[string]bool, len(m))
	for _, e := range m {
		if seen[e.token] {
			continue
		}
		seen[e.token] = true
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, err := jsonMarshal(e.token)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, _ := e.lp.MarshalJSON()
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonMarshal is json.Marshal without HTML escaping ("<" stays "<", as
// OpenAI's answers have it).
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
