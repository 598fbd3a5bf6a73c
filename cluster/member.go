package cluster

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/duet-llm/duet/cluster/embedetcd"
)

// Member is one process's whole presence in a cluster, wired and stopped in the right order:
// the embedded etcd when Config.EmbeddedEtcd is set, one etcd client, the process's Registrar
// and, for routers and any node that wants to see its peers, a Directory merging this
// process's gossip. A binary needs nothing else:
//
//	m := cluster.NewMember(cfg, node, true, lg)
//	g.Go(func() error { return m.Run(ctx) })
//	... m.Registrar().UpdateLoad(l); m.Directory().Routable(cluster.RoleDecode) ...
//
// On stop the Registrar revokes its lease before the client closes, and the client closes
// before the embedded etcd stops.
type Member struct {
	cfg Config
	lg  *zap.Logger
	reg *Registrar
	dir *Directory
}

// NewMember prepares a Member; it does no I/O. withDirectory adds a Directory.
func NewMember(cfg Config, node Node, withDirectory bool, lg *zap.Logger) *Member {
	if lg == nil {
		lg = zap.NewNop()
	}
	m := &Member{cfg: cfg, lg: lg, reg: NewRegistrar(cfg, nil, node, lg)}
	if withDirectory {
		m.dir = NewDirectory(cfg, nil, m.reg, lg)
	}
	return m
}

// Registrar is the member's Registrar: UpdateLoad, SetDraining, Drain, Ready.
func (m *Member) Registrar() *Registrar { return m.reg }

// Directory is the member's Directory, nil when made without one.
func (m *Member) Directory() *Directory { return m.dir }

// Run starts the embedded etcd if configured, then runs the Registrar and Directory until ctx
// is done or one of them fails. It returns nil after a clean stop.
func (m *Member) Run(ctx context.Context) error {
	cfg := m.cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	var srv *embedetcd.Server
	if cfg.EmbeddedEtcd {
		var err error
		srv, err = embedetcd.Start(ctx, cfg.EmbeddedEtcdConfig(), m.lg)
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg.Etcd.Endpoints = srv.Endpoints()
	}
	cli, err := cfg.NewEtcdClient(m.lg)
	if err != nil {
		return err
	}
	defer cli.Close()
	// Neither component runs yet: handing them the client and the endpoints is race-free.
	m.reg.cfg, m.reg.cli = cfg, cli
	if m.dir != nil {
		m.dir.cfg, m.dir.cli = cfg, cli
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.reg.Run(gctx) })
	if m.dir != nil {
		g.Go(func() error { return m.dir.Run(gctx) })
	}
	if srv != nil {
		g.Go(func() error {
			select {
			case err, ok := <-srv.Err():
				if ok && err != nil {
					return fmt.Errorf("embedded etcd: %w", err)
				}
			case <-gctx.Done():
			}
			return nil
		})
	}
	return g.Wait()
}
