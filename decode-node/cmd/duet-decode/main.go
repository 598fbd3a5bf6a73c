// Command duet-decode runs a decode node: it owns a KV block pool, takes
// reservations, receives KV from prefill nodes and streams tokens. With
// --role=both it also prefills in the same process (colocated mode).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/duet-llm/duet/decode-node/internal/app"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("duet-decode", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := cfg.FromEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "duet-decode:", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "duet-decode:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "duet-decode:", err)
		return 1
	}
	return 0
}
