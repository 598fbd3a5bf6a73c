package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/router/internal/chat"
)

// Limits of the request fields (OpenAI's where OpenAI has one).
const (
	maxCompletionLogprobs  = 5   // completions "logprobs"
	maxStopBytes           = 512 // per stop string: the Stopper's hold-back scan is quadratic in it
	defaultCompletionLimit = 16  // completions max_tokens default (OpenAI)
)

// endpoint says which API a request came through.
type endpoint uint8

const (
	epCompletions endpoint = iota
	epChat
)

// request is a parsed, type-checked request body. Values are checked
// against the model (context length, vocabulary) later, in prepare.
type request struct {
	ep           endpoint
	model        string
	stream       bool
	includeUsage bool
	maxTokens    int64 // 0: not given
	params       sample.Params
	stops        []string

	// completions
	promptText string
	promptIDs  []int32
	idsPrompt  bool

	// chat
	messages []chat.Message
}

// readBody reads the body within the size limit and checks the content type
// and the encoding.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &apiError{status: http.StatusUnsupportedMediaType, typ: typeInvalidRequest, code: codeContentType,
				message: fmt.Sprintf("Unsupported Content-Type %q: send the body as JSON with Content-Type: application/json.", ct)}
		}
	}
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: codeBodyTooLarge,
		message: fmt.Sprintf("The request body is larger than the limit of %d bytes.", a.cfg.MaxBodyBytes)}
	if r.ContentLength > a.cfg.MaxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, badRequest("", codeInvalidJSON, "Could not read the request body: %v", err)
	}
	if !utf8.Valid(body) {
		return nil, badRequest("", codeInvalidEncoding, "The request body is not valid UTF-8.")
	}
	return body, nil
}

// fields is a JSON object by key. Keys match exactly (OpenAI's are case
// sensitive; encoding/json's struct matching is not), and a key given as
// null counts as absent.
type fields map[string]json.RawMessage

func parseObject(body []byte, what string) (fields, *apiError) {
	var f fields
	if err := json.Unmarshal(body, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || len(bytes.TrimSpace(body)) == 0 {
			return nil, badRequest("", codeInvalidJSON, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
		}
		return nil, badRequest("", codeInvalidType, "The %s must be a JSON object, but got %s.", what, kindOf(bytes.TrimSpace(body)))
	}
	if f == nil { // the body was null
		return nil, badRequest("", codeInvalidType, "The %s must be a JSON object, but got null.", what)
	}
	return f, nil
}

// kindOf names the JSON type of a value, for error messages.
func kindOf(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(v, ".eE") {
		return "a decimal number"
	}
	return "an integer"
}

func invalidType(param, want string, got json.RawMessage) *apiError {
	return badRequest(param, codeInvalidType, "Invalid type for '%s': expected %s, but got %s instead.", param, want, kindOf(got))
}

// get returns the raw value of key, false when absent or null.
func (f fields) get(key string) (json.RawMessage, bool) {
	v, ok := f[key]
	if !ok {
		return nil, false
	}
	if t := bytes.TrimSpace(v); len(t) == 4 && string(t) == "null" {
		return nil, false
	}
	return v, true
}

func str(param string, v json.RawMessage) (string, *apiError) {
	var s string
	if v = bytes.TrimSpace(v); len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", invalidType(param, "a string", v)
	}
	return s, nil
}

func (f fields) str(key string) (string, bool, *apiError) {
	v, ok := f.get(key)
	if !ok {
		return "", false, nil
	}
	s, err := str(key, v)
	return s, err == nil, err
}

func (f fields) boolean(key string) (bool, bool, *apiError) {
	v, ok := f.get(key)
	if !ok {
		return false, false, nil
	}
	var b bool
	if json.Unmarshal(v, &b) != nil {
		return false, false, invalidType(key, "a boolean", v)
	}
	return b, true, nil
}

// integer parses an integer; a number too large for int64 is clamped (the
// caller's range check then names it), a decimal is a type error.
func integer(param string, v json.RawMessage) (int64, *apiError) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || !(t[0] == '-' || t[0] >= '0' && t[0] <= '9') || bytes.ContainsAny(t, ".eE") {
		return 0, invalidType(param, "an integer", v)
	}
	n, err := strconv.ParseInt(string(t), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			if t[0] == '-' {
				return math.MinInt64, nil
			}
			return math.MaxInt64, nil
		}
		return 0, invalidType(param, "an integer", v)
	}
	return n, nil
}

func (f fields) integer(key string) (int64, bool, *apiError) {
	v, ok := f.get(key)
	if !ok {
		return 0, false, nil
	}
	n, err := integer(key, v)
	return n, err == nil, err
}

func (f fields) number(key string) (float64, bool, *apiError) {
	v, ok := f.get(key)
	if !ok {
		return 0, false, nil
	}
	t := bytes.TrimSpace(v)
	if len(t) == 0 || !(t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		return 0, false, invalidType(key, "a number", v)
	}
	x, err := strconv.ParseFloat(string(t), 64)
	if err != nil { // out of float64 range
		return 0, false, badRequest(key, codeInvalidValue, "Invalid '%s': %s is out of range.", key, t)
	}
	return x, true, nil
}

// float32Of converts a parsed number; values beyond float32 become ±Inf,
// which every range check refuses.
func float32Of(x float64) float32 { return float32(x) }

// unsupportedFields refuses the OpenAI parameters duet does not implement,
// unless they hold their no-op value: silently ignoring them would return
// something other than what the client asked for.
func (f fields) unsupportedFields(ep endpoint) *apiError {
	if v, ok := f.get("n"); ok {
		if n, err := integer("n", v); err != nil {
			return err
		} else if n != 1 {
			return unsupported("n", "'n' must be 1: one choice is generated per request.")
		}
	}
	if ep == epCompletions {
		if v, ok := f.get("best_of"); ok {
			if n, err := integer("best_of", v); err != nil {
				return err
			} else if n != 1 {
				return unsupported("best_of", "'best_of' must be 1.")
			}
		}
		if b, _, err := f.boolean("echo"); err != nil {
			return err
		} else if b {
			return unsupported("echo", "'echo' is not supported.")
		}
		if s, _, err := f.str("suffix"); err != nil {
			return err
		} else if s != "" {
			return unsupported("suffix", "'suffix' is not supported.")
		}
	}
	if v, ok := f.get("logit_bias"); ok {
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return invalidType("logit_bias", "an object", v)
		}
		if len(m) > 0 {
			return unsupported("logit_bias", "'logit_bias' is not supported.")
		}
	}
	if ep == epChat {
		for _, k := range []string{"tools", "functions"} {
			if v, ok := f.get(k); ok {
				var arr []json.RawMessage
				if json.Unmarshal(v, &arr) != nil {
					return invalidType(k, "an array", v)
				}
				if len(arr) > 0 {
					return unsupported(k, "'%s' is not supported: this server does not call tools.", k)
				}
			}
		}
		for _, k := range []string{"tool_choice", "function_call"} {
			if v, ok := f.get(k); ok {
				if s, err := str(k, v); err != nil || s != "none" {
					return unsupported(k, "'%s' is not supported: this server does not call tools.", k)
				}
			}
		}
		if v, ok := f.get("response_format"); ok {
			var rf fields
			if json.Unmarshal(v, &rf) != nil || rf == nil {
				return invalidType("response_format", "an object", v)
			}
			if t, _, err := rf.str("type"); err != nil || t != "text" {
				return unsupported("response_format", "'response_format' other than {\"type\": \"text\"} is not supported.")
			}
		}
		if v, ok := f.get("modalities"); ok {
			var m []string
			if json.Unmarshal(v, &m) != nil {
				return invalidType("modalities", "an array of strings", v)
			}
			for _, s := range m {
				if s != "text" {
					return unsupported("modalities", "only the \"text\" modality is supported.")
				}
			}
		}
		if _, ok := f.get("audio"); ok {
			return unsupported("audio", "audio output is not supported.")
		}
	}
	return nil
}

// parseCommon reads what both endpoints share.
func parseCommon(f fields, ep endpoint) (*request, *apiError) {
	if err := f.unsupportedFields(ep); err != nil {
		return nil, err
	}
	req := &request{ep: ep, params: sample.DefaultParams()}
	var ok bool
	var err *apiError
	if req.model, ok, err = f.str("model"); err != nil {
		return nil, err
	} else if !ok {
		return nil, missing("model")
	}
	if req.stream, _, err = f.boolean("stream"); err != nil {
		return nil, err
	}
	if v, ok := f.get("stream_options"); ok {
		if !req.stream {
			return nil, badRequest("stream_options", codeInvalidValue, "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		var so fields
		if json.Unmarshal(v, &so) != nil || so == nil {
			return nil, invalidType("stream_options", "an object", v)
		}
		if req.includeUsage, _, err = so.boolean("include_usage"); err != nil {
			err.param, err.message = "stream_options.include_usage", "Invalid type for 'stream_options.include_usage': expected a boolean."
			return nil, err
		}
	}

	// max_completion_tokens is the newer name and wins when both are given.
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		n, ok, err := f.integer(k)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if n < 1 {
			return nil, badRequest(k, codeBelowMin, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", k, n)
		}
		req.maxTokens = n
	}

	p := &req.params
	floats := []struct {
		key string
		dst *float32
	}{
		{"temperature", &p.Temperature}, {"top_p", &p.TopP}, {"min_p", &p.MinP},
		{"presence_penalty", &p.PresencePenalty}, {"frequency_penalty", &p.FrequencyPenalty},
		{"repetition_penalty", &p.RepetitionPenalty},
	}
	for _, fl := range floats {
		if x, ok, err := f.number(fl.key); err != nil {
			return nil, err
		} else if ok {
			*fl.dst = float32Of(x)
		}
	}
	if k, ok, err := f.integer("top_k"); err != nil {
		return nil, err
	} else if ok {
		if k < -1 || k > math.MaxInt32 {
			return nil, badRequest("top_k", codeInvalidValue, "Invalid 'top_k': must be -1 or 0 (off) or a positive count, got %d.", k)
		}
		p.TopK = int(k)
	}
	if v, ok := f.get("seed"); ok {
		seed, err := parseSeed(v)
		if err != nil {
			return nil, err
		}
		p.Seed = &seed
	}
	if v, ok := f.get("stop"); ok {
		stops, err := parseStop(v)
		if err != nil {
			return nil, err
		}
		req.stops = stops
	}
	return req, nil
}

// parseSeed takes an int64 (OpenAI) or a uint64.
func parseSeed(v json.RawMessage) (uint64, *apiError) {
	t := bytes.TrimSpace(v)
	if n, err := strconv.ParseInt(string(t), 10, 64); err == nil {
		return uint64(n), nil
	}
	if n, err := strconv.ParseUint(string(t), 10, 64); err == nil {
		return n, nil
	}
	if _, err := integer("seed", v); err != nil {
		return 0, err
	}
	return 0, badRequest("seed", codeInvalidValue, "Invalid 'seed': %s is out of the 64-bit range.", t)
}

// parseStop takes a string or an array of up to 4 strings.
func parseStop(v json.RawMessage) ([]string, *apiError) {
	var stops []string
	if s, err := str("stop", v); err == nil {
		stops = []string{s}
	} else if json.Unmarshal(v, &stops) != nil {
		return nil, invalidType("stop", "a string or an array of strings", v)
	}
	if len(stops) > sample.MaxStops {
		return nil, badRequest("stop", codeInvalidValue, "Invalid 'stop': at most %d stop sequences are allowed, got %d.", sample.MaxStops, len(stops))
	}
	for i, s := range stops {
		if s == "" {
			return nil, badRequest("stop", codeInvalidValue, "Invalid 'stop': stop sequence %d is empty.", i)
		}
		if len(s) > maxStopBytes {
			return nil, badRequest("stop", codeInvalidValue, "Invalid 'stop': stop sequence %d is %d bytes long; the limit is %d.", i, len(s), maxStopBytes)
		}
	}
	return stops, nil
}

// parseCompletion reads a /v1/completions body.
func parseCompletion(body []byte) (*request, *apiError) {
	f, err := parseObject(body, "request body")
	if err != nil {
		return nil, err
	}
	req, err := parseCommon(f, epCompletions)
	if err != nil {
		return nil, err
	}
	if n, ok, err := f.integer("logprobs"); err != nil {
		return nil, err
	} else if ok {
		if n < 0 || n > maxCompletionLogprobs {
			return nil, badRequest("logprobs", codeInvalidValue, "Invalid 'logprobs': must be between 0 and %d, got %d.", maxCompletionLogprobs, n)
		}
		req.params.Logprobs, req.params.TopLogprobs = true, int(n)
	}
	v, ok := f.get("prompt")
	if !ok {
		return nil, missing("prompt")
	}
	if err := req.parsePrompt(v); err != nil {
		return nil, err
	}
	return req, nil
}

// parsePrompt takes a string, an array of one string, an array of token
// ids, or an array of one array of token ids.
func (req *request) parsePrompt(v json.RawMessage) *apiError {
	const param = "prompt"
	empty := badRequest(param, codeInvalidValue, "Invalid 'prompt': the prompt is empty.")
	if s, err := str(param, v); err == nil {
		if s == "" {
			return empty
		}
		req.promptText = s
		return nil
	}
	var arr []json.RawMessage
	if json.Unmarshal(v, &arr) != nil {
		return invalidType(param, "a string, an array of strings or an array of token ids", v)
	}
	if len(arr) == 0 {
		return empty
	}
	switch first := bytes.TrimSpace(arr[0]); first[0] {
	case '"', '[':
		if len(arr) > 1 {
			return badRequest(param, codeUnsupportedVal, "Invalid 'prompt': a batch of %d prompts is not supported; send one prompt per request.", len(arr))
		}
		if first[0] == '"' {
			return req.parsePrompt(first) // one string
		}
		var inner []json.RawMessage
		if json.Unmarshal(arr[0], &inner) != nil {
			return invalidType(param, "an array of token ids", arr[0])
		}
		if len(inner) == 0 {
			return empty
		}
		arr = inner
	}
	ids := make([]int32, len(arr))
	for i, e := range arr {
		n, err := integer(param, e)
		if err != nil {
			return badRequest(param, codeInvalidType, "Invalid 'prompt': element %d is %s; expected a token id.", i, kindOf(e))
		}
		if n < 0 || n > math.MaxInt32 {
			return badRequest(param, codeInvalidValue, "Invalid 'prompt': token id %d at position %d is out of range.", n, i)
		}
		ids[i] = int32(n)
	}
	req.promptIDs, req.idsPrompt = ids, true
	return nil
}

// parseChat reads a /v1/chat/completions body.
func parseChat(body []byte) (*request, *apiError) {
	f, err := parseObject(body, "request body")
	if err != nil {
		return nil, err
	}
	req, err := parseCommon(f, epChat)
	if err != nil {
		return nil, err
	}
	if req.params.Logprobs, _, err = f.boolean("logprobs"); err != nil {
		return nil, err
	}
	if n, ok, err := f.integer("top_logprobs"); err != nil {
		return nil, err
	} else if ok {
		if n < 0 || n > sample.MaxTopLogprobs {
			return nil, badRequest("top_logprobs", codeInvalidValue, "Invalid 'top_logprobs': must be between 0 and %d, got %d.", sample.MaxTopLogprobs, n)
		}
		req.params.TopLogprobs = int(n)
	}
	v, ok := f.get("messages")
	if !ok {
		return nil, missing("messages")
	}
	var arr []json.RawMessage
	if json.Unmarshal(v, &arr) != nil {
		return nil, invalidType("messages", "an array", v)
	}
	if len(arr) == 0 {
		return nil, badRequest("messages", codeEmptyArray, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	req.messages = make([]chat.Message, len(arr))
	for i, raw := range arr {
		m, err := parseMessage(i, raw)
		if err != nil {
			return nil, err
		}
		req.messages[i] = m
	}
	return req, nil
}

func parseMessage(i int, raw json.RawMessage) (chat.Message, *apiError) {
	at := func(k string) string { return fmt.Sprintf("messages[%d]%s", i, k) }
	var f fields
	if json.Unmarshal(raw, &f) != nil || f == nil {
		return chat.Message{}, invalidType(at(""), "an object", raw)
	}
	role, ok, err := f.str("role")
	if err != nil {
		err.param = at(".role")
		return chat.Message{}, err
	}
	if !ok {
		return chat.Message{}, missing(at(".role"))
	}
	switch role {
	case "developer":
		role = chat.RoleSystem
	case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant:
	default:
		return chat.Message{}, badRequest(at(".role"), codeUnsupportedVal, "Invalid '%s': role %q is not supported (system, developer, user and assistant are).", at(".role"), role)
	}
	for _, k := range []string{"tool_calls", "function_call", "audio"} {
		if _, ok := f.get(k); ok {
			return chat.Message{}, unsupported(at("."+k), "'%s' is not supported: this server does not call tools.", at("."+k))
		}
	}
	v, ok := f.get("content")
	if !ok {
		if role == chat.RoleAssistant {
			return chat.Message{Role: role}, nil
		}
		return chat.Message{}, missing(at(".content"))
	}
	if s, err := str(at(".content"), v); err == nil {
		return chat.Message{Role: role, Content: s}, nil
	}
	var parts []json.RawMessage
	if json.Unmarshal(v, &parts) != nil {
		return chat.Message{}, invalidType(at(".content"), "a string or an array of content parts", v)
	}
	var text []byte
	for j, p := range parts {
		pat := fmt.Sprintf("%s[%d]", at(".content"), j)
		var pf fields
		if json.Unmarshal(p, &pf) != nil || pf == nil {
			return chat.Message{}, invalidType(pat, "an object", p)
		}
		typ, ok, err := pf.str("type")
		if err != nil {
			err.param = pat + ".type"
			return chat.Message{}, err
		}
		if !ok {
			return chat.Message{}, missing(pat + ".type")
		}
		if typ != "text" {
			return chat.Message{}, badRequest(pat+".type", codeUnsupportedVal, "Invalid '%s.type': content parts of type %q are not supported; only \"text\" is.", pat, typ)
		}
		t, ok, err := pf.str("text")
		if err != nil {
			err.param = pat + ".text"
			return chat.Message{}, err
		}
		if !ok {
			return chat.Message{}, missing(pat + ".text")
		}
		if j > 0 {
			text = append(text, '\n') // as vLLM joins text parts
		}
		text = append(text, t...)
	}
	return chat.Message{Role: role, Content: string(text)}, nil
}
