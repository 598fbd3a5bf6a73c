package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/synth"
	"github.com/duet-llm/duet/tests/localcluster"
)

// slowModel writes a synthetic model big enough that a long prompt takes
// seconds to prefill on one thread, with stories260K's tokenizer.
func slowModel(t *testing.T) string {
	t.Helper()
	src, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "slow.gguf")
	spec := synth.Spec{Name: "slow", Layers: 6, Dim: 384, Heads: 6, KVHeads: 6, FFN: 1024, ContextLen: 4096, Type: gguf.TypeF32, Seed: 3}
	if err := synth.WriteFile(path, spec, &src.Metadata); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSlowModel runs the scenarios that need a request to last: on a
// synthetic model big enough that a long prompt takes seconds to prefill
// and a long answer seconds to decode, with 2 prefill and 2 decode nodes.
func TestSlowModel(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: long prefills and generations")
	}
	slow := testModel{path: slowModel(t), id: "slow"}
	c, logs := start(t, localcluster.Options{Model: slow.path, Prefill: 2, Decode: 2,
		RoleArgs: map[cluster.Role][]string{
			cluster.RolePrefill: {"--max-batch-tokens", "32", "--threads", "1"},
			cluster.RoleDecode:  {"--threads", "1"},
		}})
	t.Run("prefill node killed mid-prefill", func(t *testing.T) { killPrefill(t, c, logs, slow) })
	t.Run("draining decode node", func(t *testing.T) { drainingNode(t, c, slow, 1500) })
	t.Run("killed decode node mid-generation", func(t *testing.T) { killDecode(t, c, slow) })
}

// killPrefill: a prefill node killed while it prefills a request; the
// router retries on the other prefill node and the client gets the right
// answer.
func killPrefill(t *testing.T, c *localcluster.Cluster, logs *logBuffer, slow testModel) {
	prompt := strings.Repeat("Lily and Tom went to the park and played with a big red ball. ", 110)
	const n = 8
	w := want(t, slow.path, prompt, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	type result struct {
		c   completion
		err error
	}
	done := make(chan result, 1)
	body := slow.body(prompt, n)
	go func() {
		code, got, err := complete(ctx, c.Endpoint, body)
		if err == nil && code != 200 {
			err = os.ErrInvalid
		}
		done <- result{got, err}
	}()
	var victim *localcluster.Proc
	for victim == nil {
		select {
		case r := <-done:
			t.Fatalf("the request ended before a prefill node was seen busy: %v %+v", r.err, r.c.Error)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		default:
		}
		for _, p := range c.Nodes() {
			if p.Role != cluster.RolePrefill {
				continue
			}
			if info, err := c.Info(ctx, p); err == nil && info.GetQueuedPrefillTokens() > 0 {
				victim = p
				break
			}
		}
	}
	killedAt := time.Now()
	victim.Kill()
	r := <-done
	if r.err != nil || len(r.c.Choices) == 0 {
		t.Fatalf("request after the prefill node died: %v %+v", r.err, r.c.Error)
	}
	if got := r.c.Choices[0].Text; got != w.text {
		t.Fatalf("got %q, want %q", got, w.text)
	}
	if retried := logs.since(killedAt.Add(-time.Second), "leg failed", victim.Name); len(retried) == 0 {
		t.Fatalf("the request finished without a retry: %s was killed too late to test the retry", victim.Name)
	}
	allFree(t, c)
}
