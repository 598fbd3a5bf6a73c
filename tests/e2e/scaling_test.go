package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/tests/localcluster"
)

// steadyLoad keeps a few clients sending greedy requests, streaming and
// not, and checks every answer against duet-generate's. It is what
// clients do while an operator scales the pools.
type steadyLoad struct {
	mu       sync.Mutex
	ok       int
	failures []string
	wg       sync.WaitGroup
	stop     context.CancelFunc
}

const (
	loadWorkers   = 4
	loadMaxTokens = 96
	loadMaxPerW   = 5000 // a bound on each client's loop besides its deadline
)

func startLoad(t *testing.T, endpoint string) *steadyLoad {
	t.Helper()
	wants := make([]expected, len(prompts))
	for i, p := range prompts {
		wants[i] = want(t, model, p, loadMaxTokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l := &steadyLoad{stop: cancel}
	for w := range loadWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < loadMaxPerW && ctx.Err() == nil; i++ {
				k := (w*5 + i) % len(prompts)
				err := l.one(ctx, endpoint, prompts[k], wants[k], i%2 == 0)
				if ctx.Err() != nil {
					return // stopped mid-request: neither a success nor a failure
				}
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, fmt.Sprintf("client %d request %d (%q): %v", w, i, prompts[k], err))
				} else {
					l.ok++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *steadyLoad) one(ctx context.Context, endpoint, prompt string, w expected, streaming bool) error {
	body := greedyBody(prompt, loadMaxTokens)
	if streaming {
		s, err := stream(ctx, endpoint, body, nil)
		switch {
		case err != nil:
			return err
		case s.err != nil:
			return fmt.Errorf("error event: %s", s.err.Message)
		case !s.done:
			return fmt.Errorf("stream ended without [DONE]")
		case s.text != w.text:
			return fmt.Errorf("streamed %q, want %q", s.text, w.text)
		}
		return nil
	}
	code, got, err := complete(ctx, endpoint, body)
	switch {
	case err != nil:
		return err
	case code != http.StatusOK:
		return fmt.Errorf("status %d: %+v", code, got.Error)
	case len(got.Choices) != 1 || got.Choices[0].Text != w.text:
		return fmt.Errorf("answered %+v, want %q", got.Choices, w.text)
	}
	return nil
}

func (l *steadyLoad) counts() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, len(l.failures)
}

// waitOK waits until n more requests have succeeded.
func (l *steadyLoad) waitOK(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	start, _ := l.counts()
	for {
		ok, _ := l.counts()
		if ok >= start+n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d requests succeeded: %v", ok-start, n, ctx.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops the clients and returns the failures.
func (l *steadyLoad) finish() (ok int, failures []string) {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failures
}

// requests reads each node's served-request counter.
func requests(t *testing.T, ctx context.Context, c *localcluster.Cluster, nodes ...*localcluster.Proc) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, n := range nodes {
		info, err := c.Info(ctx, n)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		out[n.Name] = info.GetRequests()
	}
	return out
}

// TestScaleOutAndIn plays what `kubectl scale` does to the processes of
// each pool, under steady load on one prefill and one decode node: a
// second node of each role starts (scale out) and both new nodes receive
// work; then one node of each role gets SIGTERM (scale in), drains within
// its grace, revokes its lease, and no client request fails.
func TestScaleOutAndIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes and keeps them under load")
	}
	const drain = 15 * time.Second
	// A long lease: a key still there after a node exited would mean the
	// node left it to expire instead of revoking it.
	c, logs := start(t, localcluster.Options{Prefill: 1, Decode: 1, LeaseTTL: 30 * time.Second,
		NodeArgs: []string{"--drain-timeout", drain.String()}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var p1, d1 *localcluster.Proc
	for _, n := range c.Nodes() {
		switch n.Role {
		case cluster.RolePrefill:
			p1 = n
		case cluster.RoleDecode:
			d1 = n
		}
	}

	load := startLoad(t, c.Endpoint)
	defer load.finish()
	load.waitOK(t, ctx, 8)

	// Scale out: one more node in each pool.
	p2, err := c.AddNode(cluster.RolePrefill)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := c.AddNode(cluster.RoleDecode)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*localcluster.Proc{p2, d2} {
		if _, err := c.WaitRegistered(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	scaledOut := time.Now()
	all := []*localcluster.Proc{p1, d1, p2, d2}
	before := requests(t, ctx, c, all...)
	for {
		now := requests(t, ctx, c, all...)
		idle := 0
		for _, n := range all {
			if now[n.Name] == before[n.Name] {
				idle++
			}
		}
		if idle == 0 {
			t.Logf("after scaling out, every node served requests within %v: %v", time.Since(scaledOut).Round(time.Millisecond), now)
			break
		}
		if time.Since(scaledOut) > 20*time.Second {
			t.Fatalf("20s after scaling out, not every node has served a request: before %v, now %v", before, now)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Scale in: SIGTERM the first node of each pool while the decode node
	// is generating, as the kubelet does to a pod scaled away.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(ctx, d1)
		if err != nil {
			t.Fatal(err)
		}
		if info.GetRunning() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had a running sequence to drain", d1.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	termAt := time.Now()
	okAtTerm, _ := load.counts()
	for _, n := range []*localcluster.Proc{d1, p1} {
		if err := n.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*localcluster.Proc{d1, p1} {
		exited := make(chan error, 1)
		go func() { exited <- n.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", n.Name, err)
			}
		case <-time.After(drain + 10*time.Second):
			t.Fatalf("%s still running %v after SIGTERM (drain timeout %v)", n.Name, time.Since(termAt), drain)
		}
		if _, ok, err := c.Descriptor(ctx, n); err != nil || ok {
			t.Errorf("%s exited but its registration is still in etcd (lease not revoked; err %v)", n.Name, err)
		}
	}
	t.Logf("%s and %s drained and left %v after SIGTERM; %d requests succeeded meanwhile",
		d1.Name, p1.Name, time.Since(termAt).Round(time.Millisecond), func() int { ok, _ := load.counts(); return ok - okAtTerm }())

	// The remaining pair serves alone.
	survivors := requests(t, ctx, c, p2, d2)
	load.waitOK(t, ctx, 8)
	after := requests(t, ctx, c, p2, d2)
	for _, n := range []*localcluster.Proc{p2, d2} {
		if after[n.Name] == survivors[n.Name] {
			t.Errorf("%s served nothing after the scale-in", n.Name)
		}
	}
	ok, failures := load.finish()
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d requests succeeded, %d failed; %d leg retries logged after SIGTERM", ok, len(failures), len(logs.since(termAt, "leg failed")))
	allFree(t, c)
}
