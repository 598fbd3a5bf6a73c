// Package app wires a prefill node process: engine, KV sender, prefill
// service and cluster membership.
package app

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/engine/version"
	"github.com/duet-llm/duet/prefill-node/node"
	"github.com/duet-llm/duet/prefill-node/prefill"
	nodev1 "github.com/duet-llm/duet/proto/duet/node/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// Run serves as a prefill node until ctx ends, then drains.
func Run(ctx context.Context, cfg node.Config) error {
	n, err := node.Open(cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	sender, runSender, err := n.Sender()
	if err != nil {
		return err
	}
	ms, err := n.OpenMetrics() // before Join: the descriptor advertises it
	if err != nil {
		return err
	}
	mctx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	var mg errgroup.Group
	mg.Go(func() error { return ms.Run(mctx) })
	m := n.Join("")
	free := n.Engine.Pool().FreeBlocks
	srv := prefill.New(prefill.Config{NodeID: cfg.ID, Role: string(cfg.Role), Version: version.Version,
		OnLoad: func(l prefill.Load) {
			m.UpdateLoad(cluster.Load{QueuedPrefillTokens: int(l.QueuedTokens), RunningSeqs: l.Requests, FreeBlocks: free()})
		}}, n.Engine, sender, nil, n.Log.Named("prefill"))
	n.Metrics.MustRegister(srv.Collector(), n.KVCollector(nil))
	err = m.Run(ctx,
		func(s *grpc.Server) {
			prefillv1.RegisterPrefillServiceServer(s, srv)
			nodev1.RegisterNodeServiceServer(s, srv)
		},
		srv.Drain,
		func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return runSender(ctx) })
			g.Go(func() error { return srv.Run(ctx) })
			return g.Wait()
		})
	stopMetrics()
	return errors.Join(err, mg.Wait())
}
