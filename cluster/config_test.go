package cluster

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.AddFlags(fs, "")
	err := fs.Parse([]string{
		"--cluster-name=prod", "--etcd-endpoints=https://e1:2379, https://e2:2379",
		"--etcd-username=duet", "--etcd-password=pw", "--lease-ttl=3s",
		"--gossip-bind=10.0.0.5:0", "--gossip-advertise=10.0.0.5:7946", "--gossip-seeds=10.0.0.6:7946,10.0.0.7:7946",
		"--gossip-key=" + "AAAAAAAAAAAAAAAAAAAAAA==", "--embedded-etcd", "--embedded-etcd-dir=/tmp/x",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterName != "prod" || strings.Join(cfg.Etcd.Endpoints, "|") != "https://e1:2379|https://e2:2379" ||
		cfg.LeaseTTL != 3*time.Second || len(cfg.Gossip.Seeds) != 2 || len(cfg.Gossip.Key) != 16 ||
		!cfg.EmbeddedEtcd || cfg.EmbeddedEtcdDir != "/tmp/x" || cfg.Etcd.Username != "duet" {
		t.Fatalf("parsed %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	// A prefix namespaces every flag.
	fs = flag.NewFlagSet("y", flag.ContinueOnError)
	cfg2 := DefaultConfig()
	cfg2.AddFlags(fs, "cluster-")
	fs.SetOutput(io.Discard)
	if fs.Lookup("cluster-etcd-endpoints") == nil || fs.Lookup("etcd-endpoints") != nil {
		t.Error("prefix not applied")
	}
	if err := fs.Parse([]string{"--cluster-gossip-key=!!"}); err == nil {
		t.Error("bad base64 key accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"empty cluster", func(c *Config) { c.ClusterName = "" }},
		{"slash in cluster", func(c *Config) { c.ClusterName = "a/b" }},
		{"no endpoints", func(c *Config) { c.Etcd.Endpoints = nil }},
		{"blank endpoint", func(c *Config) { c.Etcd.Endpoints = []string{" "} }},
		{"cert without key", func(c *Config) { c.Etcd.Cert = "c.pem" }},
		{"password without user", func(c *Config) { c.Etcd.Password = "x" }},
		{"password and file", func(c *Config) { c.Etcd.Username, c.Etcd.Password, c.Etcd.PasswordFile = "u", "x", "f" }},
		{"fractional ttl", func(c *Config) { c.LeaseTTL = 1500 * time.Millisecond }},
		{"short ttl", func(c *Config) { c.LeaseTTL = 0 }},
		{"negative write interval", func(c *Config) { c.LoadWriteInterval = -1 }},
		{"no revoke timeout", func(c *Config) { c.RevokeTimeout = 0 }},
		{"embedded without dir", func(c *Config) { c.EmbeddedEtcd, c.EmbeddedEtcdDir = true, "" }},
		{"embedded bad addr", func(c *Config) { c.EmbeddedEtcd, c.EmbeddedEtcdClientAddr = true, "nope" }},
		{"bad bind", func(c *Config) { c.Gossip.Bind = "1.2.3.4" }},
		{"bad bind port", func(c *Config) { c.Gossip.Bind = "1.2.3.4:70000" }},
		{"wildcard advertise", func(c *Config) { c.Gossip.Advertise = "0.0.0.0:7946" }},
		{"name advertise", func(c *Config) { c.Gossip.Advertise = "host:7946" }},
		{"bad seed", func(c *Config) { c.Gossip.Seeds = []string{"x"} }},
		{"bad key", func(c *Config) { c.Gossip.Key = make([]byte, 7) }},
		{"probe timeout >= interval", func(c *Config) { c.Gossip.ProbeTimeout = c.Gossip.ProbeInterval }},
		{"suspicion 0", func(c *Config) { c.Gossip.SuspicionMult = 0 }},
		{"zero gossip interval", func(c *Config) { c.Gossip.GossipInterval = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("Validate() = %v, want ErrBadConfig", err)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	c := DefaultConfig()
	c.Gossip = GossipConfig{} // off: its settings are not checked
	if err := c.Validate(); err != nil {
		t.Errorf("gossip off: %v", err)
	}
	c = DefaultConfig()
	c.EmbeddedEtcd, c.Etcd.Endpoints = true, nil
	if err := c.Validate(); err != nil {
		t.Errorf("embedded without endpoints: %v", err)
	}
}

func TestNewEtcdClientFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"missing ca":       func(c *Config) { c.Etcd.CACert = filepath.Join(dir, "none.pem") },
		"junk ca":          func(c *Config) { c.Etcd.CACert = junk },
		"junk cert":        func(c *Config) { c.Etcd.Cert, c.Etcd.Key = junk, junk },
		"missing password": func(c *Config) { c.Etcd.Username, c.Etcd.PasswordFile = "u", filepath.Join(dir, "none") },
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			mod(&c)
			cli, err := c.NewEtcdClient(nil)
			if err == nil {
				_ = cli.Close()
				t.Fatal("no error")
			}
		})
	}
}
