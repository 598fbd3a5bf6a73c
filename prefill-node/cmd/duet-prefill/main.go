// Command duet-prefill runs a prefill node: it batches prompts, runs
// chunked prefill and streams each layer's KV into the decode node's
// reserved slots while the next layer computes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/prefill-node/internal/app"
	"github.com/duet-llm/duet/prefill-node/node"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := node.DefaultConfig(cluster.RolePrefill)
	fs := flag.NewFlagSet("duet-prefill", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := cfg.FromEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "duet-prefill:", err)
		return 2
	}
	if cfg.Role != cluster.RolePrefill {
		fmt.Fprintln(os.Stderr, "duet-prefill: --role must be prefill (use duet-decode --role=both for a colocated node)")
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "duet-prefill:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "duet-prefill:", err)
		return 1
	}
	return 0
}
