// Command duet-router is duet's front door: the OpenAI-compatible HTTP
// API that tokenizes each request, picks a (prefill, decode) node pair and
// streams the answer back.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/duet-llm/duet/router/internal/app"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("duet-router", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := cfg.FromEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "duet-router:", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "duet-router:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "duet-router:", err)
		return 1
	}
	return 0
}
