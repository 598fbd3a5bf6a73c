// Command duet-bench-kv measures kvtransfer over loopback TCP against raw
// TCP measured in the same run: throughput of 1, 16 and 256 MiB transfers
// scattered over 16 KiB slots with 1 and 4 connections, and open-to-commit
// latency of a 64 KiB transfer against raw round trips. It prints a table
// and `RESULT <name> <value> <unit>` lines for the headline figures.
//
// Two raw baselines run beside kv, on as many connections with the same
// (default) socket buffers, into a buffer as large as the kv pool, all
// three prefaulted and taking turns: "raw" lands each copy in one
// contiguous window at a random place (the kernel's fastest copy: the
// strict bar), "raw-scat" reads it with readv into slots of kv's size at
// random places (what any receiver of paged KV pays, so kv/raw-scat is the
// protocol's own cost). With -cpuprofile it writes a pprof CPU profile.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("duet-bench-kv", flag.ContinueOnError)
	sizes := fs.String("sizes-mib", "1,16,256", "transfer sizes in MiB, comma separated")
	conns := fs.String("conns", "1,4", "connection counts, comma separated")
	fs.IntVar(&cfg.SlotSize, "slot-kib", cfg.SlotSize>>10, "slot size in KiB")
	fs.DurationVar(&cfg.Budget, "budget", cfg.Budget, "time to spend per throughput cell (at least 3 runs each)")
	fs.IntVar(&cfg.LatencyIters, "latency-iters", cfg.LatencyIters, "open-to-commit samples")
	fs.BoolVar(&cfg.CRC, "crc", false, "send CRC32C with every write")
	verbose := fs.Bool("v", false, "log at debug level")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.SlotSize <<= 10
	var err error
	if cfg.SizesMiB, err = ints(*sizes); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-kv: -sizes-mib:", err)
		return 2
	}
	if cfg.Conns, err = ints(*conns); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-kv: -conns:", err)
		return 2
	}
	lg := zap.NewNop()
	if *verbose {
		lg, _ = zap.NewDevelopment()
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench-kv:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "duet-bench-kv:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	if err := bench(ctx, cfg, lg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "duet-bench-kv:", err)
		return 1
	}
	fmt.Printf("# done in %.1fs\n", time.Since(start).Seconds())
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
