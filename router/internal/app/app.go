// Package app wires the router process: the OpenAI HTTP API, the
// dispatcher, and the membership view it routes by.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/embedetcd"
	"github.com/duet-llm/duet/cluster/envflag"
	"github.com/duet-llm/duet/cluster/member"
	"github.com/duet-llm/duet/engine/version"
	"github.com/duet-llm/duet/router/internal/api"
	"github.com/duet-llm/duet/router/internal/dashboard"
	"github.com/duet-llm/duet/router/internal/dispatch"
	"github.com/duet-llm/duet/router/internal/metrics"
)

// EnvPrefix is the prefix of the environment variables that set flags.
const EnvPrefix = "DUET_"

// Config is the router's configuration.
type Config struct {
	Listen       string
	ID           string
	Models       []string // GGUF paths, optionally id=path
	APIKeys      []string
	APIKeysFile  string
	MaxContext   int
	DrainTimeout time.Duration
	LogLevel     string
	LogFormat    string
	API          api.Config
	Dispatch     dispatch.Config
	Cluster      cluster.Config
}

// DefaultConfig is what the flags start from.
func DefaultConfig() Config {
	return Config{Listen: "0.0.0.0:8080", DrainTimeout: 30 * time.Second, LogLevel: "info", LogFormat: "console",
		API: api.DefaultConfig(), Dispatch: dispatch.DefaultConfig(), Cluster: cluster.DefaultConfig()}
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP listen address of the OpenAI-compatible API")
	fs.StringVar(&c.ID, "id", c.ID, "router id in the cluster (default: <host>-router-<pid>)")
	fs.Func("model", "GGUF model to serve, as path or id=path (repeatable); the router reads only its tokenizer", func(s string) error {
		c.Models = append(c.Models, s)
		return nil
	})
	fs.Func("api-key", "accepted API key (repeatable); with none, no key is required", func(s string) error {
		c.APIKeys = append(c.APIKeys, s)
		return nil
	})
	fs.StringVar(&c.APIKeysFile, "api-keys-file", c.APIKeysFile, "file with one accepted API key per line")
	fs.IntVar(&c.MaxContext, "max-context", c.MaxContext, "context length to enforce (0: the model's; set it to the nodes' --max-context)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long in-flight requests may run after SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: console or json")
	fs.DurationVar(&c.Dispatch.ReserveTimeout, "reserve-timeout", c.Dispatch.ReserveTimeout, "deadline of a KV reservation on a decode node")
	fs.DurationVar(&c.Dispatch.FirstTokenTimeout, "first-token-timeout", c.Dispatch.FirstTokenTimeout, "deadline of the prefill leg, queueing included")
	fs.DurationVar(&c.Dispatch.TokenTimeout, "token-timeout", c.Dispatch.TokenTimeout, "longest wait for the next token from a decode node")
	fs.IntVar(&c.Dispatch.Attempts, "attempts", c.Dispatch.Attempts, "node pairs a request may try before its first token")
	c.API.AddFlags(fs)
	c.Cluster.AddFlags(fs, "")
}

// FromEnv fills flags not given on the command line from DUET_* variables.
func (c *Config) FromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	return envflag.Apply(fs, EnvPrefix, lookup)
}

// Validate checks the configuration and fills in derived values.
func (c *Config) Validate() error {
	if len(c.Models) == 0 {
		return errors.New("--model is required")
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-router-%d", strings.ReplaceAll(host, "_", "-"), os.Getpid())
	}
	if err := cluster.ValidateID(c.ID); err != nil {
		return err
	}
	if c.APIKeysFile != "" {
		b, err := os.ReadFile(c.APIKeysFile)
		if err != nil {
			return fmt.Errorf("api keys file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k := strings.TrimSpace(line); k != "" && !strings.HasPrefix(k, "#") {
				c.APIKeys = append(c.APIKeys, k)
			}
		}
	}
	return c.Cluster.Validate()
}

// readiness is ready while not draining and the cluster can serve.
type readiness struct {
	d        *dispatch.Dispatcher
	draining atomic.Bool
}

func (r *readiness) Ready(model string) bool { return !r.draining.Load() && r.d.Ready(model) }

// routes serves /metrics and /dashboard next to the API, which answers
// every other path. Like the probes, neither needs an API key.
func routes(api, metrics, dash http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/metrics":
			metrics.ServeHTTP(w, r)
		case p == "/dashboard" || strings.HasPrefix(p, "/dashboard/"):
			dash.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// buildInfo is duet_build_info: 1, labelled with what this process is.
func buildInfo(id string, role cluster.Role) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "duet_build_info",
		Help:        "Always 1; the labels say which build and role this process runs.",
		ConstLabels: prometheus.Labels{"version": version.Version, "role": string(role), "id": id}},
		func() float64 { return 1 })
}

// Run serves the API until ctx ends, then drains: /readyz turns 503 (the
// load balancer stops sending), the listener closes and in-flight requests
// finish within the drain timeout.
func Run(ctx context.Context, cfg Config) error {
	lg, err := member.NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer lg.Sync()
	lg = lg.With(zap.String("node", cfg.ID))
	for _, spec := range cfg.Models {
		id, path, ok := strings.Cut(spec, "=")
		if !ok {
			id, path = "", spec
		}
		m, err := api.LoadModel(id, path)
		if err != nil {
			return err
		}
		if cfg.MaxContext > 0 && cfg.MaxContext < m.ContextLength {
			m.ContextLength = cfg.MaxContext
		}
		cfg.API.Models = append(cfg.API.Models, m)
	}
	cfg.API.APIKeys = append(cfg.API.APIKeys, cfg.APIKeys...)

	cl := cfg.Cluster
	if cl.EmbeddedEtcd {
		etcd, err := embedetcd.Start(ctx, cl.EmbeddedEtcdConfig(), lg)
		if err != nil {
			return err
		}
		defer etcd.Close()
		cl.Etcd.Endpoints = etcd.Endpoints()
	}
	cli, err := cl.NewEtcdClient(lg)
	if err != nil {
		return err
	}
	defer cli.Close()

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	reg := cluster.NewRegistrar(cl, cli, cluster.Node{ID: cfg.ID, Role: cluster.RoleRouter,
		HTTPAddr: member.AdvertiseAddr(lis.Addr()), Version: version.Version, StartedAt: time.Now()}, lg.Named("membership"))
	dir := cluster.NewDirectory(cl, cli, reg, lg.Named("directory"))
	disp := dispatch.New(cfg.Dispatch, dir, lg.Named("dispatch"))
	defer disp.Close()
	ready := &readiness{d: disp}
	rec := metrics.NewRecorder(metrics.Config{})
	cfg.API.Observer = rec
	a, err := api.New(cfg.API, disp, ready, lg.Named("api"))
	if err != nil {
		lis.Close()
		return err
	}
	for _, m := range a.Models() {
		lg.Info("serving model", zap.Any("model", m))
	}
	// One registry for the process: the router's own series, the cluster
	// view, etcd's health, and the Go runtime's.
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(cfg.ID, cluster.RoleRouter), rec, metrics.DispatchCollector(disp), metrics.LoadCollector(a),
		dir.Collector(), reg.Collector(), cluster.EtcdCollector(func() *clientv3.Client { return cli }, 0))
	dash := dashboard.New(dashboard.Config{RouterID: cfg.ID, Version: version.Version},
		dashboard.Sources{Members: dir.Snapshot, Traffic: rec.Traffic, Load: a.Load})
	srv := &http.Server{Handler: routes(a.Handler(), promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}), dash.Handler()),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var g errgroup.Group
	g.Go(func() error { return reg.Run(bg) })
	g.Go(func() error { return dir.Run(bg) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	lg.Info("router listening", zap.String("addr", lis.Addr().String()), zap.String("version", version.Version))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-served:
	}
	lg.Info("draining", zap.Duration("timeout", cfg.DrainTimeout))
	ready.draining.Store(true)
	reg.SetDraining(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	if err := srv.Shutdown(sctx); err != nil {
		lg.Warn("requests still running at the drain deadline", zap.Error(err))
		srv.Close()
	}
	cancel()
	if runErr == nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}
	stopBG()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}
