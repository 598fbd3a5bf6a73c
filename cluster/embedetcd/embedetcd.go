package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Errors returned by Start.
var (
	ErrNoDir        = errors.New("embedetcd: data dir is required")
	ErrBadAddr      = errors.New("embedetcd: bad listen address")
	ErrStartTimeout = errors.New("embedetcd: server not ready before start timeout")
)

// Defaults for Config.
const (
	DefaultName         = "duet"
	DefaultClientAddr   = "127.0.0.1:2379"
	DefaultPeerAddr     = "127.0.0.1:2380"
	DefaultStartTimeout = 20 * time.Second
)

// Config says where the embedded member listens and keeps its data.
type Config struct {
	// Dir is the data directory. Required. It is created if missing; a restart with the same
	// Dir resumes the same keys and revisions.
	Dir string
	// Name is the member name; DefaultName when empty.
	Name string
	// ClientAddr is host:port for clients; DefaultClientAddr when empty. Port 0 picks one.
	ClientAddr string
	// PeerAddr is host:port for the (unused, single-member) peer listener; DefaultPeerAddr when
	// empty. Port 0 picks one.
	PeerAddr string
	// StartTimeout bounds Start; DefaultStartTimeout when zero.
	StartTimeout time.Duration
	// UnsafeNoFsync skips fsync: faster, and loses the last writes on a machine crash. Tests only.
	UnsafeNoFsync bool
	// AutoCompactionRetention, when non-zero, compacts history older than this periodically.
	AutoCompactionRetention time.Duration
}

// Server is a running embedded etcd member.
type Server struct {
	e          *embed.Etcd
	clientAddr string
	lg         *zap.Logger
	closing    *atomic.Bool
	closeOnce  sync.Once
}

// Start starts the member and waits until it serves, ctx is done or the start timeout passes.
// On any failure nothing is left running.
func Start(ctx context.Context, cfg Config, lg *zap.Logger) (*Server, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.Dir == "" {
		return nil, ErrNoDir
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = DefaultClientAddr
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = DefaultPeerAddr
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	clientURL, err := listenURL(cfg.ClientAddr)
	if err != nil {
		return nil, err
	}
	peerURL, err := listenURL(cfg.PeerAddr)
	if err != nil {
		return nil, err
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{clientURL}
	ec.AdvertiseClientUrls = []url.URL{clientURL}
	ec.ListenPeerUrls = []url.URL{peerURL}
	ec.AdvertisePeerUrls = []url.URL{peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.EnableGRPCGateway = false
	ec.Metrics = "basic"
	if cfg.AutoCompactionRetention > 0 {
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	}
	closing := new(atomic.Bool)
	elg := lg.Named("etcd").WithOptions(zap.IncreaseLevel(zap.WarnLevel),
		zap.WrapCore(func(c zapcore.Core) zapcore.Core { return &quietCore{Core: c, closing: closing} }))
	ec.Logger = "zap"
	ec.LogLevel = "warn"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(elg)

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	}
	s := &Server{e: e, lg: lg, closing: closing}
	if len(e.Clients) > 0 {
		s.clientAddr = e.Clients[0].Addr().String()
	}

	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedetcd: serve: %w", err)
	case <-timer.C:
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, ErrStartTimeout
	case <-ctx.Done():
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, ctx.Err()
	}
	lg.Info("embedded etcd ready", zap.String("client-addr", s.clientAddr), zap.String("data-dir", cfg.Dir))
	return s, nil
}

// ClientAddr is the host:port clients dial, with the port actually bound.
func (s *Server) ClientAddr() string { return s.clientAddr }

// Endpoints is ClientAddr as a list of etcd client endpoints.
func (s *Server) Endpoints() []string { return []string{"http://" + s.clientAddr} }

// Err reports a fatal serving error; it is closed after Close.
func (s *Server) Err() <-chan error { return s.e.Err() }

// Close stops the member and waits for its goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.e.Close()
	})
	return nil
}

func listenURL(hostport string) (url.URL, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return url.URL{}, fmt.Errorf("%w %q: %v", ErrBadAddr, hostport, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return url.URL{}, fmt.Errorf("%w %q: port", ErrBadAddr, hostport)
	}
	if host == "" {
		return url.URL{}, fmt.Errorf("%w %q: empty host", ErrBadAddr, hostport)
	}
	return url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}

// benign are etcd warnings that every embedded single-member start prints and that ask nothing
// of a duet operator: loopback, one port, simple auth tokens are what embedded mode is.
var benign = []string{
	"Running http and grpc server on single port",
	"simple token is not cryptographically signed",
}

// quietCore drops etcd's known-benign startup warnings, and everything below fatal once Close
// has begun: stopping a server makes every listener report "use of closed network connection"
// at error level, which is expected and would only alarm whoever reads the log.
type quietCore struct {
	zapcore.Core
	closing *atomic.Bool
}

func (c *quietCore) With(fields []zapcore.Field) zapcore.Core {
	return &quietCore{Core: c.Core.With(fields), closing: c.closing}
}

func (c *quietCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.closing.Load() && ent.Level < zapcore.FatalLevel {
		return ce
	}
	for _, m := range benign {
		if strings.HasPrefix(ent.Message, m) {
			return ce
		}
	}
	return c.Core.Check(ent, ce)
}
