// Command duet-local runs a whole duet cluster on this machine: an
// embedded etcd, a router, a prefill node and a decode node on loopback,
// each node a real process. It prints the endpoint and a curl line to try;
// Ctrl-C drains and stops everything. `make run` builds and starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/duet-llm/duet/tests/localcluster"
)

func main() { os.Exit(run()) }

func run() int {
	exe, _ := os.Executable()
	o := localcluster.Options{Logs: os.Stderr}
	fs := flag.NewFlagSet("duet-local", flag.ContinueOnError)
	fs.StringVar(&o.BinDir, "bin", filepath.Dir(exe), "folder holding duet-router, duet-prefill and duet-decode")
	model := fs.String("model", os.Getenv("MODEL"), "GGUF model (default: $MODEL, else ../shared/models/stories260K.gguf, else a download)")
	shared := fs.String("shared-models", "../shared/models", "folder of the shared models")
	cache := fs.String("cache", ".cache/models", "download folder for the default model")
	fs.StringVar(&o.RouterAddr, "addr", envOr("ROUTER_ADDR", "127.0.0.1:8080"), "router listen address ($ROUTER_ADDR)")
	fs.IntVar(&o.Prefill, "prefill", 1, "prefill nodes")
	fs.IntVar(&o.Decode, "decode", 1, "decode nodes")
	fs.IntVar(&o.Both, "both", 0, "colocated (prefill+decode) nodes")
	quiet := fs.Bool("quiet", false, "do not show the processes' logs")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *quiet {
		o.Logs = nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.Model, err = localcluster.ResolveModel(ctx, *model, *shared, *cache, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "duet-local:", err)
		return 1
	}
	c, err := localcluster.Start(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "duet-local:", err)
		return 1
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = c.WaitReady(rctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "duet-local:", err)
		c.Stop()
		return 1
	}
	id := filepath.Base(o.Model)
	id = id[:len(id)-len(filepath.Ext(id))]
	fmt.Printf(`
duet is running: router %s, %d prefill + %d decode + %d colocated node(s), model %s
Try:
  curl -s %s/v1/completions -H 'Content-Type: application/json' \
    -d '{"model": "%s", "prompt": "Once upon a time", "max_tokens": 64, "temperature": 0}'
Press Ctrl-C to stop.

`, c.Endpoint, o.Prefill, o.Decode, o.Both, o.Model, c.Endpoint, id)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "\nstopping: draining every process")
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "duet-local:", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
