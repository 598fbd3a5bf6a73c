package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/tests/localcluster"
)

// badInput: malformed requests get 4xx with an OpenAI-shaped error and
// change nothing; the cluster keeps serving.
func badInput(t *testing.T, c *localcluster.Cluster) {
	long := strings.Repeat("the cat sat on the mat. ", 700) // far beyond the 2048-token context
	cases := []struct {
		name, path, ctype string
		body              string
		status            int
	}{
		{"malformed json", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": `, 400},
		{"not an object", "/v1/completions", "application/json", `[1, 2]`, 400},
		{"wrong type prompt", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": 42}`, 400},
		{"wrong type max_tokens", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "a", "max_tokens": "ten"}`, 400},
		{"missing prompt", "/v1/completions", "application/json", `{"model": "stories260K"}`, 400},
		{"missing model", "/v1/completions", "application/json", `{"prompt": "hi"}`, 400},
		{"missing messages", "/v1/chat/completions", "application/json", `{"model": "stories260K"}`, 400},
		{"prompt longer than context", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "` + long + `"}`, 400},
		{"negative max_tokens", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "a", "max_tokens": -5}`, 400},
		{"huge max_tokens", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "a", "max_tokens": 100000000}`, 400},
		{"unknown model", "/v1/completions", "application/json", `{"model": "gpt-9", "prompt": "a"}`, 404},
		{"invalid utf-8", "/v1/completions", "application/json", "{\"model\": \"stories260K\", \"prompt\": \"a\xff\xfeb\"}", 400},
		{"bad temperature", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "a", "temperature": 7}`, 400},
		{"unsupported n", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "a", "n": 3}`, 400},
		{"oversized body", "/v1/completions", "application/json", `{"model": "stories260K", "prompt": "` + strings.Repeat("x", 5<<20) + `"}`, 413},
		{"wrong content type", "/v1/completions", "text/plain", `{"model": "stories260K", "prompt": "a"}`, 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, c.Endpoint+tc.path, bytes.NewReader([]byte(tc.body)))
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			var e struct {
				Error *apiError `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error body: %s", b)
			}
		})
	}
	// Still serving.
	code, got, err := complete(context.Background(), c.Endpoint, greedyBody("Once upon a time", 8))
	if err != nil || code != 200 || got.Choices[0].Text == "" {
		t.Fatalf("after bad input: %d %v", code, err)
	}
}

// clientDisconnect: a client that goes away mid-stream frees its
// reservation.
func clientDisconnect(t *testing.T, c *localcluster.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	chunks := 0
	_, err := stream(ctx, c.Endpoint, greedyBody("Once upon a time", 1800), func(string) {
		if chunks++; chunks == 10 {
			cancel()
		}
	})
	if err == nil && chunks < 10 {
		t.Fatalf("stream ended after %d chunks", chunks)
	}
	allFree(t, c)
}

func decodeNodes(c *localcluster.Cluster) []*localcluster.Proc {
	var out []*localcluster.Proc
	for _, n := range c.Nodes() {
		if !n.Exited() && n.Role == cluster.RoleDecode {
			out = append(out, n)
		}
	}
	return out
}

// busyDecode waits for a decode node with a running sequence.
func busyDecode(t *testing.T, ctx context.Context, c *localcluster.Cluster) *localcluster.Proc {
	t.Helper()
	for ctx.Err() == nil {
		for _, n := range decodeNodes(c) {
			if info, err := c.Info(ctx, n); err == nil && info.GetRunning() > 0 {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no decode node is running a sequence")
	return nil
}

// lateNode: a decode node started later receives traffic within 2 s of
// registering.
func lateNode(t *testing.T, c *localcluster.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := c.AddNode(cluster.RoleDecode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitRegistered(ctx, n); err != nil {
		t.Fatal(err)
	}
	registered := time.Now()
	for {
		if code, _, err := complete(ctx, c.Endpoint, greedyBody("The little dog", 4)); err != nil || code != 200 {
			t.Fatalf("request: %d %v", code, err)
		}
		info, err := c.Info(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if info.GetRequests() > 0 {
			break
		}
		if time.Since(registered) > 2*time.Second {
			t.Fatalf("%s got no request within 2s of registering", n.Name)
		}
	}
	t.Logf("%s served its first request %v after registering", n.Name, time.Since(registered))
}

// drainingNode: a decode node told to stop (SIGTERM, as Kubernetes scales
// in) finishes its in-flight request and gets no new ones.
func drainingNode(t *testing.T, c *localcluster.Cluster, m testModel, long int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := want(t, m.path, "Once upon a time", long)
	type result struct {
		s   streamed
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := stream(ctx, c.Endpoint, m.body("Once upon a time", long), nil)
		done <- result{s, err}
	}()
	n := busyDecode(t, ctx, c)
	before, err := c.Info(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 5; i++ {
		if code, got, err := complete(ctx, c.Endpoint, m.body(prompts[i], 4)); err != nil || code != 200 {
			t.Fatalf("request during drain: %d %v %+v", code, err, got.Error)
		}
	}
	if after, err := c.Info(ctx, n); err != nil {
		t.Fatalf("draining node gone before its request finished: %v", err)
	} else if after.GetRequests() != before.GetRequests() || !after.GetDraining() {
		t.Fatalf("draining node took %d new requests (draining=%v)", after.GetRequests()-before.GetRequests(), after.GetDraining())
	}
	r := <-done
	if r.err != nil || r.s.err != nil || r.s.finish != "length" || r.s.text != w.text {
		t.Fatalf("in-flight request on the draining node: %v %+v finish %q, text equal %v", r.err, r.s.err, r.s.finish, r.s.text == w.text)
	}
	if err := n.Wait(); err != nil {
		t.Fatalf("drained node exit: %v", err)
	}
}

// killDecode: a decode node killed mid-generation ends the client's stream
// with an error event.
func killDecode(t *testing.T, c *localcluster.Cluster, m testModel) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var victim *localcluster.Proc
	chunks := 0
	s, err := stream(ctx, c.Endpoint, m.body("One day, a bird flew", 1800), func(string) {
		if chunks++; chunks == 5 {
			victim = busyDecode(t, ctx, c)
			victim.Kill()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if victim == nil || s.err == nil || !s.done {
		t.Fatalf("stream after killing the decode node: error event %+v, done %v, %d chunks, finish %q", s.err, s.done, s.chunks, s.finish)
	}
	t.Logf("client saw: %s", s.err.Message)
}

// killedNode: a node killed with SIGKILL gets no new request 3 s later.
func killedNode(t *testing.T, c *localcluster.Cluster, logs *logBuffer) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var victim *localcluster.Proc
	for _, n := range c.Nodes() {
		if !n.Exited() && n.Role == cluster.RolePrefill {
			victim = n
			break
		}
	}
	victim.Kill()
	killed := time.Now()
	time.Sleep(3 * time.Second)
	cut := time.Now()
	for i := 0; i < 10; i++ {
		if code, got, err := complete(ctx, c.Endpoint, greedyBody(prompts[i], 8)); err != nil || code != 200 {
			t.Fatalf("request %d after the kill: %d %v %+v", i, code, err, got.Error)
		}
	}
	if tried := logs.since(cut, "leg failed", victim.Name); len(tried) > 0 {
		t.Fatalf("router still sent work to %s %v after it was killed:\n%s", victim.Name, cut.Sub(killed), strings.Join(tried, ""))
	}
}

// etcdDown: with etcd gone, the router keeps routing on its last snapshot
// and the nodes keep serving.
func etcdDown(t *testing.T, c *localcluster.Cluster) {
	if err := c.Etcd.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	time.Sleep(500 * time.Millisecond) // let every client notice
	for i := 0; i < 5; i++ {
		w := want(t, model, prompts[i], 16)
		code, got, err := complete(ctx, c.Endpoint, greedyBody(prompts[i], 16))
		if err != nil || code != 200 || got.Choices[0].Text != w.text {
			t.Fatalf("request %d with etcd down: %d %v %+v", i, code, err, got.Error)
		}
	}
}
