package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tick is a clock that advances 10 ms per call.
func tick() func() time.Time {
	t := time.Unix(1000, 0)
	return func() time.Time { t = t.Add(10 * time.Millisecond); return t }
}

func TestParseStream(t *testing.T) {
	const (
		c1   = `data: {"choices":[{"index":0,"text":"Once","finish_reason":null}]}` + "\n\n"
		c2   = `data: {"choices":[{"index":0,"text":" upon","finish_reason":null}]}` + "\n\n"
		fin  = `data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}` + "\n\n"
		use  = `data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}` + "\n\n"
		done = "data: [DONE]\n\n"
	)
	tests := []struct {
		name    string
		in      string
		content int
		first   int // index of the event line (1-based clock tick) of the first token; 0: none
		usage   [2]int
		finish  string
		errMsg  string
		err     bool
	}{
		{"completion", c1 + c2 + fin + use + done, 2, 1, [2]int{5, 3}, "length", "", false},
		{"chat", `data: {"choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n" +
			`data: {"choices":[{"delta":{"content":"Hi"}}]}` + "\n\n" +
			`data: {"choices":[{"delta":{},"finish_reason":"stop"}]}` + "\n\n" + done, 1, 2, [2]int{}, "stop", "", false},
		{"crlf and no space", strings.ReplaceAll(c1+"data:[DONE]\n", "\n", "\r\n"), 1, 1, [2]int{}, "", "", false},
		{"comments and other fields", ": keep-alive\n\nevent: message\nid: 3\n" + c1 + done, 1, 1, [2]int{}, "", "", false},
		{"stop token only", fin + done, 0, 1, [2]int{}, "length", "", false},
		{"error event", c1 + `data: {"error":{"message":"decode node died","type":"server_error"}}` + "\n\n" + done, 1, 1, [2]int{}, "", "decode node died", false},
		{"error event then eof", c1 + `data: {"error":{"message":"x"}}` + "\n", 1, 1, [2]int{}, "", "x", false},
		{"no done", c1 + c2, 2, 1, [2]int{}, "", "", true},
		{"empty", "", 0, 0, [2]int{}, "", "", true},
		{"not json", "data: {oops\n\n", 0, 0, [2]int{}, "", "", true},
		{"json not an object", "data: [1,2]\n\n", 0, 0, [2]int{}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := tick()
			base := clock()
			res, err := ParseStream(strings.NewReader(tt.in), clock)
			if tt.err {
				if err == nil || !errors.Is(err, ErrStream) {
					t.Fatalf("err = %v, want ErrStream", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Content) != tt.content || res.Err != tt.errMsg || res.FinishReason != tt.finish ||
				res.PromptTokens != tt.usage[0] || res.CompletionTokens != tt.usage[1] {
				t.Fatalf("got %+v", res)
			}
			// Each line read is one tick; blank lines count as lines.
			if tt.first > 0 {
				lines := 0
				for i, ln := range strings.Split(strings.ReplaceAll(tt.in, "\r\n", "\n"), "\n") {
					if strings.HasPrefix(ln, "data:") {
						lines++
					}
					if lines == tt.first {
						want := base.Add(time.Duration(i+1) * 10 * time.Millisecond)
						if !res.First.Equal(want) {
							t.Fatalf("first token at %v, want %v", res.First.Sub(base), want.Sub(base))
						}
						break
					}
				}
			} else if !res.First.IsZero() {
				t.Fatal("a first token without any chunk")
			}
		})
	}
}

func TestParseStreamLongLine(t *testing.T) {
	in := "data: " + strings.Repeat("x", maxEvent+10) + "\n"
	if _, err := ParseStream(strings.NewReader(in), time.Now); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("err = %v, want a line-length error", err)
	}
}

// FuzzParseStream feeds arbitrary server bytes to the stream parser: it
// must return (a result or an error), never panic.
func FuzzParseStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"error\":{\"message\":\"m\"}}\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1}}\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ParseStream(bytes.NewReader(b), time.Now)
		if err == nil && !res.Done && res.Err == "" {
			t.Fatal("no error, no [DONE] and no error event")
		}
	})
}

// The client against a server that answers what a real one answers only
// when things go wrong (a full queue, a node lost mid-stream, a cut
// connection): these corners are hard to reach on demand with a real
// cluster, so an httptest server plays them.
func TestClientFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"429 with an OpenAI body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"The server is busy.","type":"rate_limit_error"}}`)
		}, "status 429: The server is busy."},
		{"502 with a plain body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "bad gateway")
		}, "status 502: bad gateway"},
		{"error event after a token", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"error\":{\"message\":\"lost the decode node\"}}\n\ndata: [DONE]\n\n")
		}, "error event: lost the decode node"},
		{"cut after a token", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "data: {\"choices\":[{\"text\":\"a\"}]}\n\n")
		}, "ended before [DONE]"},
		{"no token", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "data: [DONE]\n\n")
		}, "answer with no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := NewClient(Target{URL: srv.URL, API: Completions, Model: "m"})
			defer c.Close()
			s := c.Send(context.Background(), Request{ID: 1, PromptText: "hi", PromptTokens: 1, MaxTokens: 4})
			if !strings.Contains(s.Error, tt.want) {
				t.Fatalf("error %q, want it to contain %q", s.Error, tt.want)
			}
			if s.OK() || s.TTFTms != 0 {
				t.Fatalf("a failed request with latencies: %+v", s)
			}
		})
	}
}

func TestClientBody(t *testing.T) {
	tests := []struct {
		name   string
		target Target
		req    Request
		want   []string
		err    bool
	}{
		{"ids", Target{API: Completions, Model: "m"}, Request{PromptIDs: []int32{1, 2}, MaxTokens: 3},
			[]string{`"prompt":[1,2]`, `"max_tokens":3`, `"stream":true`, `"include_usage":true`, `"model":"m"`, `"temperature":0`}, false},
		{"text with ignore_eos", Target{API: Completions, Model: "m", IgnoreEOS: true, Temperature: 0.5}, Request{PromptText: "hi", MaxTokens: 3},
			[]string{`"prompt":"hi"`, `"ignore_eos":true`, `"temperature":0.5`}, false},
		{"chat", Target{API: Chat, Model: "m"}, Request{PromptText: "hi", MaxTokens: 3},
			[]string{`"messages":[{"content":"hi","role":"user"}]`}, false},
		{"chat refuses ids", Target{API: Chat, Model: "m"}, Request{PromptIDs: []int32{1}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewClient(tt.target).body(&tt.req)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Fatalf("body %s lacks %s", b, w)
				}
			}
		})
	}
}

func TestTargetValidate(t *testing.T) {
	good := Target{URL: "http://h:1", API: Completions, Model: "m"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Target{{URL: "h:1", API: Completions, Model: "m"}, {URL: "http://h", API: "x", Model: "m"}, {URL: "http://h", API: Chat}} {
		if err := bad.Validate(); !errors.Is(err, ErrBadTarget) {
			t.Fatalf("%+v: err = %v", bad, err)
		}
	}
	for in, want := range map[string]string{"http://h:1": "http://h:1/v1/completions", "http://h:1/v1/": "http://h:1/v1/completions", "http://h/": "http://h/v1/completions"} {
		tg := Target{URL: in, API: Completions}
		if got := tg.endpoint(); got != want {
			t.Fatalf("endpoint(%s) = %s, want %s", in, got, want)
		}
	}
}
