// Package node is what every duet node process shares, prefill, decode or
// both: its flags, the model and engine it loads, and its membership in
// the cluster. The prefill and decode binaries build on it so they are
// configured, registered and drained the same way.
package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/envflag"
	"github.com/duet-llm/duet/cluster/member"
	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/version"
	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/rdma"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// EnvPrefix is the prefix of the environment variables that set flags.
const EnvPrefix = "DUET_"

// Config is a node process's configuration.
type Config struct {
	Model     string
	ID        string
	Role      cluster.Role
	Host      string
	Zone      string
	Member    member.Config
	Engine    engine.Options
	Cluster   cluster.Config
	LogLevel  string
	LogFormat string

	// KV transfer: where a decode node takes writes, and how a prefill
	// node sends them.
	KVListen    string
	KVAdvertise string
	KVTransport string // auto, tcp or rdma
	KVConns     int
	KVCRC       bool

	// MetricsListen is where /metrics and /healthz are served over HTTP
	// ("" turns it off; port 0 picks one, advertised in the descriptor's
	// http_addr).
	MetricsListen string
}

// DefaultConfig is the configuration the flags start from.
func DefaultConfig(role cluster.Role) Config {
	c := Config{Role: role, Engine: engine.DefaultOptions(), Cluster: cluster.DefaultConfig(),
		LogLevel: "info", LogFormat: "console", KVTransport: "auto", KVConns: 4,
		Member:   member.Config{GRPCListen: "0.0.0.0:9400", DrainTimeout: 30 * time.Second},
		KVListen: "0.0.0.0:9401", MetricsListen: "0.0.0.0:9090"}
	if role == cluster.RolePrefill {
		c.Member.GRPCListen = "0.0.0.0:9500"
	}
	return c
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Model, "model", c.Model, "path of the GGUF model to serve (required)")
	fs.StringVar(&c.ID, "id", c.ID, "node id in the cluster (default: <host>-<role>-<pid>)")
	fs.Func("role", "what this node does: "+rolesFor(c.Role), func(s string) error {
		r, err := cluster.ParseRole(s)
		if err == nil && r == cluster.RoleRouter {
			err = fmt.Errorf("a node cannot have role router")
		}
		c.Role = r
		return err
	})
	fs.StringVar(&c.Host, "host", c.Host, "host name reported to the cluster (default: os hostname)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "zone or rack reported to the cluster (for placement)")
	fs.StringVar(&c.Member.GRPCListen, "grpc-listen", c.Member.GRPCListen, "gRPC listen address")
	fs.StringVar(&c.Member.GRPCAdvertise, "grpc-advertise", c.Member.GRPCAdvertise, "gRPC address others dial (default: from the listener)")
	fs.DurationVar(&c.Member.DrainTimeout, "drain-timeout", c.Member.DrainTimeout, "how long in-flight requests may run after SIGTERM")
	fs.StringVar(&c.KVListen, "kv-listen", c.KVListen, "KV transfer listen address (decode nodes)")
	fs.StringVar(&c.KVAdvertise, "kv-advertise", c.KVAdvertise, "KV transfer address others dial (default: from the listener)")
	fs.StringVar(&c.KVTransport, "kv-transport", c.KVTransport, "KV transport: auto (RDMA when both ends have it, else TCP), tcp or rdma")
	fs.IntVar(&c.KVConns, "kv-conns", c.KVConns, "parallel TCP connections per peer for KV transfer")
	fs.BoolVar(&c.KVCRC, "kv-crc", c.KVCRC, "checksum every KV write with CRC32C")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "HTTP listen address of /metrics and /healthz (\"\": off; port 0 picks one)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: console or json")
	c.Engine.AddFlags(fs)
	c.Cluster.AddFlags(fs, "")
}

func rolesFor(r cluster.Role) string {
	if r == cluster.RolePrefill {
		return "prefill"
	}
	return "decode or both (colocated prefill and decode)"
}

// FromEnv fills flags not given on the command line from DUET_* variables.
func (c *Config) FromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	return envflag.Apply(fs, EnvPrefix, lookup)
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	if c.Model == "" {
		return errors.New("--model is required")
	}
	if _, err := kvtransfer.ParseMode(c.KVTransport); err != nil {
		return err
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.ID == "" {
		host := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
				return r
			}
			return '-'
		}, c.Host)
		c.ID = fmt.Sprintf("%s-%s-%d", host, c.Role, os.Getpid())
	}
	if err := cluster.ValidateID(c.ID); err != nil {
		return err
	}
	if err := c.Engine.Validate(); err != nil {
		return err
	}
	return c.Cluster.Validate()
}

// Node is a node process's shared parts, opened from a Config.
type Node struct {
	Cfg    Config
	Log    *zap.Logger
	Model  *engine.Model
	Engine *engine.Engine
	Member *member.Member
	// Metrics is the process's one registry: the engine's, the cluster
	// member's and the Go runtime's series are in it from the start (the
	// member's once Join made it); the binary adds its servers'. Serve it
	// with OpenMetrics.
	Metrics *prometheus.Registry
	// HTTPAddr is the advertised address of /metrics (set by OpenMetrics).
	HTTPAddr string

	mu       sync.Mutex
	senders  []*tcp.Transport    // the KV transports Sender made (tcp, rdma); mu
	selStats kvtransfer.Counters // the Selector's choices
}

// Open builds the logger, loads the model and allocates the engine (and
// with it the whole KV pool).
func Open(cfg Config) (*Node, error) {
	lg, err := member.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return nil, err
	}
	lg = lg.With(zap.String("node", cfg.ID))
	// Compute takes the CPUs the process was given; the Go scheduler gets
	// at least two threads, so that gossip, lease keep-alives and gRPC are
	// never queued behind a forward pass on a node pinned to one CPU.
	if n := runtime.GOMAXPROCS(0); n < 2 {
		if cfg.Engine.Workers == 0 {
			cfg.Engine.Workers = n
		}
		runtime.GOMAXPROCS(2)
	}
	m, err := engine.OpenModel(cfg.Model)
	if err != nil {
		return nil, err
	}
	eng, err := engine.New(m, cfg.Engine)
	if err != nil {
		m.Close()
		return nil, err
	}
	layout := eng.Layout()
	lg.Info("engine ready", zap.String("model", m.ID), zap.String("role", string(cfg.Role)),
		zap.String("kernel", engine.KernelName()), zap.Stringer("kv-layout", layout),
		zap.Int("kv-blocks", eng.Pool().NumBlocks()), zap.String("kv-memory", engine.FormatBytes(int64(len(eng.Pool().Arena())))),
		zap.Int("max-context", eng.MaxContext()), zap.String("version", version.Version))
	n := &Node{Cfg: cfg, Log: lg, Model: m, Engine: eng, Metrics: prometheus.NewRegistry()}
	n.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo(cfg.ID, cfg.Role))
	return n, nil
}

// Describe is the node's descriptor for the cluster (the member fills in
// its gRPC address).
func (n *Node) Describe(kvAddr string) cluster.Node {
	l := n.Engine.Layout()
	return cluster.Node{ID: n.Cfg.ID, Role: n.Cfg.Role, KVAddr: kvAddr, ModelID: n.Model.ID,
		KVLayout: cluster.KVLayout{DType: l.DType.String(), BlockTokens: l.BlockTokens, Layers: l.Layers,
			KVHeads: l.KVHeads, HeadDim: l.HeadDim, Kernel: engine.KernelName()},
		TotalBlocks: n.Engine.Pool().NumBlocks(), Host: n.Cfg.Host, Zone: n.Cfg.Zone, RDMADevices: RDMADevices(), HTTPAddr: n.HTTPAddr,
		Version: version.Version, StartedAt: time.Now()}
}

// Join creates the node's cluster membership.
func (n *Node) Join(kvAddr string) *member.Member {
	n.Member = member.New(n.Cfg.Member, n.Cfg.Cluster, n.Describe(kvAddr), n.Log)
	n.Metrics.MustRegister(n.Member.Collector())
	return n.Member
}

// Sender builds the KV transport a prefill sends with: TCP, and RDMA when
// this host has a device, the flags allow it and the peer offers it (see
// kvtransfer.Selector, which falls back to TCP and says why). run runs the
// transports' connection loops for as long as they are used.
func (n *Node) Sender() (tr kvtransfer.Transport, run func(context.Context) error, err error) {
	mode, err := kvtransfer.ParseMode(n.Cfg.KVTransport)
	if err != nil {
		return nil, nil, err
	}
	lg := n.Log.Named("kv")
	tcfg := tcp.Config{Conns: n.Cfg.KVConns, CRC: n.Cfg.KVCRC}
	t := tcp.New(tcfg, lg)
	runs := []func(context.Context) error{t.Run}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.senders = append(n.senders, t)
	sc := kvtransfer.SelectorConfig{Mode: mode, TCP: t, Stats: &n.selStats}
	if mode != kvtransfer.ModeTCP {
		var disc rdma.Discovery
		if reason := rdmaUnavailable(&disc); reason != "" {
			lg.Info("kv sender without rdma", zap.String("reason", reason))
		} else {
			rt, dialer := rdma.NewTransport(tcfg, rdma.Config{Discovery: disc}, lg)
			dialer.RegisterSource(n.Engine.Pool().Arena())
			sc.RDMA = rt
			runs = append(runs, rt.Run)
			n.senders = append(n.senders, rt)
		}
	}
	sel, err := kvtransfer.NewSelector(sc, lg)
	if err != nil {
		return nil, nil, err
	}
	return sel, func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		for _, r := range runs {
			g.Go(func() error { return r(ctx) })
		}
		return g.Wait()
	}, nil
}

// Acceptor opens the RDMA side of a decode node's KV server when this host
// has a device and the flags allow it; nil (with the reason logged) means
// TCP only. Register the KV pool with recv first.
func (n *Node) Acceptor(recv *kvtransfer.Receiver, listen string) *rdma.Acceptor {
	lg := n.Log.Named("kv")
	mode, _ := kvtransfer.ParseMode(n.Cfg.KVTransport)
	if mode == kvtransfer.ModeTCP {
		return nil
	}
	var disc rdma.Discovery
	if reason := rdmaUnavailable(&disc); reason != "" {
		lg.Info("kv receiver without rdma", zap.String("reason", reason))
		return nil
	}
	host, _, _ := net.SplitHostPort(listen)
	acc, err := rdma.OpenAcceptor(rdma.Config{Discovery: disc}, recv, net.ParseIP(host), lg)
	if err != nil {
		lg.Warn("kv receiver without rdma", zap.Error(err))
		return nil
	}
	return acc
}

// RDMADevices lists this host's RDMA devices (for the cluster descriptor).
func RDMADevices() []string {
	lib, err := rdma.Load()
	if err != nil {
		return nil
	}
	devs, _ := lib.Devices()
	return devs
}

func rdmaUnavailable(d *rdma.Discovery) string {
	if !d.HasDevices() {
		return "no RDMA device in /sys/class/infiniband"
	}
	if _, err := rdma.Load(); err != nil {
		return err.Error()
	}
	return ""
}

// Close releases the engine and the model.
func (n *Node) Close() error {
	_ = n.Log.Sync() // fails on terminals; nothing to do about it
	return errors.Join(n.Engine.Close(), n.Model.Close())
}
