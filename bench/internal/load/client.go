package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/duet-llm/duet/bench/internal/stats"
)

// Errors of the OpenAI client.
var (
	ErrBadTarget = errors.New("load: bad target")
	ErrStream    = errors.New("load: bad event stream")
)

// API is which OpenAI endpoint the client calls.
type API string

// The endpoints.
const (
	Completions API = "completions"       // POST /v1/completions, prompt
	Chat        API = "chat"              // POST /v1/chat/completions, one user message
	maxEvent        = 1 << 20             // bytes in one server-sent event line
	maxErrBody      = 64 << 10            // bytes of an error answer kept
	userAgent       = "duet-bench/1 (Go)" // sent on every request
)

// Target is the server under test.
type Target struct {
	// URL is the base URL, e.g. http://127.0.0.1:8080 (a trailing /v1 is
	// accepted).
	URL    string
	API    API
	Model  string
	APIKey string
	// Temperature is sent with every request (0: greedy).
	Temperature float64
	// IgnoreEOS sends "ignore_eos": true (vLLM's extension; servers that
	// do not know it may ignore or refuse it).
	IgnoreEOS bool
	// Timeout bounds one request, from sending to the end of the answer.
	Timeout time.Duration
}

// Validate checks the target.
func (t *Target) Validate() error {
	if !strings.HasPrefix(t.URL, "http://") && !strings.HasPrefix(t.URL, "https://") {
		return fmt.Errorf("%w: url %q must start with http:// or https://", ErrBadTarget, t.URL)
	}
	if t.API != Completions && t.API != Chat {
		return fmt.Errorf("%w: api %q (want completions or chat)", ErrBadTarget, t.API)
	}
	if t.Model == "" {
		return fmt.Errorf("%w: no model", ErrBadTarget)
	}
	return nil
}

func (t *Target) endpoint() string {
	base := strings.TrimSuffix(strings.TrimSuffix(t.URL, "/"), "/v1")
	if t.API == Chat {
		return base + "/v1/chat/completions"
	}
	return base + "/v1/completions"
}

// Client sends requests to an OpenAI-compatible server with "stream":
// true and times the answer. It is safe for concurrent use.
type Client struct {
	t  Target
	hc *http.Client
}

// NewClient returns a client for t (checked with Validate). It does no
// I/O: connections open on first use and are reused.
func NewClient(t Target) *Client {
	tr := &http.Transport{
		Proxy:               nil, // measure the server, not a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // gzip would buffer the stream
		ForceAttemptHTTP2:   false,
	}
	return &Client{t: t, hc: &http.Client{Transport: tr}}
}

// Close closes idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// body builds the JSON request.
func (c *Client) body(r *Request) ([]byte, error) {
	m := map[string]any{
		"model":          c.t.Model,
		"max_tokens":     r.MaxTokens,
		"temperature":    c.t.Temperature,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	if c.t.IgnoreEOS {
		m["ignore_eos"] = true
	}
	switch {
	case c.t.API == Chat:
		if r.PromptIDs != nil {
			return nil, fmt.Errorf("%w: the chat API takes text prompts, not token ids", ErrBadTarget)
		}
		m["messages"] = []map[string]string{{"role": "user", "content": r.PromptText}}
	case r.PromptIDs != nil:
		m["prompt"] = r.PromptIDs
	default:
		m["prompt"] = r.PromptText
	}
	return json.Marshal(m)
}

// Send runs one request and returns what it measured: latencies, counts
// and, for a failure, the error. The offsets (ScheduledS, StartS, EndS)
// are left for the caller.
func (c *Client) Send(ctx context.Context, r Request) stats.Sample {
	s := stats.Sample{ID: r.ID, Class: r.Class, PromptTokens: r.PromptTokens, MaxTokens: r.MaxTokens}
	body, err := c.body(&r)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if c.t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.t.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.endpoint(), bytes.NewReader(body))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", userAgent)
	if c.t.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.t.APIKey)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer resp.Body.Close()
	s.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
		s.Error = fmt.Sprintf("status %d: %s", resp.StatusCode, errorMessage(b))
		return s
	}
	res, err := ParseStream(resp.Body, time.Now)
	end := time.Now()
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if res.Err != "" {
		s.Error = "error event: " + res.Err
		return s
	}
	if res.First.IsZero() {
		s.Error = "answer with no token"
		return s
	}
	s.TTFTms = ms(res.First.Sub(start))
	s.E2Ems = ms(end.Sub(start))
	s.Chunks = len(res.Content)
	for i := 1; i < len(res.Content); i++ {
		s.ITLms = append(s.ITLms, ms(res.Content[i].Sub(res.Content[i-1])))
	}
	s.OutputTokens = s.Chunks
	if res.CompletionTokens > 0 {
		s.OutputTokens = res.CompletionTokens
	}
	if res.PromptTokens > 0 {
		s.PromptTokens = res.PromptTokens
	}
	s.FinishReason = res.FinishReason
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// errorMessage extracts an OpenAI error body's message, else the body.
func errorMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// StreamResult is what an OpenAI event stream carried.
type StreamResult struct {
	// First is when the first token arrived: the first chunk with text,
	// or (for an answer whose only token is a stop token and so has no
	// text) the first chunk with a finish reason.
	First time.Time
	// Content holds the arrival time of each chunk that carried text.
	Content []time.Time
	// From the usage chunk, when the server sent one.
	PromptTokens, CompletionTokens int
	FinishReason                   string
	// Err is the message of an error event.
	Err string
	// Done is set when the stream ended with data: [DONE].
	Done bool
}

// chunk is the part of a streamed completion or chat chunk read here.
type chunk struct {
	Choices []struct {
		Text  *string `json:"text"`
		Delta *struct {
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// ParseStream reads a server-sent event stream of OpenAI chunks until
// data: [DONE], stamping each event with now(). A stream that ends
// without [DONE] (and without an error event) is an error, as is a line
// over 1 MiB or a data line that is not a JSON object.
func ParseStream(r io.Reader, now func() time.Time) (StreamResult, error) {
	var res StreamResult
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br, maxEvent)
		if err != nil && err != io.EOF {
			return res, fmt.Errorf("%w: %v", ErrStream, err)
		}
		at := now()
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(data)
			if string(data) == "[DONE]" {
				res.Done = true
				return res, nil
			}
			if perr := res.event(data, at); perr != nil {
				return res, perr
			}
		}
		if err == io.EOF {
			if res.Err != "" {
				return res, nil
			}
			return res, fmt.Errorf("%w: ended before [DONE] after %d chunks", ErrStream, len(res.Content))
		}
	}
}

func (res *StreamResult) event(data []byte, at time.Time) error {
	var c chunk
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%w: chunk %.80q: %v", ErrStream, data, err)
	}
	if c.Error != nil {
		res.Err = c.Error.Message
		if res.Err == "" {
			res.Err = "unknown error"
		}
		return nil
	}
	text := false
	for _, ch := range c.Choices {
		if ch.Text != nil && *ch.Text != "" || ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" {
			text = true
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			res.FinishReason = *ch.FinishReason
			if res.First.IsZero() {
				res.First = at
			}
		}
	}
	if text {
		res.Content = append(res.Content, at)
		if res.First.IsZero() || len(res.Content) == 1 {
			res.First = at
		}
	}
	if c.Usage != nil {
		res.PromptTokens, res.CompletionTokens = c.Usage.PromptTokens, c.Usage.CompletionTokens
	}
	return nil
}
