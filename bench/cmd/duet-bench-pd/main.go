// Command duet-bench-pd compares a colocated deployment with a
// disaggregated (PD) one on the same cores and the same model: it starts
// each as a local cluster of real processes, drives the same workloads
// through each, and prints the side-by-side tables and RESULT lines.
// `make bench-pd` runs it; see package pd for what it measures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/duet-llm/duet/bench/internal/pd"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := pd.DefaultConfig()
	cfg.BinDir, cfg.ModelsDir, cfg.CacheDir, cfg.OutDir = "bin", "../shared/models", ".cache/models", ".cache/bench-pd"
	fs := flag.NewFlagSet("duet-bench-pd", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-pd:", err)
		return 2
	}
	st, _ := os.Stderr.Stat()
	cfg.Progress, cfg.TTY = os.Stderr, st != nil && st.Mode()&os.ModeCharDevice != 0

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := pd.Run(ctx, cfg, nil)
	if res == nil {
		fmt.Fprintln(os.Stderr, "duet-bench-pd:", runErr)
		return 1
	}
	md, paths, err := pd.Write(cfg, res)
	fmt.Print("\n" + md)
	for _, p := range paths {
		fmt.Fprintln(os.Stderr, "wrote", p)
	}
	if runErr != nil || err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-pd: incomplete:", runErr, err)
		return 1
	}
	return 0
}
