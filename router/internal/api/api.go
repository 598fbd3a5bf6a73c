package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/engine/tokenizer"
	"github.com/duet-llm/duet/router/internal/chat"
	"github.com/duet-llm/duet/router/internal/gen"
)

// Errors New returns (wrapped with the detail).
var (
	ErrConfig = errors.New("api: invalid config")
)

// Generator runs one generation on the cluster (package dispatch
// implements it).
//
// Generate emits the tokens in order (Token.Index 0, 1, 2, ...), one call
// at a time and never after it returned (emit writes to the client's
// connection), and returns when the generation ended. The last token
// carries Finish; a token with Finish "stop" is a stop token and is not
// shown. When emit returns an error, Generate stops and returns it (or
// ctx's error). ctx is canceled when the client goes away or the API layer
// needs no more tokens (a stop string matched). See package gen for the
// errors it returns.
type Generator interface {
	Generate(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error)
}

// Readiness reports whether the cluster can serve a model now: a routable
// (prefill, decode) pair exists for it.
type Readiness interface {
	Ready(model string) bool
}

// Model is a model the router serves.
type Model struct {
	// ID is the name clients put in "model".
	ID string
	// Tokenizer is the model's tokenizer (tokenizer.FromGGUF).
	Tokenizer *tokenizer.Tokenizer
	// ContextLength is the model's context in tokens: prompt plus
	// completion never exceed it.
	ContextLength int
	// ChatTemplate is the Jinja source of the chat template; "" means the
	// tokenizer's (tokenizer.chat_template). Package chat recognizes its
	// family.
	ChatTemplate string
	// OwnedBy is shown in /v1/models ("duet" when empty).
	OwnedBy string
}

// Config configures the HTTP layer. Start from DefaultConfig.
type Config struct {
	// Models are the models served, by ID.
	Models []Model
	// APIKeys, when not empty, are the accepted keys: every /v1 request
	// must carry "Authorization: Bearer <key>" with one of them. /healthz
	// and /readyz never need a key.
	APIKeys []string
	// MaxBodyBytes bounds a request body (413 above it).
	MaxBodyBytes int64
	// MaxConcurrent bounds the generations running at once.
	MaxConcurrent int
	// MaxQueue bounds the requests waiting for a generation slot; a request
	// that finds the queue full gets 429 at once. 0: no queue.
	MaxQueue int
	// QueueTimeout bounds how long a request waits, in the queue and then
	// retrying while the cluster answers gen.ErrOverloaded.
	QueueTimeout time.Duration
	// RetryAfter is what 429 and 503 answers put in Retry-After (rounded up
	// to whole seconds).
	RetryAfter time.Duration
	// OverloadBackoff is the first wait after gen.ErrOverloaded; it doubles
	// up to 1 s between retries.
	OverloadBackoff time.Duration
	// WriteTimeout bounds each write of a streamed chunk, so a client that
	// stops reading cannot hold a generation slot forever. 0: no bound.
	WriteTimeout time.Duration
	// Observer, when set, is told how each completion request went
	// (metrics, the dashboard).
	Observer Observer
}

// DefaultConfig returns the defaults (no models, no API keys).
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:    4 << 20,
		MaxConcurrent:   256,
		MaxQueue:        1024,
		QueueTimeout:    30 * time.Second,
		RetryAfter:      time.Second,
		OverloadBackoff: 50 * time.Millisecond,
		WriteTimeout:    30 * time.Second,
	}
}

// AddFlags registers the limits (not the models or the keys) on fs, with
// the prefix "http-".
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.MaxBodyBytes, "http-max-body-bytes", c.MaxBodyBytes, "largest request body accepted (413 above)")
	fs.IntVar(&c.MaxConcurrent, "http-max-concurrent", c.MaxConcurrent, "generations running at once")
	fs.IntVar(&c.MaxQueue, "http-max-queue", c.MaxQueue, "requests waiting for a generation slot (429 beyond)")
	fs.DurationVar(&c.QueueTimeout, "http-queue-timeout", c.QueueTimeout, "longest wait for a slot or for cluster capacity")
	fs.DurationVar(&c.RetryAfter, "http-retry-after", c.RetryAfter, "Retry-After sent with 429 and 503")
	fs.DurationVar(&c.OverloadBackoff, "http-overload-backoff", c.OverloadBackoff, "first wait before retrying an overloaded cluster")
	fs.DurationVar(&c.WriteTimeout, "http-write-timeout", c.WriteTimeout, "longest time to write one streamed chunk (0: none)")
}

// Validate checks the config.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1:
		return fmt.Errorf("%w: max body bytes %d < 1", ErrConfig, c.MaxBodyBytes)
	case c.MaxConcurrent < 1:
		return fmt.Errorf("%w: max concurrent %d < 1", ErrConfig, c.MaxConcurrent)
	case c.MaxQueue < 0:
		return fmt.Errorf("%w: max queue %d < 0", ErrConfig, c.MaxQueue)
	case c.QueueTimeout < 0 || c.RetryAfter < 0 || c.OverloadBackoff < 0 || c.WriteTimeout < 0:
		return fmt.Errorf("%w: negative duration", ErrConfig)
	case c.MaxQueue > 0 && c.QueueTimeout == 0:
		return fmt.Errorf("%w: a queue needs a queue timeout", ErrConfig)
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		switch {
		case m.ID == "":
			return fmt.Errorf("%w: model %d has no id", ErrConfig, i)
		case seen[m.ID]:
			return fmt.Errorf("%w: model %q configured twice", ErrConfig, m.ID)
		case m.Tokenizer == nil:
			return fmt.Errorf("%w: model %q has no tokenizer", ErrConfig, m.ID)
		case m.ContextLength < 2:
			return fmt.Errorf("%w: model %q context length %d < 2", ErrConfig, m.ID, m.ContextLength)
		}
		seen[m.ID] = true
	}
	for i, k := range c.APIKeys {
		if k == "" {
			return fmt.Errorf("%w: API key %d is empty", ErrConfig, i)
		}
	}
	return nil
}

// model is a served model with what the handlers derive from it once.
type model struct {
	Model
	tpl     chat.Template
	eog     []int32
	created int64
}

// API is the router's OpenAI-compatible HTTP layer. It starts no goroutine
// of its own: its handlers run on the http.Server's.
type API struct {
	cfg     Config
	gen     Generator
	ready   Readiness
	lg      *zap.Logger
	models  map[string]*model
	order   []*model // configured order, for /v1/models
	keys    [][32]byte
	adm     *admission
	handler http.Handler
}

// New builds the API. ready may be nil (every model counts as ready); lg
// may be nil (no logs). New does no I/O.
func New(cfg Config, g Generator, ready Readiness, lg *zap.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if g == nil {
		return nil, fmt.Errorf("%w: no generator", ErrConfig)
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	a := &API{cfg: cfg, gen: g, ready: ready, lg: lg, models: map[string]*model{}}
	now := time.Now().Unix()
	for _, m := range cfg.Models {
		src := m.ChatTemplate
		if src == "" {
			src = m.Tokenizer.ChatTemplate()
		}
		var sp chat.Specials
		if id, ok := m.Tokenizer.BOS(); ok {
			sp.BOS = m.Tokenizer.TokenText(id)
		}
		if id, ok := m.Tokenizer.EOS(); ok {
			sp.EOS = m.Tokenizer.TokenText(id)
		}
		if m.OwnedBy == "" {
			m.OwnedBy = "duet"
		}
		mm := &model{Model: m, tpl: chat.Detect(src, sp), eog: m.Tokenizer.EndOfGeneration(), created: now}
		a.models[m.ID] = mm
		a.order = append(a.order, mm)
	}
	for _, k := range cfg.APIKeys {
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	a.adm = newAdmission(cfg.MaxConcurrent, cfg.MaxQueue, cfg.QueueTimeout)
	a.handler = http.HandlerFunc(a.serve)
	return a, nil
}

// Handler returns the HTTP handler serving every endpoint.
func (a *API) Handler() http.Handler { return a.handler }

// ModelInfo describes a served model as the API sees it (for main to log).
type ModelInfo struct {
	ID            string
	ContextLength int
	ChatTemplate  string // the recognized chat template family (package chat)
	Vocab         int
}

// Models describes the served models, in configured order.
func (a *API) Models() []ModelInfo {
	out := make([]ModelInfo, len(a.order))
	for i, m := range a.order {
		out[i] = ModelInfo{ID: m.ID, ContextLength: m.ContextLength, ChatTemplate: m.tpl.Family().String(), Vocab: m.Tokenizer.VocabSize()}
	}
	return out
}

// route is one path's handlers by method.
type route struct {
	methods  map[string]handlerFunc
	auth     bool
	probe    bool   // logged at debug, not info
	endpoint string // completion endpoints: told to the Observer
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, rl *reqLog)

func (a *API) lookup(path string) (route, bool) {
	switch path {
	case "/v1/completions":
		return route{methods: map[string]handlerFunc{http.MethodPost: a.completions}, auth: true, endpoint: EndpointCompletions}, true
	case "/v1/chat/completions":
		return route{methods: map[string]handlerFunc{http.MethodPost: a.chatCompletions}, auth: true, endpoint: EndpointChat}, true
	case "/v1/models":
		return route{methods: map[string]handlerFunc{http.MethodGet: a.listModels, http.MethodHead: a.listModels}, auth: true}, true
	case "/healthz":
		return route{methods: map[string]handlerFunc{http.MethodGet: a.healthz, http.MethodHead: a.healthz}, probe: true}, true
	case "/readyz":
		return route{methods: map[string]handlerFunc{http.MethodGet: a.readyz, http.MethodHead: a.readyz}, probe: true}, true
	}
	if rest, ok := strings.CutPrefix(path, "/v1/models/"); ok && rest != "" {
		return route{methods: map[string]handlerFunc{http.MethodGet: a.getModel, http.MethodHead: a.getModel}, auth: true}, true
	}
	return route{}, false
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", id)
	sw := &statusWriter{ResponseWriter: w}
	rl := &reqLog{id: id, arrived: start}
	rt, ok := a.lookup(r.URL.Path)
	switch h := rt.methods[r.Method]; {
	case !ok:
		writeError(sw, &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: codeUnknownURL,
			message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)})
	case h == nil:
		allow := make([]string, 0, len(rt.methods))
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			if rt.methods[m] != nil {
				allow = append(allow, m)
			}
		}
		sw.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(sw, &apiError{status: http.StatusMethodNotAllowed, typ: typeInvalidRequest, code: codeMethodNotAllow,
			message: fmt.Sprintf("Method %s is not allowed for %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
	case rt.auth && !a.authorized(r):
		sw.Header().Set("WWW-Authenticate", "Bearer")
		msg := "Incorrect API key provided."
		if r.Header.Get("Authorization") == "" {
			msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
		}
		writeError(sw, &apiError{status: http.StatusUnauthorized, typ: typeInvalidRequest, code: codeInvalidAPIKey, message: msg})
	default:
		h(sw, r, rl)
	}
	d := time.Since(start)
	a.logRequest(r, sw, rl, rt.probe, d)
	if rt.endpoint != "" && r.Method == http.MethodPost {
		a.observe(rt.endpoint, sw, rl, d)
	}
}

// authorized checks the bearer key in constant time (hashes of equal
// length are compared, and every key is compared).
func (a *API) authorized(r *http.Request) bool {
	if len(a.keys) == 0 {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	match := 0
	for i := range a.keys {
		match |= subtle.ConstantTimeCompare(sum[:], a.keys[i][:])
	}
	return match == 1
}

// requestID returns the client's id when it is sane (1 to 64 characters of
// [A-Za-z0-9._-]), else a new random one.
func requestID(h string) string {
	if len(h) > 0 && len(h) <= 64 && strings.Trim(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == "" {
		return h
	}
	return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
}

// statusWriter remembers the status for the log line and exposes the
// underlying writer to http.ResponseController (Flush, write deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// reqLog collects what the one log line of a request says.
type reqLog struct {
	id               string
	model            string
	stream           bool
	promptTokens     int
	completionTokens int
	finish           string
	seed             uint64
	hasSeed          bool
	queueWait        time.Duration
	ttft             time.Duration
	retries          int
	clientGone       bool
	streamFailed     bool // a started stream ended with an error event
	err              error
	timings          map[string]time.Duration
	arrived          time.Time // when the request came in
	firstAt          time.Time // when its first token came (zero: none)
	lastAt           time.Time // when its latest token came
}

// statusClientClosed is logged (never sent) when the client went away.
const statusClientClosed = 499

func (a *API) logRequest(r *http.Request, sw *statusWriter, rl *reqLog, probe bool, d time.Duration) {
	status := sw.status
	if rl.clientGone {
		status = statusClientClosed
	}
	level := zap.InfoLevel
	if probe {
		level = zap.DebugLevel
	}
	ce := a.lg.Check(level, "http request")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("request-id", rl.id),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Int("status", status),
		zap.Duration("duration", d),
	}
	if rl.model != "" {
		fields = append(fields, zap.String("model", rl.model), zap.Bool("stream", rl.stream),
			zap.Int("prompt-tokens", rl.promptTokens), zap.Int("completion-tokens", rl.completionTokens))
	}
	if rl.finish != "" {
		fields = append(fields, zap.String("finish-reason", rl.finish))
	}
	if rl.hasSeed {
		fields = append(fields, zap.Uint64("seed", rl.seed))
	}
	if rl.queueWait > 0 {
		fields = append(fields, zap.Duration("queue-wait", rl.queueWait))
	}
	if rl.ttft > 0 {
		fields = append(fields, zap.Duration("ttft", rl.ttft))
	}
	if rl.retries > 0 {
		fields = append(fields, zap.Int("overload-retries", rl.retries))
	}
	for k, v := range rl.timings {
		fields = append(fields, zap.Duration("time-"+k, v))
	}
	if rl.err != nil {
		fields = append(fields, zap.Error(rl.err))
	}
	ce.Write(fields...)
}

// healthz answers 200 while the process is up.
func (a *API) healthz(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when at least one served model has a routable node
// pair, 503 otherwise; the body tells each model's readiness.
func (a *API) readyz(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	models := make(map[string]bool, len(a.order))
	any := false
	for _, m := range a.order {
		ok := a.ready == nil || a.ready.Ready(m.ID)
		models[m.ID] = ok
		any = any || ok
	}
	status, word := http.StatusOK, "ready"
	if !any {
		status, word = http.StatusServiceUnavailable, "unavailable"
	}
	writeJSON(w, status, struct {
		Status string          `json:"status"`
		Models map[string]bool `json:"models"`
	}{word, models})
}

type modelObject struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
}

func (m *model) object() modelObject {
	return modelObject{ID: m.ID, Object: "model", Created: m.created, OwnedBy: m.OwnedBy, MaxModelLen: m.ContextLength}
}

// listModels answers GET /v1/models: every configured model (whether or
// not a node serves it right now: /readyz says that).
func (a *API) listModels(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	data := make([]modelObject, 0, len(a.order))
	for _, m := range a.order {
		data = append(data, m.object())
	}
	writeJSON(w, http.StatusOK, struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{"list", data})
}

// getModel answers GET /v1/models/{id}.
func (a *API) getModel(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	m, err := a.model(id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m.object())
}

func (a *API) model(id string) (*model, *apiError) {
	m, ok := a.models[id]
	if !ok {
		return nil, &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, param: "model", code: codeModelNotFound,
			message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", id)}
	}
	return m, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := jsonMarshal(v)
	if err != nil { // only our own types are written: a bug
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeServer, message: "internal error encoding the response"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
