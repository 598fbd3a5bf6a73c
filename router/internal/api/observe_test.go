package api

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/duet-llm/duet/router/internal/gen"
)

// observed records what an Observer is told.
type observed struct {
	mu    sync.Mutex
	gaps  int
	stats []RequestStats
}

func (o *observed) InterToken(time.Duration) { o.mu.Lock(); o.gaps++; o.mu.Unlock() }
func (o *observed) Done(s RequestStats)      { o.mu.Lock(); o.stats = append(o.stats, s); o.mu.Unlock() }

func TestObserverOutcomes(t *testing.T) {
	m := storiesModel(t, "s", 0)
	ids := m.Tokenizer.Encode(story, false)
	boom := errors.New("node died")
	tests := []struct {
		name     string
		path     string
		body     string
		err      error // returned after `after` tokens (-1: none, all tokens)
		after    int
		status   int
		outcome  string
		endpoint string
		model    string
		tokens   int
	}{
		{"ok", "/v1/completions", `{"model":"s","prompt":"x","max_tokens":100}`, nil, -1, 200, OutcomeOK, EndpointCompletions, "s", len(ids)},
		{"ok chat stream", "/v1/chat/completions", `{"model":"s","messages":[{"role":"user","content":"x"}],"stream":true}`, nil, -1, 200, OutcomeOK, EndpointChat, "s", len(ids)},
		{"invalid body", "/v1/completions", `{"model":"s","prompt":`, nil, -1, 400, OutcomeRejected, EndpointCompletions, "", 0},
		{"unknown model", "/v1/completions", `{"model":"gpt-9","prompt":"x"}`, nil, -1, 404, OutcomeRejected, EndpointCompletions, "", 0},
		{"overloaded", "/v1/completions", `{"model":"s","prompt":"x"}`, gen.ErrOverloaded, 0, 503, OutcomeOverloaded, EndpointCompletions, "s", 0},
		{"unavailable", "/v1/completions", `{"model":"s","prompt":"x"}`, gen.ErrUnavailable, 0, 503, OutcomeUnavailable, EndpointCompletions, "s", 0},
		{"timeout", "/v1/completions", `{"model":"s","prompt":"x"}`, context.DeadlineExceeded, 0, 504, OutcomeTimeout, EndpointCompletions, "s", 0},
		{"failed", "/v1/completions", `{"model":"s","prompt":"x"}`, boom, 0, 502, OutcomeFailed, EndpointCompletions, "s", 0},
		{"failed mid-stream", "/v1/completions", `{"model":"s","prompt":"x","stream":true,"max_tokens":50}`, &gen.StreamError{Tokens: 3, Err: boom}, 3, 200, OutcomeFailed, EndpointCompletions, "s", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
					for i, id := range ids {
						if i == tc.after {
							return gen.Result{}, tc.err
						}
						time.Sleep(10 * time.Millisecond) // virtual: each token takes 10 ms
						if err := emit(gen.Token{ID: id, Index: i}); err != nil {
							return gen.Result{}, err
						}
					}
					return gen.Result{FinishReason: gen.FinishLength, Timings: map[string]time.Duration{"prefill-compute": time.Millisecond}}, nil
				})
				obs := &observed{}
				cfg := testConfig(m)
				cfg.QueueTimeout = 10 * time.Millisecond // overloaded: give up soon
				cfg.OverloadBackoff = 5 * time.Millisecond
				cfg.Observer = obs
				a := newAPI(t, cfg, g, nil)
				rec := serveRecorded(a, tc.path, tc.body)
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				if len(obs.stats) != 1 {
					t.Fatalf("%d Done calls, want 1", len(obs.stats))
				}
				s := obs.stats[0]
				if s.Outcome != tc.outcome || s.Endpoint != tc.endpoint || s.Model != tc.model || s.CompletionTokens != tc.tokens {
					t.Errorf("got %+v, want outcome %s endpoint %s model %q tokens %d", s, tc.outcome, tc.endpoint, tc.model, tc.tokens)
				}
				if tc.tokens > 0 {
					if s.TTFT != 10*time.Millisecond {
						t.Errorf("TTFT %v, want 10ms", s.TTFT)
					}
					if s.Duration < time.Duration(tc.tokens)*10*time.Millisecond {
						t.Errorf("duration %v for %d tokens", s.Duration, tc.tokens)
					}
					if obs.gaps != tc.tokens-1 {
						t.Errorf("%d inter-token gaps for %d tokens", obs.gaps, tc.tokens)
					}
				} else if s.TTFT != 0 || obs.gaps != 0 {
					t.Errorf("TTFT %v, %d gaps without tokens", s.TTFT, obs.gaps)
				}
				if tc.outcome == OutcomeOK && s.Timings["prefill-compute"] != time.Millisecond {
					t.Errorf("timings %v not passed on", s.Timings)
				}
			})
		})
	}
}

// TestObserverNotForOtherPaths: probes, model lists and unknown paths are
// not completion requests.
func TestObserverNotForOtherPaths(t *testing.T) {
	obs := &observed{}
	cfg := testConfig(storiesModel(t, "s", 0))
	cfg.Observer = obs
	a := newAPI(t, cfg, genFunc(func(context.Context, *gen.Request, func(gen.Token) error) (gen.Result, error) {
		return gen.Result{}, nil
	}), nil)
	for _, p := range []string{"/healthz", "/readyz", "/v1/models", "/nope"} {
		serveRecorded(a, p, "")
	}
	if len(obs.stats) != 0 {
		t.Errorf("observed %d requests: %v", len(obs.stats), obs.stats)
	}
	if r, q := a.Load(); r != 0 || q != 0 {
		t.Errorf("load %d running, %d queued", r, q)
	}
}
