package app

import (
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/bench/internal/report"
	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/tests/localcluster"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		err   string
		check func(c *Config) error
	}{
		{"defaults", nil, nil, "", nil},
		{"rates", []string{"--rate", "0.5, 2,4"}, nil, "", func(c *Config) error {
			if len(c.stages()) != 3 || c.stages()[0].rate != 0.5 || c.stages()[2].label != "poisson 4 req/s" {
				return fmt.Errorf("stages %+v", c.stages())
			}
			return nil
		}},
		{"concurrency wins", []string{"--concurrency", "1,8", "--rate", "3"}, nil, "", func(c *Config) error {
			if w := c.workloads(nil); len(w) != 2 || w[1].Concurrency != 8 || w[1].Arrival != "closed" {
				return fmt.Errorf("workloads %+v", w)
			}
			return nil
		}},
		{"classes", []string{"--class", "name=a,prompt=8,output=4", "--class", "name=b,weight=3,prompt=100:200,output=2"}, nil, "", func(c *Config) error {
			if cl, _ := c.classes(); len(cl) != 2 || cl[1].Weight != 3 {
				return fmt.Errorf("classes %+v", cl)
			}
			return nil
		}},
		{"env", nil, map[string]string{"DUET_BENCH_SLO_TTFT": "750ms", "DUET_BENCH_API_KEY": "k"}, "", func(c *Config) error {
			if c.SLOTTFT != 750*time.Millisecond || c.APIKey != "k" {
				return fmt.Errorf("slo %v key %q", c.SLOTTFT, c.APIKey)
			}
			return nil
		}},
		{"flag beats env", []string{"--slo-ttft", "1s"}, map[string]string{"DUET_BENCH_SLO_TTFT": "750ms"}, "", func(c *Config) error {
			if c.SLOTTFT != time.Second {
				return fmt.Errorf("slo %v", c.SLOTTFT)
			}
			return nil
		}},
		{"bad rate", []string{"--rate", "0"}, nil, "parse", nil},
		{"bad concurrency", []string{"--concurrency", "x"}, nil, "parse", nil},
		{"bad url", []string{"--url", "localhost:8080"}, nil, "http://", nil},
		{"bad api", []string{"--api", "embeddings"}, nil, "api", nil},
		{"bad lengths", []string{"--prompt-tokens", "9:3"}, nil, "bad length", nil},
		{"bad class", []string{"--class", "prompt=3"}, nil, "required", nil},
		{"bad arrival", []string{"--arrival", "bursty"}, nil, "arrival", nil},
		{"ids with chat", []string{"--api", "chat", "--prompt-ids"}, nil, "prompt-ids", nil},
		{"no requests", []string{"--requests", "0"}, nil, "requests", nil},
		{"tiny vocab", []string{"--prompt-ids", "--vocab", "3"}, nil, "vocab", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			c.AddFlags(fs)
			err := fs.Parse(tt.args)
			if err == nil {
				err = c.FromEnv(fs, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			}
			if err != nil {
				err = fmt.Errorf("parse: %w", err)
			} else {
				err = c.Validate()
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				if err := tt.check(&c); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// buildNodes builds the cluster's binaries into a temporary folder.
func buildNodes(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/duet-llm/duet/router/cmd/duet-router",
		"github.com/duet-llm/duet/prefill-node/cmd/duet-prefill",
		"github.com/duet-llm/duet/decode-node/cmd/duet-decode")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir
}

// TestRunAgainstCluster runs duet-bench against a real local cluster
// (embedded etcd, router, prefill and decode processes, stories260K) and
// checks the files it writes.
func TestRunAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	model := enginetest.ModelPath(t, enginetest.Stories260K)
	bin := buildNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs strings.Builder
	c, err := localcluster.Start(ctx, localcluster.Options{BinDir: bin, Model: model, Prefill: 1, Decode: 1, Logs: &syncWriter{b: &logs}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.URL, cfg.Rates, cfg.Requests, cfg.Warmup = c.Endpoint, []float64{20, 50}, 12, 2
	cfg.PromptIDs, cfg.Vocab, cfg.PromptTokens, cfg.OutputTokens = true, 512, "8:48", "12"
	cfg.Out = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	res, paths, err := Run(ctx, cfg, &progress, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target.Model != "stories260K" {
		t.Fatalf("model %q, want the one /v1/models lists", res.Target.Model)
	}
	if len(res.Stages) != 2 {
		t.Fatalf("%d stages", len(res.Stages))
	}
	for _, st := range res.Stages {
		s := st.Summary
		if s.Requests != 12 || s.Completed != 12 {
			var errs []string
			for _, smp := range st.Samples {
				if !smp.OK() {
					errs = append(errs, smp.Error)
				}
			}
			t.Fatalf("%s: %d/%d completed; errors: %q", st.Label, s.Completed, s.Requests, errs)
		}
		for _, smp := range st.Samples {
			// The router counts the prompt with its BOS.
			if smp.TTFTms <= 0 || smp.E2Ems < smp.TTFTms || smp.OutputTokens < 1 || smp.OutputTokens > 12 || smp.PromptTokens < 8 || smp.PromptTokens > 49 {
				t.Fatalf("%s: implausible sample %+v", st.Label, smp)
			}
			if smp.FinishReason != "length" && smp.FinishReason != "stop" {
				t.Fatalf("finish reason %q", smp.FinishReason)
			}
			if len(smp.ITLms) != smp.Chunks-1 {
				t.Fatalf("%d gaps for %d chunks", len(smp.ITLms), smp.Chunks)
			}
		}
		if s.TTFT.N != 12 || s.RequestRate <= 0 || s.OutputTokenRate <= 0 {
			t.Fatalf("%s: summary %+v", st.Label, s)
		}
	}
	if !strings.Contains(progress.String(), "poisson 50 req/s [##############################] 12/12 done") {
		t.Fatalf("progress:\n%s", progress.String())
	}

	// The files: JSON with every sample, the markdown summary, the plots.
	want := map[string]bool{report.JSONFile: false, report.MarkdownFile: false, report.TTFTCDFFile: false, report.ITLCDFFile: false,
		report.E2ECDFFile: false, report.GoodputRateFile: false, report.TTFTRateFile: false}
	for _, p := range paths {
		want[filepath.Base(p)] = true
	}
	for name, ok := range want {
		if !ok {
			t.Fatalf("%s not written (wrote %v)", name, paths)
		}
	}
	f, err := os.Open(filepath.Join(cfg.Out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	back, err := report.ReadJSON(f)
	f.Close()
	if err != nil || len(back.Stages) != 2 || len(back.Stages[1].Samples) != 12 {
		t.Fatalf("result.json: %v", err)
	}
	md, _ := os.ReadFile(filepath.Join(cfg.Out, report.MarkdownFile))
	if !strings.Contains(string(md), "| poisson 20 req/s | 12 / 12 |") {
		t.Fatalf("summary.md:\n%s", md)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, ".png") {
			f, _ := os.Open(p)
			_, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
}
