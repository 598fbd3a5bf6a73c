package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/duet-llm/duet/router/internal/gen"
)

// fastGen emits max_tokens tokens cycling through ids, as fast as emit
// takes them: what is measured is the API layer alone.
func fastGen(ids []int32) Generator {
	return genFunc(func(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
		n := req.Sampling.MaxTokens
		for i := 0; i < n; i++ {
			t := gen.Token{ID: ids[i%len(ids)], Index: i}
			if i == n-1 {
				t.Finish = gen.FinishLength
			}
			if err := emit(t); err != nil {
				return gen.Result{}, err
			}
		}
		return gen.Result{FinishReason: gen.FinishLength, CompletionTokens: n}, nil
	})
}

// BenchmarkStreamRelay measures the per-token cost of relaying a streamed
// completion over a loopback socket: incremental detokenizing, the stop
// string check, one JSON chunk and one flushed write per token, and the
// client reading it. It reports tokens/s (one client stream).
func BenchmarkStreamRelay(b *testing.B) {
	for _, tc := range []struct{ name, extra string }{
		{"plain", ""},
		{"stop+logprobs", `,"stop":["zebra","the end"],"logprobs":5`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := storiesModel(b, "s", 0)
			srv := server(b, newAPI(b, testConfig(m), fastGen(m.Tokenizer.Encode(story, false)), nil))
			const n = 1024
			body := fmt.Sprintf(`{"model":"s","prompt":"Once","max_tokens":%d,"stream":true%s}`, n, tc.extra)
			client := srv.Client()
			for b.Loop() {
				resp, err := client.Post(srv.URL+"/v1/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(n)*float64(b.N)/sec, "tokens/s")
			b.ReportMetric(sec*1e9/(float64(n)*float64(b.N)), "ns/token")
		})
	}
}

// BenchmarkRoundTrip measures a whole small non-streamed request over a
// loopback socket (routing, parsing, tokenizing, admission, one token,
// the JSON answer) and reports requests per second from one client.
func BenchmarkRoundTrip(b *testing.B) {
	for _, tc := range []struct{ name, path, body string }{
		{"completions", "/v1/completions", `{"model":"s","prompt":"Once upon a time there was a little girl","max_tokens":1}`},
		{"chat", "/v1/chat/completions", `{"model":"s","messages":[{"role":"system","content":"You tell stories."},{"role":"user","content":"Once upon a time there was a little girl"}],"max_tokens":1}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := storiesModel(b, "s", 0)
			srv := server(b, newAPI(b, testConfig(m), fastGen([]int32{400}), nil))
			client := srv.Client()
			for b.Loop() {
				resp, err := client.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkPrepareChat measures what a chat request costs before it reaches
// the cluster: parsing the body, rendering the template and tokenizing a
// multi-turn conversation of about 4 KB.
func BenchmarkPrepareChat(b *testing.B) {
	m := storiesModel(b, "s", 0)
	a := newAPI(b, testConfig(m), fastGen([]int32{400}), nil)
	var sb strings.Builder
	sb.WriteString(`{"model":"s","max_tokens":16,"temperature":0.7,"messages":[{"role":"system","content":"You are a storyteller."}`)
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&sb, `,{"role":"user","content":%q},{"role":"assistant","content":%q}`, strings.Repeat("Tell me about the little dog. ", 6), strings.Repeat("The little dog ran in the park and was happy. ", 6))
	}
	sb.WriteString(`,{"role":"user","content":"And then?"}]}`)
	body := []byte(sb.String())
	mm := a.models["s"]
	tokens := 0
	for b.Loop() {
		req, aerr := parseChat(body)
		if aerr != nil {
			b.Fatal(aerr)
		}
		g, aerr := a.prepare(mm, req, &reqLog{id: "x"})
		if aerr != nil {
			b.Fatal(aerr)
		}
		tokens = len(g.Prompt)
	}
	b.ReportMetric(float64(len(body))*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(tokens), "prompt-tokens")
}
