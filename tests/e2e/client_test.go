package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// completion is the part of an OpenAI completion response the tests read.
type completion struct {
	Choices []struct {
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *apiError `json:"error"`
}

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    any     `json:"code"`
}

func post(ctx context.Context, url string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

// complete runs a non-streaming completion.
func complete(ctx context.Context, endpoint string, body map[string]any) (int, completion, error) {
	resp, err := post(ctx, endpoint+"/v1/completions", body)
	if err != nil {
		return 0, completion{}, err
	}
	defer resp.Body.Close()
	var c completion
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &c); err != nil {
		return resp.StatusCode, c, fmt.Errorf("response %q: %w", b, err)
	}
	return resp.StatusCode, c, nil
}

// streamed is what a streaming completion delivered.
type streamed struct {
	text   string
	finish string
	chunks int
	err    *apiError // an error event
	done   bool      // saw data: [DONE]
}

// stream runs a streaming completion; onChunk (optional) sees each text
// chunk as it arrives.
func stream(ctx context.Context, endpoint string, body map[string]any, onChunk func(string)) (streamed, error) {
	body["stream"] = true
	resp, err := post(ctx, endpoint+"/v1/completions", body)
	if err != nil {
		return streamed{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return streamed{}, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var s streamed
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			s.done = true
			break
		}
		var ch completion
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return s, fmt.Errorf("chunk %q: %w", data, err)
		}
		if ch.Error != nil {
			s.err = ch.Error
			continue
		}
		for _, c := range ch.Choices {
			s.text += c.Text
			if c.FinishReason != "" {
				s.finish = c.FinishReason
			}
			if c.Text != "" {
				s.chunks++
				if onChunk != nil {
					onChunk(c.Text)
				}
			}
		}
	}
	return s, sc.Err()
}

// expected is duet-generate's greedy output for a prompt, computed once.
type expected struct {
	text   string
	tokens int // generated tokens, a final stop token included
}

var (
	expMu    sync.Mutex
	expCache = map[string]expected{}
)

func want(t *testing.T, modelPath, prompt string, maxTokens int) expected {
	t.Helper()
	key := fmt.Sprintf("%s|%s|%d", modelPath, prompt, maxTokens)
	expMu.Lock()
	defer expMu.Unlock()
	if e, ok := expCache[key]; ok {
		return e
	}
	gen := func(extra ...string) string {
		args := append([]string{"--model", modelPath, "--prompt", prompt, "--temperature", "0", "--max-tokens", strconv.Itoa(maxTokens)}, extra...)
		out, err := exec.Command(binDir+"/duet-generate", args...).Output()
		if err != nil {
			t.Fatalf("duet-generate %q: %v", prompt, err)
		}
		return strings.TrimSuffix(string(out), "\n")
	}
	e := expected{text: gen()}
	if ids := gen("--ids"); ids != "" {
		e.tokens = len(strings.Split(ids, ","))
	}
	if e.tokens < maxTokens {
		e.tokens++ // the stop token, counted by the API but not printed
	}
	expCache[key] = e
	return e
}

var prompts = []string{
	"Once upon a time",
	"The little dog",
	"Lily and Tom went to the park",
	"One day, a bird flew",
	"Sam had a big red ball. He",
	"The sun was hot and",
	"Mom said",
	"There was a cat named Kitty. Kitty liked to",
	"Ben and Mia wanted to play with the toy car, but",
	"The tree",
	"A girl",
	"He looked at the sky and saw",
	"Once upon a time, there was a little boy named Tim. Tim liked to eat",
	"They ran to the",
	"The fish in the pond",
	"It was a rainy day.",
}

func greedyBody(prompt string, maxTokens int) map[string]any {
	return stories.body(prompt, maxTokens)
}

// testModel is a model file and the id clients name it by.
type testModel struct{ path, id string }

var stories = testModel{id: "stories260K"} // path set in TestMain

func (m testModel) body(prompt string, maxTokens int) map[string]any {
	return map[string]any{"model": m.id, "prompt": prompt, "max_tokens": maxTokens, "temperature": 0}
}
