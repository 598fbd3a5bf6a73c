package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/cluster/member"
	"github.com/duet-llm/duet/engine/version"
	"github.com/duet-llm/duet/kvtransfer"
)

// BuildInfo is duet_build_info: 1, labelled with the process's version,
// role and id.
func BuildInfo(id string, role cluster.Role) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "duet_build_info",
		Help:        "Always 1; the labels say which build and role this process runs.",
		ConstLabels: prometheus.Labels{"version": version.Version, "role": string(role), "id": id}},
		func() float64 { return 1 })
}

// MetricsServer serves a registry at /metrics, and /healthz (200 while
// the process is up), over plain HTTP.
type MetricsServer struct {
	lis net.Listener
	srv *http.Server
	lg  *zap.Logger
}

// OpenMetrics listens on Cfg.MetricsListen and sets HTTPAddr, so the
// descriptor Join writes advertises it; call it before Join. With
// MetricsListen "" it returns nil (metrics off); a nil server's Run waits
// for ctx.
func (n *Node) OpenMetrics() (*MetricsServer, error) {
	if n.Cfg.MetricsListen == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", n.Cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("listen metrics %s: %w", n.Cfg.MetricsListen, err)
	}
	n.HTTPAddr = member.AdvertiseAddr(lis.Addr())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return &MetricsServer{lis: lis, lg: n.Log, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the address the server listens on.
func (m *MetricsServer) Addr() net.Addr { return m.lis.Addr() }

// Run serves until ctx ends, then closes the listener and waits for the
// scrapes in progress (at most a second).
func (m *MetricsServer) Run(ctx context.Context) error {
	if m == nil {
		<-ctx.Done()
		return nil
	}
	served := make(chan error, 1)
	go func() { served <- m.srv.Serve(m.lis) }()
	m.lg.Info("metrics listening", zap.String("addr", m.lis.Addr().String()))
	select {
	case err := <-served:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		m.srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var (
	descKVSent = prometheus.NewDesc("duet_kv_sent_bytes_total",
		"KV bytes this node sent to decode nodes, by transport (tcp, rdma); rate() of it is the send throughput.", []string{"transport"}, nil)
	descKVSendSessions = prometheus.NewDesc("duet_kv_send_sessions_total",
		"KV transfer sessions this node opened, by transport.", []string{"transport"}, nil)
	descKVSendOutcomes = prometheus.NewDesc("duet_kv_send_sessions_ended_total",
		"KV transfer sessions this node ended, by transport and outcome (committed, aborted, expired, canceled, failed).", []string{"transport", "outcome"}, nil)
	descKVFallbacks = prometheus.NewDesc("duet_kv_rdma_fallbacks_total",
		"Sessions that wanted RDMA but went over TCP because RDMA setup failed.", nil, nil)
	descKVReceived = prometheus.NewDesc("duet_kv_received_bytes_total",
		"KV bytes that landed in this node's reserved slots, by transport (tcp, rdma); rate() of it is the receive throughput.", []string{"transport"}, nil)
	descKVReservations = prometheus.NewDesc("duet_kv_reservations_total",
		"KV reservations this node's receiver granted.", nil, nil)
	descKVReservationOutcomes = prometheus.NewDesc("duet_kv_reservations_ended_total",
		"KV reservations ended, by outcome (committed, aborted, expired, canceled, failed).", []string{"outcome"}, nil)
	descKVRefused = prometheus.NewDesc("duet_kv_refused_frames_total",
		"KV frames refused as protocol violations (the connection was closed).", nil, nil)
)

// KVCollector exports the KV transfer counters of this node: the sending
// side's (the transports Sender made) and, with recv non-nil, the
// receiving side's.
func (n *Node) KVCollector(recv *kvtransfer.Receiver) prometheus.Collector {
	return kvCollector{n: n, recv: recv}
}

type kvCollector struct {
	n    *Node
	recv *kvtransfer.Receiver
}

func (c kvCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKVSent, descKVSendSessions, descKVSendOutcomes, descKVFallbacks,
		descKVReceived, descKVReservations, descKVReservationOutcomes, descKVRefused} {
		ch <- d
	}
}

func outcomes(s kvtransfer.Stats) map[string]uint64 {
	return map[string]uint64{"committed": s.Committed, "aborted": s.Aborted, "expired": s.Expired, "canceled": s.Canceled, "failed": s.Failed}
}

func (c kvCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c.n.mu.Lock()
	senders := c.n.senders
	c.n.mu.Unlock()
	if len(senders) > 0 {
		sel := c.n.selStats.Snapshot()
		sent := map[string]kvtransfer.Stats{}
		for _, t := range senders {
			sent[t.Name()] = t.Stats()
		}
		for _, tr := range []string{"tcp", "rdma"} {
			st := sent[tr]
			counter(descKVSent, st.BytesSent, tr)
			for o, v := range outcomes(st) {
				counter(descKVSendOutcomes, v, tr, o)
			}
		}
		counter(descKVSendSessions, sel.SessionsTCP, "tcp")
		counter(descKVSendSessions, sel.SessionsRDMA, "rdma")
		counter(descKVFallbacks, sel.Fallbacks)
	}
	if c.recv != nil {
		st := c.recv.Stats()
		counter(descKVReceived, st.BytesReceived-st.BytesReceivedRDMA, "tcp")
		counter(descKVReceived, st.BytesReceivedRDMA, "rdma")
		counter(descKVReservations, st.Reserved)
		for o, v := range outcomes(st) {
			counter(descKVReservationOutcomes, v, o)
		}
		counter(descKVRefused, st.Refused)
	}
}
