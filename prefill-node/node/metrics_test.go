package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsServer(t *testing.T) {
	n := &Node{Cfg: Config{ID: "p1", Role: cluster.RolePrefill, MetricsListen: "127.0.0.1:0"}, Log: zaptest.NewLogger(t), Metrics: prometheus.NewRegistry()}
	n.Metrics.MustRegister(BuildInfo(n.Cfg.ID, n.Cfg.Role))
	ms, err := n.OpenMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if n.HTTPAddr != ms.Addr().String() {
		t.Errorf("advertised %q, listening on %s", n.HTTPAddr, ms.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	for path, want := range map[string]string{"/metrics": `duet_build_info{id="p1",role="prefill",version=`, "/healthz": `"ok"`} {
		resp, err := http.Get("http://" + n.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + n.HTTPAddr + "/metrics"); err == nil {
		t.Error("still serving after Run returned")
	}

	// Off: no listener, and Run just waits.
	off := &Node{Cfg: Config{}, Log: zaptest.NewLogger(t), Metrics: prometheus.NewRegistry()}
	ms, err = off.OpenMetrics()
	if err != nil || ms != nil || off.HTTPAddr != "" {
		t.Fatalf("metrics off: %v %v %q", ms, err, off.HTTPAddr)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := ms.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestKVCollector(t *testing.T) {
	n := &Node{Log: zaptest.NewLogger(t)}
	n.senders = []*tcp.Transport{tcp.New(tcp.Config{}, nil)}
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil)
	defer recv.Close()
	if _, err := recv.Reserve(nil, 0); err == nil {
		t.Fatal("an empty reservation was granted")
	}
	// Both sides: bytes and sessions by transport (2 + 2 + 2), session
	// outcomes by transport (10), fallbacks, reservations, their outcomes
	// (5), refused frames.
	if got := testutil.CollectAndCount(n.KVCollector(recv)); got != 2+2+10+1+2+1+5+1 {
		t.Errorf("%d series", got)
	}
	// Sending side only.
	if got := testutil.CollectAndCount(n.KVCollector(nil)); got != 2+2+10+1 {
		t.Errorf("sender only: %d series", got)
	}
}
