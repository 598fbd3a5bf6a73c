package e2e

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/duet-llm/duet/tests/localcluster"
)

const maxTokens = 48

// checkExact runs every prompt through the cluster (non-streaming) and
// compares with duet-generate.
func checkExact(t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range prompts {
		w := want(t, model, p, maxTokens)
		code, got, err := complete(ctx, c.Endpoint, greedyBody(p, maxTokens))
		if err != nil || code != http.StatusOK {
			t.Fatalf("%q: status %d, %v %+v", p, code, err, got.Error)
		}
		if got.Choices[0].Text != w.text || got.Usage.CompletionTokens != w.tokens {
			t.Fatalf("%q:\n got %q (%d tokens)\nwant %q (%d tokens)", p, got.Choices[0].Text, got.Usage.CompletionTokens, w.text, w.tokens)
		}
	}
}

// allFree checks that every live decode node has all its KV blocks free
// again: no request leaked a reservation.
func allFree(t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range c.Nodes() {
		if n.Exited() || n.Role == "prefill" {
			continue
		}
		for {
			info, err := c.Info(ctx, n)
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			if info.GetFreeBlocks() == info.GetTotalBlocks() && info.GetRunning() == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %d of %d blocks free, %d running", n.Name, info.GetFreeBlocks(), info.GetTotalBlocks(), info.GetRunning())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestPDExactness(t *testing.T) {
	c, _ := start(t, localcluster.Options{Prefill: 1, Decode: 1})
	checkExact(t, c)
	allFree(t, c)
	t.Run("bad input", func(t *testing.T) { badInput(t, c) })
	t.Run("client disconnect", func(t *testing.T) { clientDisconnect(t, c) })
	allFree(t, c)
	t.Run("etcd down", func(t *testing.T) { etcdDown(t, c) }) // last: the cluster keeps no etcd
}

func TestColocatedExactness(t *testing.T) {
	c, _ := start(t, localcluster.Options{Both: 1})
	checkExact(t, c)
	allFree(t, c)
}

// TestTwoByTwo runs 32 concurrent streaming requests on 2 prefill and 2
// decode nodes, then the membership and failure scenarios on the same
// cluster.
func TestTwoByTwo(t *testing.T) {
	c, logs := start(t, localcluster.Options{Prefill: 2, Decode: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := range 32 {
		p := prompts[i%len(prompts)]
		w := want(t, model, p, maxTokens)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := stream(ctx, c.Endpoint, greedyBody(p, maxTokens), nil)
			switch {
			case err != nil:
				errs <- p + ": " + err.Error()
			case s.err != nil:
				errs <- p + ": error event " + s.err.Message
			case !s.done || s.text != w.text:
				errs <- "text of " + p + " differs: " + s.text
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, n := range c.Nodes() {
		info, err := c.Info(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if info.GetRequests() == 0 {
			t.Errorf("%s served no request", n.Name)
		}
	}
	allFree(t, c)
	if t.Failed() {
		return
	}
	t.Run("late node gets traffic", func(t *testing.T) { lateNode(t, c) })
	t.Run("killed node gets no traffic", func(t *testing.T) { killedNode(t, c, logs) })
	allFree(t, c)
}
