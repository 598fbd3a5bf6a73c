package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/tests/localcluster"
)

// TestObservability runs a cluster of every role (a prefill, a decode and
// a colocated node) with JSON debug logs, sends it traffic, and checks the
// three ways an operator watches it: the metrics of every process against
// docs/metrics.md, one request id in the logs of every process that served
// the request, and the router's live dashboard in headless Chromium.
func TestObservability(t *testing.T) {
	logArgs := []string{"--log-level", "debug", "--log-format", "json"}
	c, logs := start(t, localcluster.Options{Prefill: 1, Decode: 1, Both: 1, NodeArgs: logArgs, RouterArgs: logArgs})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Enough requests that both decode-capable nodes serve some (the
	// router spreads by free blocks, then running sequences, then at
	// random), streaming and not, completions and chat.
	const n = 12
	for i := range n {
		body := greedyBody(prompts[i%len(prompts)], 12)
		switch i % 3 {
		case 0:
			code, got, err := complete(ctx, c.Endpoint, body)
			if err != nil || code != http.StatusOK {
				t.Fatalf("request %d: %d %v %+v", i, code, err, got.Error)
			}
		case 1:
			s, err := stream(ctx, c.Endpoint, body, nil)
			if err != nil || s.err != nil || !s.done {
				t.Fatalf("stream %d: %v %+v", i, err, s.err)
			}
		case 2:
			resp, err := post(ctx, c.Endpoint+"/v1/chat/completions", map[string]any{"model": "stories260K", "max_tokens": 12,
				"temperature": 0, "messages": []map[string]string{{"role": "user", "content": prompts[i%len(prompts)]}}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("chat %d: status %d", i, resp.StatusCode)
			}
		}
	}
	allFree(t, c)

	t.Run("metrics", func(t *testing.T) { checkMetrics(t, ctx, c, n) })
	t.Run("request id in logs", func(t *testing.T) { checkRequestID(t, ctx, c, logs) })
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, ctx, c) })
}

// documented is one row of docs/metrics.md.
type documented struct {
	name, typ string
	labels    []string
	roles     []cluster.Role
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readMetricsDoc parses the metric tables of docs/metrics.md: rows of
// | `name` | type | labels | exposed by | meaning |.
func readMetricsDoc(t *testing.T) map[string]documented {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]documented{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `duet_") {
			continue
		}
		cols := strings.Split(strings.TrimSpace(line), "|")
		cols = cols[1 : len(cols)-1] // the row's leading and trailing bars
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if len(cols) != 5 {
			t.Fatalf("docs/metrics.md: a metric row needs 5 columns: %s", line)
		}
		d := documented{name: strings.Trim(cols[0], "`"), typ: cols[1]}
		for _, m := range backticked.FindAllStringSubmatch(cols[2], -1) {
			d.labels = append(d.labels, m[1])
		}
		for _, r := range strings.Split(cols[3], ",") {
			role, err := cluster.ParseRole(strings.TrimSpace(r))
			if err != nil {
				t.Fatalf("docs/metrics.md: %s: %v", d.name, err)
			}
			d.roles = append(d.roles, role)
		}
		if _, dup := out[d.name]; dup {
			t.Fatalf("docs/metrics.md lists %s twice", d.name)
		}
		out[d.name] = d
	}
	if len(out) < 20 {
		t.Fatalf("docs/metrics.md: only %d metrics found; is the table format intact?", len(out))
	}
	return out
}

// scrape reads a Prometheus text endpoint.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// value sums a family's samples whose labels include want (counters and
// gauges; for histograms, the sample count).
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			ok := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func checkMetrics(t *testing.T, ctx context.Context, c *localcluster.Cluster, n int) {
	doc := readMetricsDoc(t)
	procs := append([]*localcluster.Proc{c.Router}, c.Nodes()...)
	byRole := map[cluster.Role][]map[string]*dto.MetricFamily{}
	for _, p := range procs {
		url := c.Endpoint + "/metrics"
		if p != c.Router {
			var err error
			if url, err = c.MetricsURL(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		fams, err := scrape(ctx, url)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		byRole[p.Role] = append(byRole[p.Role], fams)
		// Every documented name is exposed, with its type and labels.
		for _, d := range doc {
			if !slices.Contains(d.roles, p.Role) {
				continue
			}
			f := fams[d.name]
			if f == nil {
				t.Errorf("%s (%s) does not expose %s", p.Name, p.Role, d.name)
				continue
			}
			if got := strings.ToLower(f.GetType().String()); got != d.typ {
				t.Errorf("%s: %s is a %s, documented as a %s", p.Name, d.name, got, d.typ)
			}
			var labels []string
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if !slices.Contains(labels, l.GetName()) {
						labels = append(labels, l.GetName())
					}
				}
			}
			sort.Strings(labels)
			want := slices.Clone(d.labels)
			sort.Strings(want)
			if len(f.GetMetric()) > 0 && !slices.Equal(labels, want) {
				t.Errorf("%s: %s has labels %v, documented %v", p.Name, d.name, labels, want)
			}
		}
		// Every duet_ name exposed is documented for this role.
		for name := range fams {
			if !strings.HasPrefix(name, "duet_") {
				continue
			}
			if d, ok := doc[name]; !ok || !slices.Contains(d.roles, p.Role) {
				t.Errorf("%s (%s) exposes %s, which docs/metrics.md does not list for %s", p.Name, p.Role, name, p.Role)
			}
		}
	}
	if t.Failed() {
		return
	}

	// The figures add up.
	router := byRole[cluster.RoleRouter][0]
	sum := func(roles []cluster.Role, name string, labels ...string) float64 {
		var s float64
		for _, r := range roles {
			for _, fams := range byRole[r] {
				s += value(fams, name, labels...)
			}
		}
		return s
	}
	decoders := []cluster.Role{cluster.RoleDecode, cluster.RoleBoth}
	prefillers := []cluster.Role{cluster.RolePrefill, cluster.RoleBoth}
	checks := []struct {
		what      string
		got, want float64
	}{
		{"router ok requests", value(router, "duet_router_requests_total", "outcome", "ok"), float64(n)},
		{"router requests not ok", value(router, "duet_router_requests_total") - value(router, "duet_router_requests_total", "outcome", "ok"), 0},
		{"router TTFT samples", value(router, "duet_router_ttft_seconds"), float64(n)},
		{"router prefill_compute stage samples", value(router, "duet_router_request_stage_seconds", "stage", "prefill_compute"), float64(n)},
		{"router routable decode-capable members", value(router, "duet_cluster_members", "role", "decode", "status", "routable") +
			value(router, "duet_cluster_members", "role", "both", "status", "routable"), 2},
		{"router etcd up", value(router, "duet_cluster_etcd_up"), 1},
		{"decode requests ended stop or length", sum(decoders, "duet_decode_requests_total", "outcome", "stop") +
			sum(decoders, "duet_decode_requests_total", "outcome", "length"), float64(n)},
		{"prefill requests ok", sum(prefillers, "duet_prefill_requests_total", "outcome", "ok"), float64(n)},
		{"decode KV blocks in use after the requests", sum(decoders, "duet_decode_kv_blocks", "state", "running") +
			sum(decoders, "duet_decode_kv_blocks", "state", "reserved"), 0},
		{"decode KV free blocks = capacity", sum(decoders, "duet_decode_kv_blocks", "state", "free"), sum(decoders, "duet_decode_kv_capacity_blocks")},
		{"KV bytes sent = received", sum(prefillers, "duet_kv_sent_bytes_total"), sum(decoders, "duet_kv_received_bytes_total")},
		{"nodes registered", sum([]cluster.Role{cluster.RolePrefill, cluster.RoleDecode, cluster.RoleBoth}, "duet_cluster_registered"), 3},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	// The decode-only node's KV came over the network: it took remote
	// reservations, so its receiver counted bytes.
	dec := byRole[cluster.RoleDecode][0]
	if value(dec, "duet_decode_requests_total") > 0 && value(dec, "duet_kv_received_bytes_total", "transport", "tcp") == 0 {
		t.Errorf("decode-1 served requests but received no KV bytes over tcp")
	}
	if value(router, "duet_router_itl_seconds") == 0 || value(router, "duet_router_completion_tokens_total") < float64(n) {
		t.Errorf("router: %v ITL samples, %v completion tokens", value(router, "duet_router_itl_seconds"), value(router, "duet_router_completion_tokens_total"))
	}
}

// logEntry is one JSON log line of a process.
type logEntry struct {
	proc   string
	fields map[string]any
	raw    string
}

func (l *logBuffer) entries() []logEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEntry
	for _, ln := range l.lines {
		name, js, ok := strings.Cut(strings.TrimRight(ln.text, "\n"), " | ")
		if !ok || !strings.HasPrefix(js, "{") {
			continue
		}
		var f map[string]any
		if json.Unmarshal([]byte(js), &f) != nil {
			continue
		}
		out = append(out, logEntry{proc: strings.TrimSpace(name), fields: f, raw: js})
	}
	return out
}

func checkRequestID(t *testing.T, ctx context.Context, c *localcluster.Cluster, logs *logBuffer) {
	id := fmt.Sprintf("obs-%016x", rand.Uint64())
	resp, err := postWithID(ctx, c.Endpoint+"/v1/completions", id, greedyBody("Once upon a time", 8))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Request-Id") != id {
		t.Fatalf("status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	// The request's lines: the router's, the prefill side's, the decode
	// side's (the decode node logs "finished" just after its last event,
	// so wait a moment for it).
	want := map[string]string{"pair chosen": "", "http request": "", "queued": "", "prefilled": "", "reserved": "", "kv committed": "", "finished": ""}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range logs.entries() {
			if !strings.Contains(e.raw, id) {
				continue
			}
			// Wherever the id appears, it is the line's request-id.
			if e.fields["request-id"] != id {
				t.Errorf("%s logged the request id outside request-id: %s", e.proc, e.raw)
			}
			if msg, _ := e.fields["msg"].(string); msg != "" {
				if _, ok := want[msg]; ok {
					want[msg] = e.proc
				}
			}
		}
		missing := 0
		for _, p := range want {
			if p == "" {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for msg, p := range want {
		if p == "" {
			t.Errorf("no %q line with request-id %s", msg, id)
		}
	}
	for _, msg := range []string{"pair chosen", "http request"} {
		if want[msg] != "router-1" {
			t.Errorf("the router's %q line came from %q", msg, want[msg])
		}
	}
	if want["prefilled"] == "router-1" || want["finished"] == "router-1" {
		t.Errorf("node lines from the router: %v", want)
	}
	t.Logf("request %s: prefilled on %s, decoded on %s", id, want["prefilled"], want["finished"])
}

func postWithID(ctx context.Context, url, id string, body map[string]any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	return http.DefaultClient.Do(req)
}
