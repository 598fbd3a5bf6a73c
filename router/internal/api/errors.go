package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/duet-llm/duet/router/internal/gen"
)

// Error types and codes of the OpenAI wire format used here.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
	typeRateLimit      = "requests"

	codeInvalidAPIKey   = "invalid_api_key"
	codeModelNotFound   = "model_not_found"
	codeContextLength   = "context_length_exceeded"
	codeInvalidType     = "invalid_type"
	codeInvalidValue    = "invalid_value"
	codeMissing         = "missing_required_parameter"
	codeUnsupported     = "unsupported_parameter"
	codeUnsupportedVal  = "unsupported_value"
	codeRateLimit       = "rate_limit_exceeded"
	codeOverloaded      = "overloaded"
	codeUnavailable     = "model_unavailable"
	codeBelowMin        = "integer_below_min_value"
	codeAboveMax        = "integer_above_max_value"
	codeEmptyArray      = "empty_array"
	codeInvalidJSON     = "invalid_json"
	codeBodyTooLarge    = "request_too_large"
	codeContentType     = "unsupported_content_type"
	codeUnknownURL      = "unknown_url"
	codeMethodNotAllow  = "method_not_allowed"
	codeUpstream        = "upstream_error"
	codeTimeout         = "timeout"
	codeInvalidEncoding = "invalid_encoding"
)

// apiError is an error answered to the client with an OpenAI-shaped body:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	status     int
	message    string
	typ        string
	param      string // "" → null
	code       string // "" → null
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.message }

// errorBody is the wire form of an error.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	o := errorObject{Message: e.message, Type: e.typ}
	if e.param != "" {
		o.Param = &e.param
	}
	if e.code != "" {
		o.Code = &e.code
	}
	return errorBody{Error: o}
}

func badRequest(param, code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, param: param, code: code, message: fmt.Sprintf(format, args...)}
}

func unsupported(param, format string, args ...any) *apiError {
	return badRequest(param, codeUnsupported, "Unsupported parameter: "+format, args...)
}

func missing(param string) *apiError {
	return badRequest(param, codeMissing, "Missing required parameter: '%s'.", param)
}

// writeError answers e. The body is always valid JSON.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.retryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(e.retryAfter))
	}
	b, _ := json.Marshal(e.body()) // cannot fail: strings and pointers only
	w.WriteHeader(e.status)
	_, _ = w.Write(append(b, '\n'))
}

// retryAfterSeconds is d rounded up to whole seconds, at least 1 (the
// Retry-After header takes an integer).
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// generatorError maps what a Generator returned before any text reached the
// client to the answer, in one place (STYLE: map errors at the edge).
func (a *API) generatorError(err error, model string, requestID string) *apiError {
	switch {
	case errors.Is(err, gen.ErrOverloaded):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeOverloaded, retryAfter: a.cfg.RetryAfter,
			message: fmt.Sprintf("The model `%s` is currently overloaded, please try again later.", model)}
	case errors.Is(err, gen.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeUnavailable, retryAfter: a.cfg.RetryAfter,
			message: fmt.Sprintf("No server can serve the model `%s` right now, please try again later.", model)}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, typ: typeServer, code: codeTimeout,
			message: fmt.Sprintf("The generation timed out (request id %s).", requestID)}
	}
	return &apiError{status: http.StatusBadGateway, typ: typeServer, code: codeUpstream,
		message: fmt.Sprintf("The server had an error while generating the completion (request id %s).", requestID)}
}
