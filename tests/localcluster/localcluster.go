// Package localcluster starts a whole duet cluster on this machine as real
// processes: an embedded etcd (in the calling process), a router, and any
// number of prefill, decode and colocated nodes, all on loopback. It is
// what `make run` starts (through duet-local) and what the end-to-end
// tests drive: they kill, stop and add nodes like Kubernetes would.
package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/embedetcd"
)

// Options describe the cluster.
type Options struct {
	// BinDir holds duet-router, duet-prefill and duet-decode.
	BinDir string
	// Model is the GGUF model every node serves.
	Model string
	// RouterAddr is the router's listen address ("" picks a free port).
	RouterAddr string
	// Prefill, Decode and Both are the node counts by role.
	Prefill, Decode, Both int
	// NodeArgs and RouterArgs are extra flags; RoleArgs adds flags for the
	// nodes of one role.
	NodeArgs, RouterArgs []string
	RoleArgs             map[cluster.Role][]string
	// LeaseTTL is the membership lease (default 2s, quick for tests).
	LeaseTTL time.Duration
	// Logs receives every process's output, each line prefixed by its
	// name; nil discards it.
	Logs io.Writer
	// DataDir holds the embedded etcd's data ("" makes a temporary one).
	DataDir string
}

// Proc is one process of the cluster.
type Proc struct {
	Name string
	Role cluster.Role
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Wait waits for the process to exit and returns its error.
func (p *Proc) Wait() error { <-p.done; return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process at once (SIGKILL) and waits for it.
func (p *Proc) Kill() error {
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// Cluster is a running local cluster.
type Cluster struct {
	opts     Options
	Etcd     *embedetcd.Server
	Endpoint string // the router's base URL, http://host:port
	Router   *Proc
	dataDir  string
	tmp      bool
	clusterN string

	mu    sync.Mutex
	nodes []*Proc
	seq   map[cluster.Role]int
	wg    sync.WaitGroup
}

// Start starts etcd, the nodes and the router. Stop it with Stop.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 2 * time.Second
	}
	if o.Logs == nil {
		o.Logs = io.Discard
	}
	c := &Cluster{opts: o, seq: map[cluster.Role]int{}, clusterN: "duet-local"}
	if c.dataDir = o.DataDir; c.dataDir == "" {
		d, err := os.MkdirTemp("", "duet-local-")
		if err != nil {
			return nil, err
		}
		c.dataDir, c.tmp = d, true
	}
	etcd, err := embedetcd.Start(ctx, embedetcd.Config{Dir: filepath.Join(c.dataDir, "etcd"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"}, zap.NewNop())
	if err != nil {
		c.cleanup()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	c.Etcd = etcd
	for role, n := range map[cluster.Role]int{cluster.RoleDecode: o.Decode, cluster.RolePrefill: o.Prefill, cluster.RoleBoth: o.Both} {
		for range n {
			if _, err := c.AddNode(role); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	// The router picks its own port unless told one, and is found at the
	// address it registers (no race for a port picked in advance).
	addr := o.RouterAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	args := append([]string{"--model", o.Model, "--listen", addr, "--id", "router-1"}, c.clusterArgs()...)
	if c.Router, err = c.spawn("router-1", cluster.RoleRouter, "duet-router", append(args, o.RouterArgs...)); err != nil {
		c.Stop()
		return nil, err
	}
	d, err := c.WaitRegistered(ctx, c.Router)
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.Endpoint = "http://" + d.HTTPAddr
	return c, nil
}

func (c *Cluster) clusterArgs() []string {
	return []string{"--etcd-endpoints", strings.Join(c.Etcd.Endpoints(), ","), "--cluster-name", c.clusterN,
		"--lease-ttl", c.opts.LeaseTTL.String(), "--gossip-bind", "127.0.0.1:0", "--log-format", "console"}
}

// AddNode starts one more node of role (as `kubectl scale` would); its
// name (and cluster id) is <role>-<n>.
func (c *Cluster) AddNode(role cluster.Role) (*Proc, error) {
	c.mu.Lock()
	c.seq[role]++
	name := fmt.Sprintf("%s-%d", role, c.seq[role])
	c.mu.Unlock()
	bin := "duet-decode"
	if role == cluster.RolePrefill {
		bin = "duet-prefill"
	}
	args := append([]string{"--model", c.opts.Model, "--id", name, "--role", string(role),
		"--grpc-listen", "127.0.0.1:0", "--kv-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, c.clusterArgs()...)
	args = append(args, c.opts.NodeArgs...)
	p, err := c.spawn(name, role, bin, append(args, c.opts.RoleArgs[role]...))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, p)
	c.mu.Unlock()
	return p, nil
}

// Nodes returns the nodes started so far (exited ones included).
func (c *Cluster) Nodes() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Proc(nil), c.nodes...)
}

func (c *Cluster) spawn(name string, role cluster.Role, bin string, args []string) (*Proc, error) {
	cmd := exec.Command(filepath.Join(c.opts.BinDir, bin), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Role: role, cmd: cmd, done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(c.opts.Logs, "%-10s | %s\n", name, sc.Text())
		}
		io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// WaitReady waits until every node started so far is registered and the
// router answers /readyz with 200 (a routable pair exists), or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for _, n := range c.Nodes() {
		if _, err := c.WaitRegistered(ctx, n); err != nil {
			return err
		}
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if c.Router.Exited() {
			return fmt.Errorf("router exited: %v", c.Router.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM to every process (they drain), waits up to grace,
// kills what is left, and stops etcd.
func (c *Cluster) Stop() error { return c.StopWithin(10 * time.Second) }

// StopWithin is Stop with a drain grace.
func (c *Cluster) StopWithin(grace time.Duration) error {
	procs := c.Nodes()
	if c.Router != nil {
		procs = append([]*Proc{c.Router}, procs...)
	}
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within %v", p.Name, grace))
		}
	}
	c.wg.Wait()
	c.cleanup()
	return errors.Join(errs...)
}

func (c *Cluster) cleanup() {
	if c.Etcd != nil {
		c.Etcd.Close()
		c.Etcd = nil
	}
	if c.tmp {
		os.RemoveAll(c.dataDir)
	}
}
