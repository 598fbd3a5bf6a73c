package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/cluster/embedetcd"
)

// childEnv, when set, makes the test binary run one member (Registrar with gossip) configured by
// the JSON in it, until killed: the crash tests SIGKILL a real process.
const childEnv = "DUET_CLUSTER_TEST_CHILD"

type childSpec struct {
	Endpoints []string `json:"endpoints"`
	Cluster   string   `json:"cluster"`
	ID        string   `json:"id"`
	Role      Role     `json:"role"`
	LeaseTTL  string   `json:"lease_ttl"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	// No goroutine may outlive the tests, etcd's included: Close and Shutdown wait for theirs.
	goleak.VerifyTestMain(m)
}

func runChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	cfg := DefaultConfig()
	cfg.ClusterName = s.Cluster
	cfg.Etcd.Endpoints = s.Endpoints
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Gossip.RejoinInterval = 500 * time.Millisecond
	if d, err := time.ParseDuration(s.LeaseTTL); err == nil {
		cfg.LeaseTTL = d
	}
	lg := zap.NewNop()
	cli, err := cfg.NewEtcdClient(lg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child client:", err)
		return 2
	}
	reg := NewRegistrar(cfg, cli, Node{ID: s.ID, Role: s.Role, TotalBlocks: 100}, lg)
	reg.UpdateLoad(Load{FreeBlocks: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-reg.Ready()
		fmt.Printf("READY %s\n", reg.Node().GossipAddr)
		// The parent closing our stdin is the signal to stop cleanly.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := reg.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child run:", err)
		return 1
	}
	return 0
}

// child is a member running in another process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startChild(t testing.TB, s childSpec) *child {
	t.Helper()
	b, _ := json.Marshal(s)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.kill() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				line <- a
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case c.addr = <-line:
	case <-time.After(20 * time.Second):
		t.Fatalf("child %s never registered", s.ID)
	}
	return c
}

// kill sends SIGKILL and reaps the process; safe to call twice.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// stop asks the child to stop cleanly (revoke, leave) and waits for it.
func (c *child) stop(t testing.TB) {
	_ = c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child exit: %v", err)
	}
}

func startEtcd(t testing.TB) (*embedetcd.Server, embedetcd.Config) {
	t.Helper()
	cfg := embedetcd.Config{
		Dir:           filepath.Join(t.TempDir(), "etcd"),
		ClientAddr:    "127.0.0.1:0",
		PeerAddr:      "127.0.0.1:0",
		UnsafeNoFsync: true,
	}
	srv, err := embedetcd.Start(context.Background(), cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cfg.ClientAddr = srv.ClientAddr()
	return srv, cfg
}

// eventually bounds waits that stand for no requirement: they only stop a broken test.
const eventually = 10 * time.Second

// slowdown stretches requirement deadlines under the race detector (race_test.go).
var slowdown = 1

// within scales a requirement's deadline for this build.
func within(d time.Duration) time.Duration { return d * time.Duration(slowdown) }

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// testConfig is a Config for one test: its own cluster name, fast timings, loopback gossip.
func testConfig(t testing.TB, endpoints []string) Config {
	cfg := DefaultConfig()
	cfg.ClusterName = strings.ToLower(nonName.ReplaceAllString(t.Name(), "-"))
	cfg.Etcd.Endpoints = endpoints
	cfg.LeaseTTL = 2 * time.Second
	cfg.Etcd.DialTimeout = 2 * time.Second
	cfg.Etcd.RequestTimeout = time.Second
	cfg.Gossip.Bind = "127.0.0.1:0"
	cfg.Gossip.RejoinInterval = 500 * time.Millisecond
	return cfg
}

func newClient(t testing.TB, cfg Config) *clientv3.Client {
	t.Helper()
	cli, err := cfg.NewEtcdClient(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// runner runs components for one test and stops them (and checks their errors) at cleanup,
// then closes the clients it made: components stop before their clients go away.
type runner struct {
	t       testing.TB
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	clients []*clientv3.Client
}

func (r *runner) client(cfg Config) *clientv3.Client {
	r.t.Helper()
	cli, err := cfg.NewEtcdClient(zap.NewNop())
	if err != nil {
		r.t.Fatal(err)
	}
	r.clients = append(r.clients, cli)
	return cli
}

func newRunner(t testing.TB) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{t: t, ctx: ctx, cancel: cancel}
	t.Cleanup(r.stop)
	return r
}

func (r *runner) run(name string, f func(context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := f(r.ctx); err != nil {
			r.t.Errorf("%s: %v", name, err)
		}
	}()
}

func (r *runner) stop() {
	r.cancel()
	r.wg.Wait()
	for _, c := range r.clients {
		_ = c.Close()
	}
	r.clients = nil
}

// member is a Registrar (and optionally a Directory) in this process.
type member struct {
	reg *Registrar
	dir *Directory
	cli *clientv3.Client
}

func startMember(t testing.TB, r *runner, cfg Config, node Node, withDir bool) *member {
	t.Helper()
	cli := r.client(cfg)
	lg := zap.NewNop()
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		lg = zaptest.NewLogger(tt, zaptest.Level(zap.InfoLevel)).Named(node.ID)
	}
	m := &member{cli: cli, reg: NewRegistrar(cfg, cli, node, lg)}
	r.run("registrar "+node.ID, m.reg.Run)
	if withDir {
		m.dir = NewDirectory(cfg, cli, m.reg, lg)
		r.run("directory "+node.ID, m.dir.Run)
	}
	select {
	case <-m.reg.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not registered", node.ID)
	}
	return m
}

// waitFor polls cond until it holds or limit passes; it returns how long it took.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func routable(d *Directory, role Role, id string) bool {
	for _, v := range d.Routable(role) {
		if v.ID == id {
			return true
		}
	}
	return false
}
