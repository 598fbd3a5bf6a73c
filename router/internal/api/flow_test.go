package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/duet-llm/duet/router/internal/gen"
)

// waitFor polls cond; the deadline only guards against a hang (no speed is
// asserted).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAdmission(t *testing.T) {
	m := storiesModel(t, "s", 0)
	release := make(chan struct{})
	var mu sync.Mutex
	started := 0
	g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
		mu.Lock()
		started++
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return gen.Result{}, ctx.Err()
		}
		return gen.Result{}, emit(gen.Token{ID: 400, Finish: gen.FinishLength})
	})
	cfg := testConfig(m)
	cfg.MaxConcurrent, cfg.MaxQueue, cfg.RetryAfter = 1, 1, 2500*time.Millisecond
	a := newAPI(t, cfg, g, nil)
	srv := server(t, a)

	body := `{"model":"s","prompt":"x","max_tokens":1}`
	results := make(chan reply, 2)
	go func() { results <- post(t, srv, "/v1/completions", body) }()
	waitFor(t, "the first generation", func() bool { mu.Lock(); defer mu.Unlock(); return started == 1 })
	go func() { results <- post(t, srv, "/v1/completions", body) }()
	waitFor(t, "the second request to queue", func() bool { return a.adm.waiting() == 1 })

	r := post(t, srv, "/v1/completions", body)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
		t.Errorf("third request: %d Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if o := errorShape(t, r.body); strOrNil(o.Code) != codeRateLimit {
		t.Errorf("429 code %s", strOrNil(o.Code))
	}
	close(release)
	for i := 0; i < 2; i++ {
		if r := <-results; r.status != 200 {
			t.Errorf("queued request %d: %d %s", i, r.status, r.body)
		}
	}
	if a.adm.running() != 0 || a.adm.waiting() != 0 {
		t.Errorf("%d running, %d waiting after all finished", a.adm.running(), a.adm.waiting())
	}
}

// serveRecorded runs one request through the handler without a socket
// (inside a synctest bubble, where time is virtual).
func serveRecorded(a *API, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	a.Handler().ServeHTTP(rec, req)
	return rec
}

func TestQueueTimeout(t *testing.T) {
	m := storiesModel(t, "s", 0)
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
			<-block
			return gen.Result{}, emit(gen.Token{ID: 400, Finish: gen.FinishLength})
		})
		cfg := testConfig(m)
		cfg.MaxConcurrent, cfg.MaxQueue, cfg.QueueTimeout = 1, 4, 5*time.Second
		a := newAPI(t, cfg, g, nil)
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- serveRecorded(a, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":1}`) }()
		synctest.Wait()
		start := time.Now()
		rec := serveRecorded(a, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":1}`)
		if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("queued past the timeout: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		if waited := time.Since(start); waited != 5*time.Second {
			t.Errorf("waited %v (virtual time), want the queue timeout", waited)
		}
		close(block)
		if rec := <-done; rec.Code != 200 {
			t.Errorf("first request %d", rec.Code)
		}
	})
}

func TestGeneratorErrors(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	ids := tok.Encode(story, false)
	boom := errors.New("decode node died")
	tests := []struct {
		name     string
		overload int   // ErrOverloaded this many times first
		err      error // then this error...
		after    int   // ...after this many tokens
		stream   bool
		stop     string
		status   int
		code     string
		retries  bool
		waited   time.Duration
	}{
		{name: "overloaded then served", overload: 3, after: -1, status: 200, retries: true, waited: 50*time.Millisecond + 100*time.Millisecond + 200*time.Millisecond},
		{name: "overloaded past the queue timeout", overload: 1000, after: -1, status: 503, code: codeOverloaded, waited: 10 * time.Second},
		{name: "unavailable", err: fmt.Errorf("pick: %w", gen.ErrUnavailable), status: 503, code: codeUnavailable},
		{name: "failure before any token", err: boom, status: 502, code: codeUpstream},
		{name: "deadline", err: context.DeadlineExceeded, status: 504, code: codeTimeout},
		{name: "failure mid-way, not streamed", err: &gen.StreamError{Tokens: 3, Err: boom}, after: 3, status: 502, code: codeUpstream},
		{name: "failure mid-way, held back by a stop string", err: &gen.StreamError{Tokens: 3, Err: boom}, after: 3, stream: true, stop: `" Once upon a time and"`, status: 502, code: codeUpstream},
		// Not retried: tokens were generated (the answer still says why).
		{name: "overloaded after tokens", err: gen.ErrOverloaded, after: 2, status: 503, code: codeOverloaded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
					calls++
					if calls <= tc.overload {
						return gen.Result{}, gen.ErrOverloaded
					}
					for i, id := range ids {
						if i == tc.after {
							return gen.Result{}, tc.err
						}
						if err := emit(gen.Token{ID: id, Index: i}); err != nil {
							return gen.Result{}, err
						}
					}
					if tc.err != nil && tc.after <= 0 {
						return gen.Result{}, tc.err
					}
					return gen.Result{FinishReason: gen.FinishStop}, nil
				})
				cfg := testConfig(m)
				cfg.QueueTimeout = 10 * time.Second
				a := newAPI(t, cfg, g, nil)
				stop := ""
				if tc.stop != "" {
					stop = `,"stop":` + tc.stop
				}
				start := time.Now()
				rec := serveRecorded(a, "/v1/completions", fmt.Sprintf(`{"model":"s","prompt":"x","max_tokens":100,"stream":%v%s}`, tc.stream, stop))
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				if waited := time.Since(start); waited != tc.waited {
					t.Errorf("took %v of virtual time, want %v", waited, tc.waited)
				}
				if tc.status == 200 {
					return
				}
				o := errorShape(t, rec.Body.Bytes())
				if strOrNil(o.Code) != tc.code {
					t.Errorf("code %s, want %s", strOrNil(o.Code), tc.code)
				}
				if strings.Contains(o.Message, boom.Error()) {
					t.Errorf("internal error leaked: %q", o.Message)
				}
				if (tc.status == 503) != (rec.Header().Get("Retry-After") == "1") {
					t.Errorf("Retry-After %q on %d", rec.Header().Get("Retry-After"), tc.status)
				}
				if a.adm.running() != 0 {
					t.Error("slot not released")
				}
			})
		})
	}
}

func TestStreamErrorEvent(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tok := m.Tokenizer
	ids := tok.Encode(story, false)
	for _, ep := range []string{"/v1/completions", "/v1/chat/completions"} {
		g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
			for i, id := range ids[:3] {
				if err := emit(gen.Token{ID: id, Index: i}); err != nil {
					return gen.Result{}, err
				}
			}
			return gen.Result{}, &gen.StreamError{Tokens: 3, Err: errors.New("decode node 10.0.0.7 died")}
		})
		srv := server(t, newAPI(t, testConfig(m), g, nil))
		body := `{"model":"s","prompt":"x","stream":true,"max_tokens":50}`
		if strings.Contains(ep, "chat") {
			body = `{"model":"s","messages":[{"role":"user","content":"x"}],"stream":true}`
		}
		r := post(t, srv, ep, body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", ep, r.status, r.body)
		}
		evs := events(t, r.body)
		last := evs[len(evs)-1]
		o := errorShape(t, last)
		if o.Type != typeServer || strings.Contains(o.Message, "10.0.0.7") {
			t.Errorf("%s: error event %s", ep, last)
		}
		texts := 0
		for _, ev := range evs[:len(evs)-1] {
			var c wireResponse
			strict(t, ev, &c)
			if c.Choices[0].FinishReason != nil {
				t.Errorf("%s: a finish_reason before the error: %s", ep, ev)
			}
			texts++
		}
		if want := map[bool]int{true: 4, false: 3}[strings.Contains(ep, "chat")]; texts != want {
			t.Errorf("%s: %d chunks before the error, want %d", ep, texts, want)
		}
	}
}

func TestClientDisconnect(t *testing.T) {
	m := storiesModel(t, "s", 0)
	canceled := make(chan error, 1)
	g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
		if err := emit(gen.Token{ID: 400}); err != nil {
			canceled <- err
			return gen.Result{}, err
		}
		<-ctx.Done() // then wait for the client to go (a slow next token)
		canceled <- ctx.Err()
		return gen.Result{}, ctx.Err()
	})
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := testConfig(m)
	a, err := New(cfg, g, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	srv := server(t, a)
	for _, ep := range []string{"/v1/completions", "/v1/chat/completions"} {
		body := `{"model":"s","prompt":"x","stream":true,"max_tokens":1000}`
		if strings.Contains(ep, "chat") {
			body = `{"model":"s","messages":[{"role":"user","content":"x"}],"stream":true}`
		}
		req, _ := http.NewRequest("POST", srv.URL+ep, strings.NewReader(body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "data: {") {
			t.Fatalf("%s: first line %q %v", ep, line, err)
		}
		resp.Body.Close() // the client goes away mid-stream
		select {
		case err := <-canceled:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: generator saw %v, want context.Canceled", ep, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the generator's context was not canceled", ep)
		}
		waitFor(t, "the slot to be released", func() bool { return a.adm.running() == 0 })
	}
	waitFor(t, "the request logs", func() bool { return logs.FilterMessage("http request").Len() == 2 })
	for _, e := range logs.FilterMessage("http request").All() {
		if e.ContextMap()["status"] != int64(statusClientClosed) {
			t.Errorf("logged %v", e.ContextMap())
		}
	}
}

func TestRequestLog(t *testing.T) {
	m := storiesModel(t, "s", 0)
	core, logs := observer.New(zapcore.DebugLevel)
	a, err := New(testConfig(m), newScripted(m.Tokenizer), nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	srv := server(t, a)
	logs.TakeAll() // the model lines from New
	post(t, srv, "/v1/completions", `{"model":"s","prompt":"Once","max_tokens":4,"seed":9}`, "X-Request-Id", "log-1")
	post(t, srv, "/v1/completions", `{"model":"nope","prompt":"Once"}`, "X-Request-Id", "log-2")
	do(t, srv, "GET", "/healthz", "")
	all := logs.TakeAll()
	if len(all) != 3 {
		t.Fatalf("%d log lines, want one per request: %v", len(all), all)
	}
	ok := all[0].ContextMap()
	for k, want := range map[string]any{"request-id": "log-1", "status": int64(200), "model": "s", "completion-tokens": int64(4),
		"finish-reason": "length", "seed": uint64(9), "path": "/v1/completions", "method": "POST", "stream": false} {
		if ok[k] != want {
			t.Errorf("%s = %v (%T), want %v", k, ok[k], ok[k], want)
		}
	}
	for _, k := range []string{"duration", "prompt-tokens", "ttft"} {
		if _, has := ok[k]; !has {
			t.Errorf("no %s in %v", k, ok)
		}
	}
	if all[0].Level != zapcore.InfoLevel || all[1].Level != zapcore.InfoLevel || all[2].Level != zapcore.DebugLevel {
		t.Errorf("levels %v %v %v", all[0].Level, all[1].Level, all[2].Level)
	}
	if bad := all[1].ContextMap(); bad["status"] != int64(404) || bad["error"] == nil || bad["request-id"] != "log-2" {
		t.Errorf("bad request logged %v", bad)
	}
}

func TestProtocolViolations(t *testing.T) {
	m := storiesModel(t, "s", 0)
	tests := []struct {
		name   string
		tokens []gen.Token
		status int
		text   string
	}{
		// An out-of-order token fails the generation (nothing was sent).
		{"gap", []gen.Token{{ID: 400, Index: 0}, {ID: 400, Index: 2}}, 502, ""},
		// Tokens past the finish are dropped; the completion stands.
		{"after the end", []gen.Token{{ID: 403, Index: 0, Finish: gen.FinishLength}, {ID: 400, Index: 1}}, 200, " Once"},
		// More tokens than max_tokens: the API ends it with "length".
		{"past max_tokens", []gen.Token{{ID: 403, Index: 0}, {ID: 407, Index: 1}, {ID: 261, Index: 2}, {ID: 378, Index: 3}}, 200, " Once upon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
				for _, tok := range tc.tokens {
					if err := emit(tok); err != nil {
						return gen.Result{}, err
					}
				}
				return gen.Result{}, nil
			})
			srv := server(t, newAPI(t, testConfig(m), g, nil))
			r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"x","max_tokens":2}`)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 200 {
				var resp wireResponse
				strict(t, r.body, &resp)
				if *resp.Choices[0].Text != tc.text || strOrNil(resp.Choices[0].FinishReason) != "length" {
					t.Errorf("text %q finish %s", *resp.Choices[0].Text, strOrNil(resp.Choices[0].FinishReason))
				}
			}
		})
	}
}

// TestStalledClient checks that a client that stops reading a stream (but
// keeps the connection open) cannot hold a generation slot: once the socket
// buffers are full, a write misses its deadline, the generation is stopped
// and the slot is released.
func TestStalledClient(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the loopback socket buffers")
	}
	m := storiesModel(t, "s", 0)
	m.ContextLength = 1 << 24
	stopped := make(chan error, 1)
	g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
		for i := 0; ; i++ {
			if err := emit(gen.Token{ID: 400, Index: i}); err != nil {
				stopped <- err
				return gen.Result{}, err
			}
		}
	})
	cfg := testConfig(m)
	cfg.WriteTimeout = 100 * time.Millisecond
	a := newAPI(t, cfg, g, nil)
	srv := server(t, a)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/completions", strings.NewReader(`{"model":"s","prompt":"x","max_tokens":16000000,"stream":true}`))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q %v", line, err)
	}
	// Stop reading, keep the connection.
	select {
	case err := <-stopped:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the generation stopped with %v, want a write deadline error", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a stalled client held the generation")
	}
	waitFor(t, "the slot to be released", func() bool { return a.adm.running() == 0 })
}
