// Package member runs one duet process as a cluster member: it serves the
// process's gRPC services with the standard health service, registers the
// member in etcd (and gossip) with its address, keeps its load current,
// and shuts down in the order that loses no request:
//
//  1. ctx ends (SIGTERM): health turns NOT_SERVING and the member is marked
//     draining in etcd and gossip, so routers send it no new work;
//  2. the drain function waits for the work in flight, bounded by the
//     drain timeout (what Kubernetes' terminationGracePeriodSeconds must
//     cover);
//  3. the gRPC server stops gracefully, then the lease is revoked.
//
// Node, prefill and decode binaries share it, so they drain the same way.
package member

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/embedetcd"
)

// flagTimeout bounds the wait for etcd to store the draining flag.
const flagTimeout = 2 * time.Second

// Config is how a member serves and leaves.
type Config struct {
	// GRPCListen is the gRPC listen address (port 0 picks one).
	GRPCListen string
	// GRPCAdvertise is the address others dial (default: the listener's
	// address, with a wildcard host replaced by the host's first address).
	GRPCAdvertise string
	// DrainTimeout bounds how long in-flight work may take after SIGTERM.
	DrainTimeout time.Duration
}

// Member is one process in the cluster.
type Member struct {
	cfg  Config
	cl   cluster.Config
	node cluster.Node
	lg   *zap.Logger

	mu   sync.Mutex
	reg  *cluster.Registrar
	cli  *clientv3.Client
	load *cluster.Load // latest load, applied when the registrar exists
}

// New returns a member for node (its GRPCAddr is filled in by Run). It
// does no I/O.
func New(cfg Config, cl cluster.Config, node cluster.Node, lg *zap.Logger) *Member {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	return &Member{cfg: cfg, cl: cl, node: node, lg: lg}
}

// UpdateLoad reports the member's load; it never blocks.
func (m *Member) UpdateLoad(l cluster.Load) {
	m.mu.Lock()
	reg := m.reg
	if reg == nil {
		m.load = &l
	}
	m.mu.Unlock()
	if reg != nil {
		reg.UpdateLoad(l)
	}
}

// Collector exports the member's registration and gossip (the
// Registrar's collector) and etcd's health (cluster.EtcdCollector), from
// the moment Run has them; register it before Run.
func (m *Member) Collector() prometheus.Collector { return memberCollector{m} }

type memberCollector struct{ m *Member }

func (c memberCollector) parts() []prometheus.Collector {
	c.m.mu.Lock()
	reg := c.m.reg
	c.m.mu.Unlock()
	out := []prometheus.Collector{cluster.EtcdCollector(c.m.etcdClient, 0)}
	if reg != nil {
		out = append(out, reg.Collector())
	}
	return out
}

func (m *Member) etcdClient() *clientv3.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cli
}

// Describe sends nothing: the member's series appear once it runs (an
// unchecked collector).
func (c memberCollector) Describe(chan<- *prometheus.Desc) {}

func (c memberCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.parts() {
		p.Collect(ch)
	}
}

// Run serves until ctx ends, then drains and leaves (see the package
// comment). register adds the process's services to the gRPC server;
// drain waits for in-flight work (it gets a context bounded by the drain
// timeout); work runs the process's own loops and must return when its
// context ends, which happens after the gRPC server stopped.
func (m *Member) Run(ctx context.Context, register func(*grpc.Server), drain func(context.Context) error, work func(context.Context) error) error {
	lis, err := net.Listen("tcp", m.cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("listen grpc %s: %w", m.cfg.GRPCListen, err)
	}
	adv := m.cfg.GRPCAdvertise
	if adv == "" {
		adv = AdvertiseAddr(lis.Addr())
	}
	node := m.node
	node.GRPCAddr = adv

	var etcd *embedetcd.Server
	cl := m.cl
	if cl.EmbeddedEtcd {
		if etcd, err = embedetcd.Start(ctx, cl.EmbeddedEtcdConfig(), m.lg); err != nil {
			lis.Close()
			return err
		}
		defer etcd.Close()
		cl.Etcd.Endpoints = etcd.Endpoints()
	}
	cli, err := cl.NewEtcdClient(m.lg)
	if err != nil {
		lis.Close()
		return err
	}
	defer func() {
		m.mu.Lock()
		m.cli = nil
		m.mu.Unlock()
		cli.Close()
	}()
	reg := cluster.NewRegistrar(cl, cli, node, m.lg)
	m.mu.Lock()
	m.reg, m.cli = reg, cli
	if m.load != nil {
		reg.UpdateLoad(*m.load)
	}
	m.mu.Unlock()

	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	register(srv)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	regCtx, stopReg := context.WithCancel(context.Background())
	defer stopReg()
	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var g errgroup.Group
	g.Go(func() error { return reg.Run(regCtx) })
	g.Go(func() error { return work(workCtx) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	m.lg.Info("member serving", zap.String("id", node.ID), zap.String("role", string(node.Role)), zap.String("grpc-addr", adv))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-served:
		runErr = fmt.Errorf("grpc server: %w", runErr)
	}

	// Leave: stop taking work, finish what is running, then go.
	m.lg.Info("draining", zap.String("id", node.ID), zap.Duration("timeout", m.cfg.DrainTimeout))
	hs.Shutdown()
	dctx, cancel := context.WithTimeout(context.Background(), m.cfg.DrainTimeout)
	// The draining flag goes out by gossip at once and to etcd as soon as
	// etcd takes it; waiting for etcd is bounded so that a node whose etcd
	// is down still drains and stops in time.
	fctx, fcancel := context.WithTimeout(dctx, flagTimeout)
	if err := reg.Drain(fctx); err != nil {
		m.lg.Warn("draining flag not confirmed by etcd", zap.Error(err))
	}
	fcancel()
	if err := drain(dctx); err != nil {
		m.lg.Warn("drain incomplete", zap.Error(err))
	}
	cancel()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		<-stopped
	}
	if runErr == nil {
		<-served
	}
	stopWork()
	stopReg()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		runErr = errors.Join(runErr, err)
	}
	m.lg.Info("member left", zap.String("id", node.ID))
	return runErr
}

// AdvertiseAddr turns a listener address into one others can dial: a
// wildcard host becomes the host's first non-loopback address (or
// loopback when there is none).
func AdvertiseAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	port := ta.Port
	addrs, _ := net.InterfaceAddrs()
	for _, ad := range addrs {
		if ipn, ok := ad.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), fmt.Sprint(port))
		}
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}

// NewLogger builds the process logger: level is debug, info, warn or
// error; format is json (for log collectors) or console (for people).
func NewLogger(level, format string) (*zap.Logger, error) {
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console", "":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("log format %q (want json or console)", format)
	}
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg.Level = lvl
	return cfg.Build()
}

// AdvertiseFor is the address to advertise for a listen address: a
// wildcard host (":9401", "0.0.0.0:9401") becomes the host's first
// non-loopback address; other addresses are returned as they are. A
// wildcard with port 0 cannot be advertised before listening and is an
// error.
func AdvertiseFor(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, nil
	}
	if port == "0" {
		return "", fmt.Errorf("listen address %s has a wildcard host and port 0: give an advertise address", listen)
	}
	p, _ := net.LookupPort("tcp", port)
	return AdvertiseAddr(&net.TCPAddr{IP: net.IPv4zero, Port: p}), nil
}
