package report

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/bench/internal/stats"
)

func sample(id int, class string, start, ttft, e2e float64, out int, itl ...float64) stats.Sample {
	return stats.Sample{ID: id, Class: class, StartS: start, EndS: start + e2e/1000, PromptTokens: 100, MaxTokens: out,
		OutputTokens: out, Chunks: out, TTFTms: ttft, E2Ems: e2e, ITLms: itl}
}

func testResult() *Result {
	slo := stats.SLO{TTFTms: 500, TPOTms: 100}
	a := []stats.Sample{
		sample(0, "short", 0, 100, 1000, 10, 100, 100, 100),
		sample(1, "long", 1, 900, 1900, 11, 100, 100),
		{ID: 2, Class: "long", StartS: 2, EndS: 3, Error: "status 503: no capacity", Status: 503},
	}
	b := []stats.Sample{
		sample(0, "short", 0, 50, 500, 10, 50, 50),
		sample(1, "long", 0.5, 300, 800, 11, 50),
		sample(2, "long", 1, 400, 900, 11, 50),
	}
	return &Result{Tool: "duet-bench", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SLO: slo,
		Target:   Target{URL: "http://127.0.0.1:8080", API: "completions", Model: "m"},
		Workload: Workload{Arrival: "poisson", Classes: []string{"name=short", "name=long"}, Requests: 3, Seed: 1},
		Stages:   []Stage{NewStage("poisson 1 req/s", 1, 0, a, slo), NewStage("poisson 2 req/s", 2, 0, b, slo)}}
}

func TestNewStageClasses(t *testing.T) {
	st := testResult().Stages[0]
	if st.Summary.Requests != 3 || st.Summary.Failed != 1 || st.Summary.Good != 1 {
		t.Fatalf("summary %+v", st.Summary)
	}
	if len(st.Classes) != 2 || st.Classes["long"].Requests != 2 || st.Classes["long"].Failed != 1 || st.Classes["short"].Good != 1 {
		t.Fatalf("classes %+v", st.Classes)
	}
	one := NewStage("x", 1, 0, []stats.Sample{sample(0, "a", 0, 1, 2, 2)}, stats.SLO{})
	if one.Classes != nil {
		t.Fatal("a single class got a per-class breakdown")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := testResult()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"ttft_ms"`, `"itl_ms"`, `"goodput"`, `"samples"`, `"p99"`, `"error": "status 503: no capacity"`} {
		if !strings.Contains(buf.String(), key) {
			t.Fatalf("JSON lacks %s", key)
		}
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip changed the result:\n%+v\n%+v", got, r)
	}
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, testResult()); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"# duet-bench: m at http://127.0.0.1:8080",
		"- SLO: TTFT ≤ 500 ms and TPOT ≤ 100 ms",
		// Stage 1: 2 of 3 ok over 3 s (the failed request ends last):
		// 2/3 req/s, 21 tokens / 3 s; goodput 1/3.
		"| poisson 1 req/s | 2 / 3 | 0.67 | 7.0 | 0.33 (33%) | 500 | 892 |",
		// Stage 2: 0 → 1.9 s.
		"| poisson 2 req/s | 3 / 3 | 1.58 | 16.8 | 1.58 (100%) |",
		"| TTFT | 2 | 500 | 500 | 820 | 892 | 900 |",
		"| long | 1 / 2 | 100 | 11 | 900 | 900 | 100 | 100 | 0 |",
		"- 1 × status 503: no capacity",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	paths, err := Write(dir, testResult())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{E2ECDFFile, GoodputRateFile, ITLCDFFile, TokenLatRateFile, JSONFile, MarkdownFile, TPOTCDFFile, TTFTCDFFile, TTFTRateFile}
	if len(paths) != len(want) {
		t.Fatalf("wrote %v", paths)
	}
	for _, name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".png") {
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
}

func TestWriteNoData(t *testing.T) {
	// Every request failed: the JSON and markdown are written (they say
	// so), the charts that have nothing to draw are not.
	r := testResult()
	r.Stages = r.Stages[:1]
	r.Stages[0] = NewStage("s", 1, 0, []stats.Sample{{ID: 0, Error: "refused"}}, r.SLO)
	dir := t.TempDir()
	paths, err := Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, "cdf.png") {
			t.Fatalf("wrote %s with no data", p)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if !strings.Contains(string(md), "| s | 0 / 1 |") || !strings.Contains(string(md), "1 × refused") {
		t.Fatalf("markdown:\n%s", md)
	}
}
