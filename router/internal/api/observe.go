package api

import (
	"errors"
	"net/http"
	"time"
)

// Observer is told how each completion request went, for metrics and the
// dashboard. Its methods run on the request's goroutine, in order, and must
// not block.
type Observer interface {
	// InterToken is called for every token after a request's first, with
	// the time since the token before it arrived from the Generator.
	InterToken(gap time.Duration)
	// Done is called once per completion request (POST /v1/completions or
	// /v1/chat/completions) when its answer is over, whatever the outcome.
	Done(RequestStats)
}

// Outcomes of a completion request, as RequestStats.Outcome reports them.
const (
	OutcomeOK          = "ok"           // answered in full (200)
	OutcomeRejected    = "rejected"     // the request was invalid or unauthorized (4xx other than 429)
	OutcomeRateLimited = "rate_limited" // no generation slot within the queue limits (429)
	OutcomeOverloaded  = "overloaded"   // the cluster had no capacity (503 overloaded)
	OutcomeUnavailable = "unavailable"  // no node pair serves the model (503)
	OutcomeTimeout     = "timeout"      // a leg's deadline passed (504)
	OutcomeFailed      = "failed"       // a node failed (502, or an error event in a started stream)
	OutcomeCanceled    = "canceled"     // the client went away first
)

// Outcomes lists every outcome (metrics export each, zeros included).
var Outcomes = []string{OutcomeOK, OutcomeRejected, OutcomeRateLimited, OutcomeOverloaded,
	OutcomeUnavailable, OutcomeTimeout, OutcomeFailed, OutcomeCanceled}

// Endpoints of completion requests, as RequestStats.Endpoint reports them.
const (
	EndpointCompletions = "completions"
	EndpointChat        = "chat"
)

// RequestStats is what an Observer learns about one completion request.
type RequestStats struct {
	ID       string
	Endpoint string // EndpointCompletions or EndpointChat
	// Model is the served model the request named; "" when it named none
	// that is configured (the request was rejected).
	Model   string
	Outcome string // one of Outcomes
	Status  int    // the HTTP status (499: the client went away)
	Stream  bool

	PromptTokens     int
	CompletionTokens int
	// QueueWait is the time spent waiting for a generation slot.
	QueueWait time.Duration
	// TTFT is the time from the request's arrival to its first token; 0
	// when no token came.
	TTFT time.Duration
	// Duration is the time from the request's arrival to the end of its
	// answer.
	Duration time.Duration
	// Timings is the Generator's breakdown (gen.Result.Timings); nil when
	// the generation failed.
	Timings map[string]time.Duration
}

// observe tells the observer about a finished completion request.
func (a *API) observe(endpoint string, sw *statusWriter, rl *reqLog, d time.Duration) {
	if a.cfg.Observer == nil {
		return
	}
	st := RequestStats{ID: rl.id, Endpoint: endpoint, Model: rl.model, Status: sw.status, Stream: rl.stream,
		PromptTokens: rl.promptTokens, CompletionTokens: rl.completionTokens, QueueWait: rl.queueWait,
		Duration: d, Timings: rl.timings}
	if !rl.firstAt.IsZero() {
		st.TTFT = rl.firstAt.Sub(rl.arrived)
	}
	if rl.clientGone {
		st.Status = statusClientClosed
	}
	st.Outcome = outcome(st.Status, rl)
	a.cfg.Observer.Done(st)
}

// outcome classifies a completion request by how its answer ended.
func outcome(status int, rl *reqLog) string {
	switch {
	case rl.clientGone:
		return OutcomeCanceled
	case rl.streamFailed:
		return OutcomeFailed
	case status == http.StatusOK:
		return OutcomeOK
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status == http.StatusServiceUnavailable:
		var ae *apiError
		if errors.As(rl.err, &ae) && ae.code == codeOverloaded {
			return OutcomeOverloaded
		}
		return OutcomeUnavailable
	case status == http.StatusGatewayTimeout:
		return OutcomeTimeout
	case status >= 500:
		return OutcomeFailed
	}
	return OutcomeRejected
}

// Load returns the generations running and the requests waiting for a
// slot now.
func (a *API) Load() (running, queued int) { return a.adm.running(), a.adm.waiting() }
