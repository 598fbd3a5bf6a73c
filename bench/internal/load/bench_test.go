package load

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/bench/internal/stats"
)

// BenchmarkParseStream measures the client's cost per streamed chunk: a
// load generator must read thousands of chunks a second without becoming
// the bottleneck it measures.
func BenchmarkParseStream(b *testing.B) {
	var sb strings.Builder
	const chunks = 256
	for i := range chunks {
		fmt.Fprintf(&sb, "data: {\"id\":\"cmpl-x\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" w%d\",\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n", i)
	}
	sb.WriteString("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":256}}\n\ndata: [DONE]\n\n")
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := ParseStream(bytes.NewReader(in), time.Now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*chunks)/time.Since(start).Seconds(), "chunks/s")
}

// BenchmarkSummarize measures summarizing a large stage (10,000 requests
// of 128 tokens), which happens once per stage.
func BenchmarkSummarize(b *testing.B) {
	samples := make([]stats.Sample, 10000)
	for i := range samples {
		itl := make([]float64, 127)
		for j := range itl {
			itl[j] = float64((i*31+j*17)%100) + 1
		}
		samples[i] = stats.Sample{ID: i, StartS: float64(i) / 10, EndS: float64(i)/10 + 3, PromptTokens: 512, OutputTokens: 128,
			TTFTms: float64(i%1000) + 10, E2Ems: 3000, ITLms: itl}
	}
	start := time.Now()
	for b.Loop() {
		stats.Summarize(samples, stats.SLO{TTFTms: 500, TPOTms: 50})
	}
	b.ReportMetric(float64(b.N*len(samples))/time.Since(start).Seconds(), "requests/s")
}
