package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/duet-llm/duet/cluster/embedetcd"
)

// Config is everything a member needs to join a cluster: where etcd is and how to reach it,
// the lease and write timings, and the gossip layer's address and timings.
type Config struct {
	// ClusterName is the first segment of every key (/<cluster>/nodes/...) and the gossip label:
	// members of different clusters never mix, even on one etcd or one network.
	ClusterName string

	Etcd EtcdConfig

	// EmbeddedEtcd runs a single-member etcd inside this process (local use); Etcd.Endpoints
	// then points at it. EmbeddedEtcdDir holds its data; the two addresses are its listeners.
	EmbeddedEtcd           bool
	EmbeddedEtcdDir        string
	EmbeddedEtcdClientAddr string
	EmbeddedEtcdPeerAddr   string

	// LeaseTTL is the lease a member's key lives under: a member that stops renewing it (killed,
	// partitioned from etcd) disappears from etcd after at most this long. Whole seconds, >= 1.
	LeaseTTL time.Duration
	// LoadWriteInterval is the least time between two load writes to etcd (rate limit); the
	// draining flag is written at once regardless.
	LoadWriteInterval time.Duration
	// RevokeTimeout bounds the lease revoke on shutdown.
	RevokeTimeout time.Duration

	Gossip GossipConfig
}

// EtcdConfig says how to reach etcd.
type EtcdConfig struct {
	Endpoints []string
	// CACert verifies the server; Cert and Key authenticate this client (both or neither).
	// Any of them set turns TLS on.
	CACert, Cert, Key string
	// Username and Password (or PasswordFile) turn on etcd auth.
	Username     string
	Password     string
	PasswordFile string
	// DialTimeout bounds connecting; RequestTimeout bounds each request this package makes.
	DialTimeout    time.Duration
	RequestTimeout time.Duration
}

// GossipConfig configures the memberlist gossip layer.
type GossipConfig struct {
	// Enabled turns gossip on. Off, failures are detected only through lease expiry (LeaseTTL)
	// and load travels only through etcd.
	Enabled bool
	// Bind is host:port to listen on (UDP and TCP). Port 0 picks one.
	Bind string
	// Advertise is host:port others reach this member at; empty derives it from Bind (a
	// wildcard bind advertises the first private address).
	Advertise string
	// Seeds are gossip addresses to join besides those found in etcd.
	Seeds []string
	// Key, if set, encrypts and authenticates gossip (AES-GCM); 16, 24 or 32 bytes. Every
	// member of the cluster needs the same key.
	Key []byte

	// Failure-detector timings; see doc.go for how they add up to the detection bound.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
	// LoadInterval is how often a member re-broadcasts its state even when nothing changed
	// (a change is broadcast at once).
	LoadInterval time.Duration
	// PushPullInterval is the period of full-state exchange with one random member.
	PushPullInterval time.Duration
	// RejoinInterval is how often a member compares gossip membership with etcd and joins the
	// members it does not see (heals partitions and restarts).
	RejoinInterval time.Duration
}

// Defaults.
const (
	DefaultClusterName    = "duet"
	DefaultEtcdEndpoint   = "http://127.0.0.1:2379"
	DefaultLeaseTTL       = 5 * time.Second
	DefaultGossipPort     = 7946
	defaultDialTimeout    = 5 * time.Second
	defaultRequestTimeout = 2 * time.Second
)

// DefaultConfig returns the configuration the flags start from.
func DefaultConfig() Config {
	return Config{
		ClusterName: DefaultClusterName,
		Etcd: EtcdConfig{
			Endpoints:      []string{DefaultEtcdEndpoint},
			DialTimeout:    defaultDialTimeout,
			RequestTimeout: defaultRequestTimeout,
		},
		EmbeddedEtcdDir:        "duet-etcd",
		EmbeddedEtcdClientAddr: embedetcd.DefaultClientAddr,
		EmbeddedEtcdPeerAddr:   embedetcd.DefaultPeerAddr,
		LeaseTTL:               DefaultLeaseTTL,
		LoadWriteInterval:      250 * time.Millisecond,
		RevokeTimeout:          time.Second,
		Gossip: GossipConfig{
			Enabled:          true,
			Bind:             net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultGossipPort)),
			ProbeInterval:    200 * time.Millisecond,
			ProbeTimeout:     100 * time.Millisecond,
			SuspicionMult:    3,
			GossipInterval:   100 * time.Millisecond,
			LoadInterval:     200 * time.Millisecond,
			PushPullInterval: 10 * time.Second,
			RejoinInterval:   2 * time.Second,
		},
	}
}

// AddFlags registers the operator-facing settings on fs, each name prefixed by prefix (""
// gives --etcd-endpoints, "cluster-" gives --cluster-etcd-endpoints). Values already in c are
// the defaults.
func (c *Config) AddFlags(fs *flag.FlagSet, prefix string) {
	p := func(n string) string { return prefix + n }
	fs.StringVar(&c.ClusterName, p("cluster-name"), c.ClusterName, "cluster name: etcd key prefix /<name>/nodes/ and gossip label")
	fs.Var((*listFlag)(&c.Etcd.Endpoints), p("etcd-endpoints"), "comma-separated etcd endpoints")
	fs.StringVar(&c.Etcd.CACert, p("etcd-cacert"), c.Etcd.CACert, "CA bundle that verifies etcd's certificate (turns TLS on)")
	fs.StringVar(&c.Etcd.Cert, p("etcd-cert"), c.Etcd.Cert, "client certificate for etcd (with --"+p("etcd-key")+")")
	fs.StringVar(&c.Etcd.Key, p("etcd-key"), c.Etcd.Key, "client key for etcd")
	fs.StringVar(&c.Etcd.Username, p("etcd-username"), c.Etcd.Username, "etcd user (turns auth on)")
	fs.StringVar(&c.Etcd.Password, p("etcd-password"), c.Etcd.Password, "etcd password (prefer --"+p("etcd-password-file")+")")
	fs.StringVar(&c.Etcd.PasswordFile, p("etcd-password-file"), c.Etcd.PasswordFile, "file holding the etcd password")
	fs.DurationVar(&c.Etcd.DialTimeout, p("etcd-dial-timeout"), c.Etcd.DialTimeout, "etcd connect timeout")
	fs.DurationVar(&c.Etcd.RequestTimeout, p("etcd-request-timeout"), c.Etcd.RequestTimeout, "timeout of each etcd request")
	fs.BoolVar(&c.EmbeddedEtcd, p("embedded-etcd"), c.EmbeddedEtcd, "run a single-member etcd in this process (local use)")
	fs.StringVar(&c.EmbeddedEtcdDir, p("embedded-etcd-dir"), c.EmbeddedEtcdDir, "data directory of the embedded etcd")
	fs.StringVar(&c.EmbeddedEtcdClientAddr, p("embedded-etcd-client-addr"), c.EmbeddedEtcdClientAddr, "client listen address of the embedded etcd")
	fs.StringVar(&c.EmbeddedEtcdPeerAddr, p("embedded-etcd-peer-addr"), c.EmbeddedEtcdPeerAddr, "peer listen address of the embedded etcd")
	fs.DurationVar(&c.LeaseTTL, p("lease-ttl"), c.LeaseTTL, "TTL of the lease a member registers under (whole seconds)")
	fs.DurationVar(&c.LoadWriteInterval, p("load-write-interval"), c.LoadWriteInterval, "least time between two load writes to etcd")
	fs.BoolVar(&c.Gossip.Enabled, p("gossip"), c.Gossip.Enabled, "gossip with other members for fast failure detection and load")
	fs.StringVar(&c.Gossip.Bind, p("gossip-bind"), c.Gossip.Bind, "gossip listen address host:port (UDP and TCP; port 0 picks one)")
	fs.StringVar(&c.Gossip.Advertise, p("gossip-advertise"), c.Gossip.Advertise, "gossip address others reach this member at (default: from the bind address)")
	fs.Var((*listFlag)(&c.Gossip.Seeds), p("gossip-seeds"), "comma-separated gossip addresses to join besides those in etcd")
	fs.Var((*keyFlag)(&c.Gossip.Key), p("gossip-key"), "base64 key (16, 24 or 32 bytes) that encrypts gossip")
}

// Validate checks c and returns an error wrapping ErrBadConfig naming the first bad setting.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if c.ClusterName == "" || strings.ContainsAny(c.ClusterName, "/ \t\n") {
		return bad("cluster name %q: want a non-empty name without '/' or spaces", c.ClusterName)
	}
	if !c.EmbeddedEtcd && len(c.Etcd.Endpoints) == 0 {
		return bad("no etcd endpoints (and no --embedded-etcd)")
	}
	for _, e := range c.Etcd.Endpoints {
		if strings.TrimSpace(e) == "" {
			return bad("empty etcd endpoint")
		}
	}
	if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
		return bad("etcd client cert and key go together")
	}
	if c.Etcd.Password != "" && c.Etcd.PasswordFile != "" {
		return bad("etcd password and password file are exclusive")
	}
	if (c.Etcd.Password != "" || c.Etcd.PasswordFile != "") && c.Etcd.Username == "" {
		return bad("etcd password without username")
	}
	if c.Etcd.DialTimeout <= 0 || c.Etcd.RequestTimeout <= 0 {
		return bad("etcd timeouts must be > 0")
	}
	if c.EmbeddedEtcd {
		if c.EmbeddedEtcdDir == "" {
			return bad("embedded etcd needs a data dir")
		}
		for _, a := range []string{c.EmbeddedEtcdClientAddr, c.EmbeddedEtcdPeerAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return bad("embedded etcd address %q: %v", a, err)
			}
		}
	}
	if c.LeaseTTL < time.Second || c.LeaseTTL%time.Second != 0 {
		return bad("lease ttl %v: want whole seconds >= 1s", c.LeaseTTL)
	}
	if c.LoadWriteInterval < 0 {
		return bad("load write interval %v < 0", c.LoadWriteInterval)
	}
	if c.RevokeTimeout <= 0 {
		return bad("revoke timeout must be > 0")
	}
	return c.Gossip.validate(bad)
}

func (g GossipConfig) validate(bad func(string, ...any) error) error {
	if !g.Enabled {
		return nil
	}
	if _, err := splitHostPort(g.Bind); err != nil {
		return bad("gossip bind %q: %v", g.Bind, err)
	}
	if g.Advertise != "" {
		h, err := splitHostPort(g.Advertise)
		if err != nil {
			return bad("gossip advertise %q: %v", g.Advertise, err)
		}
		if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
			return bad("gossip advertise %q: want an IP address, not a wildcard or name", g.Advertise)
		}
	}
	for _, s := range g.Seeds {
		if _, err := splitHostPort(s); err != nil {
			return bad("gossip seed %q: %v", s, err)
		}
	}
	switch len(g.Key) {
	case 0, 16, 24, 32:
	default:
		return bad("gossip key is %d bytes: want 16, 24 or 32", len(g.Key))
	}
	if g.ProbeInterval <= 0 || g.ProbeTimeout <= 0 || g.ProbeTimeout >= g.ProbeInterval {
		return bad("gossip probe timeout %v must be > 0 and below the probe interval %v", g.ProbeTimeout, g.ProbeInterval)
	}
	if g.SuspicionMult < 1 {
		return bad("gossip suspicion multiplier %d < 1", g.SuspicionMult)
	}
	if g.GossipInterval <= 0 || g.LoadInterval <= 0 || g.PushPullInterval <= 0 || g.RejoinInterval <= 0 {
		return bad("gossip intervals must be > 0")
	}
	return nil
}

func splitHostPort(s string) (string, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("bad port %q", p)
	}
	return h, nil
}

// EmbeddedEtcdConfig is the embedded etcd configuration that c asks for.
func (c Config) EmbeddedEtcdConfig() embedetcd.Config {
	return embedetcd.Config{
		Dir:                     c.EmbeddedEtcdDir,
		ClientAddr:              c.EmbeddedEtcdClientAddr,
		PeerAddr:                c.EmbeddedEtcdPeerAddr,
		AutoCompactionRetention: time.Hour,
	}
}

// NewEtcdClient makes an etcd client from c, with TLS and auth when configured. It reads the
// certificate and password files but does not wait for a connection: the client connects in
// the background and every request retries until its own deadline. Close it when done.
func (c Config) NewEtcdClient(lg *zap.Logger) (*clientv3.Client, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	cc := clientv3.Config{
		Endpoints:            c.Etcd.Endpoints,
		DialTimeout:          c.Etcd.DialTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Username:             c.Etcd.Username,
		Password:             c.Etcd.Password,
		Logger:               lg.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
	}
	if c.Etcd.PasswordFile != "" {
		b, err := os.ReadFile(c.Etcd.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd password file: %w", err)
		}
		cc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if c.Etcd.CACert != "" || c.Etcd.Cert != "" {
		tc, err := c.Etcd.tlsConfig()
		if err != nil {
			return nil, err
		}
		cc.TLS = tc
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

func (e EtcdConfig) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CACert != "" {
		pem, err := os.ReadFile(e.CACert)
		if err != nil {
			return nil, fmt.Errorf("read etcd ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: etcd ca %s holds no PEM certificate", ErrBadConfig, e.CACert)
		}
		tc.RootCAs = pool
	}
	if e.Cert != "" {
		kp, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return nil, fmt.Errorf("load etcd client cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}

// listFlag is a comma-separated list flag; setting it replaces the default.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// keyFlag is a base64-encoded key.
type keyFlag []byte

func (k *keyFlag) String() string {
	if len(*k) == 0 {
		return ""
	}
	return "(set)"
}

func (k *keyFlag) Set(s string) error {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	*k = b
	return nil
}
