package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestBadRequests(t *testing.T) {
	llama2 := storiesModel(t, "llama2", 0)
	llama2.ChatTemplate = "{% if messages[0]['role'] == 'system' %}<<SYS>>{% endif %}[INST]"
	g := newScripted(storiesModel(t, "s", 0).Tokenizer)
	a := newAPI(t, testConfig(storiesModel(t, "s", 0), storiesModel(t, "small", 24), llama2), g, nil)
	srv := server(t, a)

	long := strings.Repeat("Once upon a time ", 10) // 40+ tokens
	tests := []struct {
		name   string
		method string
		path   string
		ctype  string // "" → application/json; "-" → none
		body   string
		status int
		param  string // "<nil>" for null
		code   string
	}{
		// routing
		{"unknown route", "POST", "/v1/foo", "", `{}`, 404, "<nil>", codeUnknownURL},
		{"root", "GET", "/", "", ``, 404, "<nil>", codeUnknownURL},
		{"models slash", "GET", "/v1/models/", "", ``, 404, "<nil>", codeUnknownURL},
		{"GET completions", "GET", "/v1/completions", "", ``, 405, "<nil>", codeMethodNotAllow},
		{"PUT chat", "PUT", "/v1/chat/completions", "", `{}`, 405, "<nil>", codeMethodNotAllow},
		{"POST models", "POST", "/v1/models", "", `{}`, 405, "<nil>", codeMethodNotAllow},
		{"DELETE healthz", "DELETE", "/healthz", "", ``, 405, "<nil>", codeMethodNotAllow},
		{"unknown model id", "GET", "/v1/models/nope", "", ``, 404, "model", codeModelNotFound},

		// body
		{"text/plain", "POST", "/v1/completions", "text/plain", `{"model":"s","prompt":"x"}`, 415, "<nil>", codeContentType},
		{"form", "POST", "/v1/chat/completions", "application/x-www-form-urlencoded", `a=b`, 415, "<nil>", codeContentType},
		{"bad content type", "POST", "/v1/completions", ";;;", `{}`, 415, "<nil>", codeContentType},
		{"too large", "POST", "/v1/completions", "", `{"model":"s","prompt":"` + strings.Repeat("a", 65<<10) + `"}`, 413, "<nil>", codeBodyTooLarge},
		{"empty body", "POST", "/v1/completions", "", ``, 400, "<nil>", codeInvalidJSON},
		{"malformed", "POST", "/v1/completions", "", `{"model":`, 400, "<nil>", codeInvalidJSON},
		{"trailing garbage", "POST", "/v1/completions", "", `{"model":"s","prompt":"x"} x`, 400, "<nil>", codeInvalidJSON},
		{"array body", "POST", "/v1/completions", "", `[]`, 400, "<nil>", codeInvalidType},
		{"null body", "POST", "/v1/chat/completions", "", `null`, 400, "<nil>", codeInvalidType},
		{"string body", "POST", "/v1/chat/completions", "", `"hi"`, 400, "<nil>", codeInvalidType},
		{"invalid utf8 prompt", "POST", "/v1/completions", "", "{\"model\":\"s\",\"prompt\":\"a\xffb\"}", 400, "<nil>", codeInvalidEncoding},
		{"invalid utf8 key", "POST", "/v1/chat/completions", "", "{\"model\":\"s\",\"\xc3\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "<nil>", codeInvalidEncoding},
		{"invalid utf8 content", "POST", "/v1/chat/completions", "", "{\"model\":\"s\",\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", 400, "<nil>", codeInvalidEncoding},

		// model
		{"no model", "POST", "/v1/completions", "", `{"prompt":"x"}`, 400, "model", codeMissing},
		{"null model", "POST", "/v1/completions", "", `{"model":null,"prompt":"x"}`, 400, "model", codeMissing},
		{"model number", "POST", "/v1/completions", "", `{"model":5,"prompt":"x"}`, 400, "model", codeInvalidType},
		{"unknown model", "POST", "/v1/completions", "", `{"model":"gpt-4","prompt":"x"}`, 404, "model", codeModelNotFound},
		{"model case", "POST", "/v1/chat/completions", "", `{"model":"S","messages":[{"role":"user","content":"x"}]}`, 404, "model", codeModelNotFound},
		{"Model key", "POST", "/v1/completions", "", `{"Model":"s","prompt":"x"}`, 400, "model", codeMissing},

		// prompt
		{"no prompt", "POST", "/v1/completions", "", `{"model":"s"}`, 400, "prompt", codeMissing},
		{"empty prompt", "POST", "/v1/completions", "", `{"model":"s","prompt":""}`, 400, "prompt", codeInvalidValue},
		{"empty array", "POST", "/v1/completions", "", `{"model":"s","prompt":[]}`, 400, "prompt", codeInvalidValue},
		{"array of empty", "POST", "/v1/completions", "", `{"model":"s","prompt":[""]}`, 400, "prompt", codeInvalidValue},
		{"empty id list", "POST", "/v1/completions", "", `{"model":"s","prompt":[[]]}`, 400, "prompt", codeInvalidValue},
		{"batch", "POST", "/v1/completions", "", `{"model":"s","prompt":["a","b"]}`, 400, "prompt", codeUnsupportedVal},
		{"batch of ids", "POST", "/v1/completions", "", `{"model":"s","prompt":[[1],[2]]}`, 400, "prompt", codeUnsupportedVal},
		{"mixed", "POST", "/v1/completions", "", `{"model":"s","prompt":[1,"a"]}`, 400, "prompt", codeInvalidType},
		{"decimal id", "POST", "/v1/completions", "", `{"model":"s","prompt":[1.5]}`, 400, "prompt", codeInvalidType},
		{"id out of vocab", "POST", "/v1/completions", "", `{"model":"s","prompt":[1,512]}`, 400, "prompt", codeInvalidValue},
		{"negative id", "POST", "/v1/completions", "", `{"model":"s","prompt":[-1]}`, 400, "prompt", codeInvalidValue},
		{"huge id", "POST", "/v1/completions", "", `{"model":"s","prompt":[99999999999]}`, 400, "prompt", codeInvalidValue},
		{"prompt bool", "POST", "/v1/completions", "", `{"model":"s","prompt":true}`, 400, "prompt", codeInvalidType},
		{"prompt object", "POST", "/v1/completions", "", `{"model":"s","prompt":{"a":1}}`, 400, "prompt", codeInvalidType},
		{"null in ids", "POST", "/v1/completions", "", `{"model":"s","prompt":[null]}`, 400, "prompt", codeInvalidType},

		// max_tokens and the context
		{"max_tokens 0", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":0}`, 400, "max_tokens", codeBelowMin},
		{"max_tokens negative", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":-5}`, 400, "max_tokens", codeBelowMin},
		{"max_completion_tokens 0", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}`, 400, "max_completion_tokens", codeBelowMin},
		{"max_tokens string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":"16"}`, 400, "max_tokens", codeInvalidType},
		{"max_tokens decimal", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":1.5}`, 400, "max_tokens", codeInvalidType},
		{"max_tokens exponent", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":1e3}`, 400, "max_tokens", codeInvalidType},
		{"max_tokens huge", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":1000000000000000000}`, 400, "prompt", codeContextLength},
		{"max_tokens beyond int64", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","max_tokens":99999999999999999999999}`, 400, "prompt", codeContextLength},
		{"max_tokens over context", "POST", "/v1/completions", "", `{"model":"small","prompt":"x","max_tokens":24}`, 400, "prompt", codeContextLength},
		{"default 16 over context", "POST", "/v1/completions", "", `{"model":"small","prompt":"Once upon a time there was a little girl"}`, 400, "prompt", codeContextLength},
		{"prompt over context", "POST", "/v1/completions", "", `{"model":"small","prompt":"` + long + `","max_tokens":1}`, 400, "prompt", codeContextLength},
		{"chat over context", "POST", "/v1/chat/completions", "", `{"model":"small","messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", codeContextLength},
		{"chat max over context", "POST", "/v1/chat/completions", "", `{"model":"small","messages":[{"role":"user","content":"hi"}],"max_tokens":20}`, 400, "messages", codeContextLength},

		// sampling
		{"temperature high", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","temperature":3}`, 400, "temperature", codeInvalidValue},
		{"temperature negative", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","temperature":-0.1}`, 400, "temperature", codeInvalidValue},
		{"temperature string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","temperature":"hot"}`, 400, "temperature", codeInvalidType},
		{"temperature overflow", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","temperature":1e400}`, 400, "temperature", codeInvalidValue},
		{"temperature beyond float32", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","temperature":1e39}`, 400, "temperature", codeInvalidValue},
		{"top_p 0", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","top_p":0}`, 400, "top_p", codeInvalidValue},
		{"top_p 1.5", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"top_p":1.5}`, 400, "top_p", codeInvalidValue},
		{"top_k -2", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","top_k":-2}`, 400, "top_k", codeInvalidValue},
		{"top_k decimal", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","top_k":2.5}`, 400, "top_k", codeInvalidType},
		{"top_k huge", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","top_k":99999999999}`, 400, "top_k", codeInvalidValue},
		{"min_p 2", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","min_p":2}`, 400, "min_p", codeInvalidValue},
		{"presence_penalty 5", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","presence_penalty":5}`, 400, "presence_penalty", codeInvalidValue},
		{"frequency_penalty -3", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","frequency_penalty":-3}`, 400, "frequency_penalty", codeInvalidValue},
		{"repetition_penalty 0", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","repetition_penalty":0}`, 400, "repetition_penalty", codeInvalidValue},
		{"seed string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","seed":"7"}`, 400, "seed", codeInvalidType},
		{"seed decimal", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","seed":1.5}`, 400, "seed", codeInvalidType},
		{"seed beyond 64 bits", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","seed":99999999999999999999999}`, 400, "seed", codeInvalidValue},
		{"stop number", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stop":5}`, 400, "stop", codeInvalidType},
		{"stop list of numbers", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stop":[1]}`, 400, "stop", codeInvalidType},
		{"stop five", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stop":["a","b","c","d","e"]}`, 400, "stop", codeInvalidValue},
		{"stop empty", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stop":""}`, 400, "stop", codeInvalidValue},
		{"stop too long", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stop":"` + strings.Repeat("a", maxStopBytes+1) + `"}`, 400, "stop", codeInvalidValue},
		{"stream string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stream":"yes"}`, 400, "stream", codeInvalidType},
		{"stream_options without stream", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stream_options":{"include_usage":true}}`, 400, "stream_options", codeInvalidValue},
		{"stream_options not object", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stream":true,"stream_options":[]}`, 400, "stream_options", codeInvalidType},
		{"include_usage string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","stream":true,"stream_options":{"include_usage":"yes"}}`, 400, "stream_options.include_usage", codeInvalidType},

		// logprobs
		{"logprobs 6", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","logprobs":6}`, 400, "logprobs", codeInvalidValue},
		{"logprobs -1", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","logprobs":-1}`, 400, "logprobs", codeInvalidValue},
		{"logprobs bool on completions", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","logprobs":true}`, 400, "logprobs", codeInvalidType},
		{"logprobs int on chat", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"logprobs":1}`, 400, "logprobs", codeInvalidType},
		{"top_logprobs 21", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs", codeInvalidValue},
		{"top_logprobs without logprobs", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"top_logprobs":2}`, 400, "top_logprobs", codeInvalidValue},

		// unsupported parameters
		{"n 2", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","n":2}`, 400, "n", codeUnsupported},
		{"n 2 chat", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"n":2}`, 400, "n", codeUnsupported},
		{"n string", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","n":"1"}`, 400, "n", codeInvalidType},
		{"best_of", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","best_of":3}`, 400, "best_of", codeUnsupported},
		{"echo", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","echo":true}`, 400, "echo", codeUnsupported},
		{"suffix", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","suffix":"end"}`, 400, "suffix", codeUnsupported},
		{"logit_bias", "POST", "/v1/completions", "", `{"model":"s","prompt":"x","logit_bias":{"50256":-100}}`, 400, "logit_bias", codeUnsupported},
		{"logit_bias chat", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"logit_bias":{"1":5}}`, 400, "logit_bias", codeUnsupported},
		{"tools", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, 400, "tools", codeUnsupported},
		{"functions", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}`, 400, "functions", codeUnsupported},
		{"tool_choice", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}`, 400, "tool_choice", codeUnsupported},
		{"response_format json", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`, 400, "response_format", codeUnsupported},
		{"response_format string", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"response_format":"json"}`, 400, "response_format", codeInvalidType},
		{"modalities audio", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}`, 400, "modalities", codeUnsupported},

		// messages
		{"no messages", "POST", "/v1/chat/completions", "", `{"model":"s"}`, 400, "messages", codeMissing},
		{"messages object", "POST", "/v1/chat/completions", "", `{"model":"s","messages":{}}`, 400, "messages", codeInvalidType},
		{"messages empty", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[]}`, 400, "messages", codeEmptyArray},
		{"message number", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[1]}`, 400, "messages[0]", codeInvalidType},
		{"message null", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[null]}`, 400, "messages[0]", codeInvalidType},
		{"no role", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"content":"x"}]}`, 400, "messages[0].role", codeMissing},
		{"role number", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":5,"content":"x"}]}`, 400, "messages[0].role", codeInvalidType},
		{"tool role", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"},{"role":"tool","content":"y"}]}`, 400, "messages[1].role", codeUnsupportedVal},
		{"no content", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user"}]}`, 400, "messages[0].content", codeMissing},
		{"content number", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":5}]}`, 400, "messages[0].content", codeInvalidType},
		{"image part", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[1].type", codeUnsupportedVal},
		{"part without text", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":[{"type":"text"}]}]}`, 400, "messages[0].content[0].text", codeMissing},
		{"part without type", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":[{"text":"a"}]}]}`, 400, "messages[0].content[0].type", codeMissing},
		{"part number", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":[5]}]}`, 400, "messages[0].content[0]", codeInvalidType},
		{"part text number", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":[{"type":"text","text":1}]}]}`, 400, "messages[0].content[0].text", codeInvalidType},
		{"tool_calls", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"1"}]}]}`, 400, "messages[1].tool_calls", codeUnsupported},
		{"system only", "POST", "/v1/chat/completions", "", `{"model":"s","messages":[{"role":"system","content":"x"}]}`, 400, "messages", codeInvalidValue},
		{"turns do not alternate", "POST", "/v1/chat/completions", "", `{"model":"llama2","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`, 400, "messages", codeInvalidValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := g.calls()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tc.ctype {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			o := errorShape(t, body)
			if got := strOrNil(o.Param); got != tc.param {
				t.Errorf("param %s, want %s (%s)", got, tc.param, o.Message)
			}
			if got := strOrNil(o.Code); got != tc.code {
				t.Errorf("code %s, want %s (%s)", got, tc.code, o.Message)
			}
			if tc.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if g.calls() != before {
				t.Error("a bad request reached the generator")
			}
			if a.adm.running() != 0 || a.adm.waiting() != 0 {
				t.Errorf("admission changed: %d running, %d waiting", a.adm.running(), a.adm.waiting())
			}
		})
	}

	// The API keeps serving.
	r := post(t, srv, "/v1/completions", `{"model":"s","prompt":"Once","max_tokens":3}`)
	if r.status != http.StatusOK {
		t.Fatalf("after the bad requests: status %d: %s", r.status, r.body)
	}
}

func TestContextLengthMessage(t *testing.T) {
	g := newScripted(storiesModel(t, "s", 0).Tokenizer)
	srv := server(t, newAPI(t, testConfig(storiesModel(t, "small", 24)), g, nil))
	tok := storiesModel(t, "s", 0).Tokenizer
	n := len(tok.Encode("user: hi\nassistant:", true)) // the default layout, BOS
	r := post(t, srv, "/v1/chat/completions", `{"model":"small","messages":[{"role":"user","content":"hi"}],"max_tokens":20}`)
	o := errorShape(t, r.body)
	want := fmt.Sprintf("This model's maximum context length is 24 tokens. However, you requested %d tokens (%d in the messages, 20 in the completion). Please reduce the length of the messages or completion.", n+20, n)
	if o.Message != want {
		t.Errorf("message %q\nwant    %q", o.Message, want)
	}
	r = post(t, srv, "/v1/completions", `{"model":"small","prompt":"Once upon a time","max_tokens":21}`)
	o = errorShape(t, r.body)
	want = "This model's maximum context length is 24 tokens, however you requested 26 tokens (5 in your prompt; 21 for the completion). Please reduce your prompt; or completion length."
	if o.Message != want {
		t.Errorf("message %q\nwant    %q", o.Message, want)
	}
	// Exactly the context fits.
	if r := post(t, srv, "/v1/completions", `{"model":"small","prompt":"Once upon a time","max_tokens":19}`); r.status != 200 {
		t.Errorf("prompt + max_tokens = context: status %d: %s", r.status, r.body)
	}
	// Chat without max_tokens gets the rest of the context.
	if r := post(t, srv, "/v1/chat/completions", `{"model":"small","messages":[{"role":"user","content":"hi"}]}`); r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if req, _ := g.last(t); req.Sampling.MaxTokens != 24-n || len(req.Prompt) != n {
		t.Errorf("chat: prompt %d tokens, max_tokens %d; want %d and %d", len(req.Prompt), req.Sampling.MaxTokens, n, 24-n)
	}
	// A prompt that fills the context leaves no room for a completion.
	r = post(t, srv, "/v1/chat/completions", `{"model":"small","messages":[{"role":"user","content":"Once upon a time there was a big dog"}]}`)
	o = errorShape(t, r.body)
	if !strings.Contains(o.Message, "However, your messages resulted in") || strOrNil(o.Code) != codeContextLength {
		t.Errorf("message %q", o.Message)
	}
}
