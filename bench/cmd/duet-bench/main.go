// Command duet-bench measures an OpenAI-compatible server under load:
// open-loop (Poisson or constant rate) or closed-loop (fixed concurrency)
// streaming requests with fixed, uniform or file-given lengths. It
// reports TTFT, inter-token latency, time per output token, end-to-end
// latency, throughput and goodput under an SLO, as JSON, a markdown
// summary and PNG plots.
//
//	duet-bench --url http://127.0.0.1:8080 --rate 1,2,4 --requests 200 \
//	    --prompt-tokens 256:1024 --output-tokens 128 --slo-ttft 1s --slo-tpot 50ms
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/bench/internal/app"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("duet-bench", flag.ContinueOnError)
	cfg.AddFlags(fs)
	verbose := fs.Bool("v", false, "log each failed request")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := cfg.FromEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench:", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	lg := zap.NewNop()
	if *verbose {
		zc := zap.NewDevelopmentConfig()
		zc.OutputPaths = []string{"stderr"}
		var err error
		if lg, err = zc.Build(); err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench:", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, _ := os.Stderr.Stat()
	tty := st != nil && st.Mode()&os.ModeCharDevice != 0
	res, paths, err := app.Run(ctx, cfg, os.Stderr, tty, lg)
	for _, p := range paths {
		fmt.Fprintln(os.Stderr, "wrote", p)
	}
	if res != nil {
		for _, s := range res.Stages {
			m := s.Summary
			fmt.Printf("%s: %d/%d ok, %.2f req/s, %.1f out tok/s, goodput %.2f req/s, TTFT p50 %.0f p99 %.0f ms, ITL p50 %.1f p99 %.1f ms\n",
				s.Label, m.Completed, m.Requests, m.RequestRate, m.OutputTokenRate, m.Goodput, m.TTFT.P50, m.TTFT.P99, m.ITL.P50, m.ITL.P99)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench:", err)
		return 1
	}
	return 0
}
