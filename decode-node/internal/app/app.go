// Package app wires a decode node process (role decode, or both for a
// colocated node): engine, KV receiver, decode service, the colocated
// prefill service, and cluster membership.
package app

import (
	"context"
	"errors"
	"flag"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/member"
	"github.com/duet-llm/duet/decode-node/decode"
	"github.com/duet-llm/duet/engine/version"
	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
	"github.com/duet-llm/duet/prefill-node/node"
	"github.com/duet-llm/duet/prefill-node/prefill"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
	nodev1 "github.com/duet-llm/duet/proto/duet/node/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// Config is the decode node's configuration: what every node has, and
// how long a reservation may wait.
type Config struct {
	node.Config
	ReserveTTL time.Duration
}

// DefaultConfig is what the flags start from.
func DefaultConfig() Config {
	return Config{Config: node.DefaultConfig(cluster.RoleDecode), ReserveTTL: 2 * time.Minute}
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	c.Config.AddFlags(fs)
	fs.DurationVar(&c.ReserveTTL, "reserve-ttl", c.ReserveTTL, "longest a reservation waits for its prefill's commit (the router asks for its first-token timeout; this caps it)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Role != cluster.RoleDecode && c.Role != cluster.RoleBoth {
		return errors.New("--role must be decode or both")
	}
	return c.Config.Validate()
}

// Run serves as a decode (or colocated) node until ctx ends, then drains.
func Run(ctx context.Context, cfg Config) error {
	n, err := node.Open(cfg.Config)
	if err != nil {
		return err
	}
	defer n.Close()
	lg := n.Log

	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg.Named("kv"))
	defer recv.Close()
	ms, err := n.OpenMetrics() // before Join: the descriptor advertises it
	if err != nil {
		return err
	}
	mctx, stopMetrics := context.WithCancel(context.Background())
	var mg errgroup.Group
	mg.Go(func() error { return ms.Run(mctx) })
	defer func() {
		stopMetrics()
		_ = mg.Wait() // it failed only if it could not serve; the node served anyway
	}()
	// Load goes to the member once it exists (see Join below).
	var (
		mu   sync.Mutex
		load cluster.Load
		m    *member.Member
	)
	report := func(f func(*cluster.Load)) {
		mu.Lock()
		f(&load)
		l, mm := load, m
		mu.Unlock()
		if mm != nil {
			mm.UpdateLoad(l)
		}
	}
	// The advertised KV address: the flag, else the listen address with a
	// wildcard host resolved; with port 0 the listener's own address.
	adv := cfg.KVAdvertise
	if adv == "" {
		if adv, err = member.AdvertiseFor(cfg.KVListen); err != nil {
			return err
		}
		if _, port, _ := net.SplitHostPort(adv); port == "0" {
			adv = ""
		}
	}
	dec, err := decode.New(decode.Config{NodeID: cfg.ID, Role: string(cfg.Role), Version: version.Version, ReserveTTL: cfg.ReserveTTL,
		AllowLocal: cfg.Role == cluster.RoleBoth,
		OnLoad: func(l decode.Load) {
			report(func(c *cluster.Load) { c.FreeBlocks, c.RunningSeqs = l.FreeBlocks, l.RunningSeqs })
		}}, n.Engine, recv, lg.Named("decode")) // registers the KV pool with recv
	if err != nil {
		return err
	}
	scfg := tcp.ServerConfig{Addr: cfg.KVListen, Advertise: adv}
	if acc := n.Acceptor(recv, cfg.KVListen); acc != nil {
		defer acc.Close()
		scfg.RDMA = acc
	}
	kvSrv := tcp.NewServer(scfg, recv, lg.Named("kv"))
	kvCtx, stopKV := context.WithCancel(context.Background())
	defer stopKV()
	var kvg errgroup.Group
	kvg.Go(func() error { return kvSrv.Run(kvCtx) })
	select {
	case <-kvSrv.Ready():
	case <-ctx.Done():
	}
	if kvSrv.Addr() == nil {
		stopKV()
		return kvg.Wait()
	}
	if adv == "" {
		adv = kvSrv.Addr().String()
	}
	mu.Lock()
	m = n.Join(adv)
	mu.Unlock()
	report(func(c *cluster.Load) { c.FreeBlocks = n.Engine.Pool().FreeBlocks() })

	var (
		pre       *prefill.Server
		runSender func(context.Context) error
		drain     = dec.Drain
	)
	if cfg.Role == cluster.RoleBoth {
		var sender kvtransfer.Transport
		if sender, runSender, err = n.Sender(); err != nil {
			return err
		}
		pre = prefill.New(prefill.Config{NodeID: cfg.ID, Role: string(cfg.Role), Version: version.Version,
			OnLoad: func(l prefill.Load) {
				report(func(c *cluster.Load) { c.QueuedPrefillTokens = int(l.QueuedTokens) })
			}}, n.Engine, sender, dec, lg.Named("prefill"))
		drain = func(ctx context.Context) error { return errors.Join(pre.Drain(ctx), dec.Drain(ctx)) }
		n.Metrics.MustRegister(pre.Collector())
	}
	n.Metrics.MustRegister(dec.Collector(), n.KVCollector(recv))
	err = m.Run(ctx,
		func(s *grpc.Server) {
			decodev1.RegisterDecodeServiceServer(s, dec)
			nodev1.RegisterNodeServiceServer(s, dec)
			if pre != nil {
				prefillv1.RegisterPrefillServiceServer(s, pre)
			}
		},
		drain,
		func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return dec.Run(ctx) })
			if pre != nil {
				g.Go(func() error { return runSender(ctx) })
				g.Go(func() error { return pre.Run(ctx) })
			}
			return g.Wait()
		})
	stopKV()
	return errors.Join(err, kvg.Wait())
}
