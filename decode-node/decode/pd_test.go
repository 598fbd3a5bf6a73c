package decode_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/duet-llm/duet/decode-node/decode"
	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
	"github.com/duet-llm/duet/prefill-node/prefill"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// pair is a prefill node and a decode node in this process, talking over
// real loopback sockets: gRPC for control, kvtransfer TCP for KV.
type pair struct {
	dec     decodev1.DecodeServiceClient
	pre     prefillv1.PrefillServiceClient
	decSrv  *decode.Server
	preSrv  *prefill.Server
	decEng  *engine.Engine
	preEng  *engine.Engine
	model   *engine.Model
	cleanup func()
}

func openEngine(t *testing.T, o engine.Options) (*engine.Model, *engine.Engine) {
	m, err := engine.OpenModel(enginetest.ModelPath(t, enginetest.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); m.Close() })
	return m, e
}

func serve(t *testing.T, g *errgroup.Group, stops *[]func(), register func(*grpc.Server)) *grpc.ClientConn {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	g.Go(func() error { return s.Serve(lis) })
	*stops = append(*stops, s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func startPair(t *testing.T, o engine.Options) *pair {
	lg := zaptest.NewLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	p := &pair{}
	p.model, p.decEng = openEngine(t, o)
	_, p.preEng = openEngine(t, o)

	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	kvSrv := tcp.NewServer(tcp.ServerConfig{Addr: "127.0.0.1:0"}, recv, lg)
	g.Go(func() error { return kvSrv.Run(ctx) })
	<-kvSrv.Ready()
	var err error
	p.decSrv, err = decode.New(decode.Config{NodeID: "d1", ReserveTTL: time.Minute, AttachGrace: 100 * time.Millisecond}, p.decEng, recv, lg)
	if err != nil {
		t.Fatal(err)
	}
	g.Go(func() error { return p.decSrv.Run(ctx) })

	sender := tcp.New(tcp.Config{Conns: 2}, lg)
	g.Go(func() error { return sender.Run(ctx) })
	pre := prefill.New(prefill.Config{NodeID: "p1"}, p.preEng, sender, nil, lg)
	p.preSrv = pre
	g.Go(func() error { return pre.Run(ctx) })

	var stops []func()
	p.dec = decodev1.NewDecodeServiceClient(serve(t, &g, &stops, func(s *grpc.Server) { decodev1.RegisterDecodeServiceServer(s, p.decSrv) }))
	p.pre = prefillv1.NewPrefillServiceClient(serve(t, &g, &stops, func(s *grpc.Server) { prefillv1.RegisterPrefillServiceServer(s, pre) }))
	t.Cleanup(func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
		recv.Close()
		if err := g.Wait(); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Error(err)
		}
	})
	return p
}

// generate runs one request through the pair as the router does: reserve
// on the decode node, attach, prefill into the reservation, collect.
func (p *pair) generate(ctx context.Context, prompt []int32, params sample.Params) ([]int32, string, error) {
	sp, err := protoconv.Sampling(params)
	if err != nil {
		return nil, "", err
	}
	rr, err := p.dec.Reserve(ctx, &decodev1.ReserveRequest{RequestId: "r", PromptTokens: int32(len(prompt)), Sampling: sp,
		PromptHash: commonv1.PromptHash(prompt)})
	if err != nil {
		return nil, "", err
	}
	var d kvtransfer.Descriptor
	if err := d.UnmarshalBinary(rr.GetDescriptor_()); err != nil {
		return nil, "", err
	}
	att, err := p.dec.Attach(ctx, &decodev1.AttachRequest{ReservationId: rr.GetReservationId(), Token: d.Token[:]})
	if err != nil {
		return nil, "", err
	}
	ps, err := p.pre.Prefill(ctx, &prefillv1.PrefillRequest{RequestId: "r", Tokens: prompt, Sampling: sp,
		Reservation: &prefillv1.Reservation{DecodeNodeId: rr.GetNodeId(), Id: rr.GetReservationId(), Descriptor_: rr.GetDescriptor_(), Blocks: rr.GetBlocks(), Layout: rr.GetLayout()}})
	if err != nil {
		return nil, "", err
	}
	var out []int32
	for {
		ev, err := ps.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, "", err
		}
		if ft := ev.GetFirstToken(); ft != nil {
			out = append(out, ft.GetToken().GetId())
		}
	}
	for {
		ev, err := att.Recv()
		if err != nil {
			return out, "", err
		}
		if tk := ev.GetToken(); tk != nil {
			if int(tk.GetIndex()) != len(out) {
				return out, "", errors.New("token index out of order")
			}
			out = append(out, tk.GetId())
		}
		if f := ev.GetFinished(); f != nil {
			if f.GetReason() == "error" {
				return out, "", errors.New(f.GetError())
			}
			return out, f.GetReason(), nil
		}
	}
}

func greedy(max int, stops []int32) sample.Params {
	p := sample.DefaultParams()
	seed := uint64(7)
	p.Temperature, p.MaxTokens, p.Seed, p.StopTokens = 0, max, &seed, stops
	return p
}

func TestPDMatchesSingleProcess(t *testing.T) {
	o := engine.DefaultOptions()
	o.KVDType = kvcache.F16
	o.MaxBatchTokens = 32 // prompts longer than this prefill in several chunks
	p := startPair(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prompts := []string{"Once upon a time", "The little dog", "Lily and Tom went to the park and saw a big red ball. They wanted to play with it but", "Sam", "One day, a bird"}
	for i, text := range prompts {
		prompt := p.model.Encode(text)
		params := greedy(40, p.model.StopTokens())
		if i%2 == 1 { // seeded sampling must match too
			params.Temperature, params.TopP = 0.8, 0.95
		}
		var want []int32
		if _, err := p.decEng.Generate(ctx, prompt, params, func(tok sample.Token) error {
			want = append(want, tok.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		got, reason, err := p.generate(ctx, prompt, params)
		if err != nil {
			t.Fatalf("%q: %v (after %v)", text, err, got)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d tokens, want %d\n got %v\nwant %v", text, len(got), len(want), got, want)
		}
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("%q: token %d is %d, want %d\n got %v\nwant %v", text, k, got[k], want[k], got, want)
			}
		}
		if reason != "length" && reason != "stop" {
			t.Fatalf("finish %q", reason)
		}
	}
	waitFree(t, p.decEng)
	waitFree(t, p.preEng)

	// The metrics saw the same requests.
	dec, pre := p.decSrv.Collector(), p.preSrv.Collector()
	capacity := float64(p.decEng.Pool().NumBlocks())
	for _, ck := range []struct {
		what      string
		got, want float64
	}{
		{"decode requests ended", metricValue(t, dec, "duet_decode_requests_total", "outcome", "stop") + metricValue(t, dec, "duet_decode_requests_total", "outcome", "length"), float64(len(prompts))},
		{"decode errors", metricValue(t, dec, "duet_decode_requests_total", "outcome", "error"), 0},
		{"free blocks", metricValue(t, dec, "duet_decode_kv_blocks", "state", "free"), capacity},
		{"capacity", metricValue(t, dec, "duet_decode_kv_capacity_blocks"), capacity},
		{"kv waits observed", metricValue(t, dec, "duet_decode_kv_wait_seconds"), float64(len(prompts))},
		{"sequences admitted", metricValue(t, dec, "duet_decode_admission_wait_seconds"), float64(len(prompts))},
		{"prefill ok", metricValue(t, pre, "duet_prefill_requests_total", "outcome", "ok"), float64(len(prompts))},
		{"prefill commits waited", metricValue(t, pre, "duet_prefill_kv_commit_wait_seconds"), float64(len(prompts))},
		{"prefill queue empty", metricValue(t, pre, "duet_prefill_queued_tokens"), 0},
	} {
		if ck.got != ck.want {
			t.Errorf("%s: %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	// Decode steps sampled every token but each request's first.
	if sampled := metricValue(t, dec, "duet_decode_tokens_total"); sampled == 0 || metricValue(t, dec, "duet_decode_batch_seqs") == 0 {
		t.Errorf("decode steps not counted: %v tokens", sampled)
	}
	// Chunked prefill: prompts longer than the 32-token budget took
	// several steps of at most 32 tokens.
	if steps := metricValue(t, pre, "duet_prefill_batch_tokens"); steps < float64(len(prompts)) {
		t.Errorf("%v prefill steps for %d prompts", steps, len(prompts))
	}
}

// metricValue gathers c and returns the value of the series named name
// whose labels include the given pairs, summed (a histogram's count).
func metricValue(t *testing.T, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
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
	}
	return sum
}

func TestReservationRefusals(t *testing.T) {
	p := startPair(t, engine.DefaultOptions())
	ctx := context.Background()
	sp, _ := protoconv.Sampling(greedy(8, nil))
	rr, err := p.dec.Reserve(ctx, &decodev1.ReserveRequest{PromptTokens: 4, Sampling: sp})
	if err != nil {
		t.Fatal(err)
	}
	wrong := make([]byte, 16)
	if _, err := p.dec.Release(ctx, &decodev1.ReleaseRequest{ReservationId: rr.GetReservationId(), Token: wrong}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("release with a wrong token: %v", err)
	}
	st, err := p.dec.Attach(ctx, &decodev1.AttachRequest{ReservationId: rr.GetReservationId(), Token: wrong})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("attach with a wrong token: %v", err)
	}
	if _, err := p.dec.Release(ctx, &decodev1.ReleaseRequest{ReservationId: 999, Token: wrong}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown reservation: %v", err)
	}
	for name, req := range map[string]*decodev1.ReserveRequest{
		"no sampling":   {PromptTokens: 4},
		"zero prompt":   {PromptTokens: 0, Sampling: sp},
		"over context":  {PromptTokens: 1 << 20, Sampling: sp},
		"wrong model":   {PromptTokens: 4, Sampling: sp, Model: "gpt-9"},
		"local refused": {PromptTokens: 4, Sampling: sp, Local: true},
	} {
		if _, err := p.dec.Reserve(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := metricValue(t, p.decSrv.Collector(), "duet_decode_reserve_rejected_total", "reason", "bad_request"); n != 5 {
		t.Errorf("%v bad requests counted, want 5", n)
	}
	// Exhaust the pool: all or nothing, RESOURCE_EXHAUSTED.
	big := greedy(p.decEng.MaxContext()-4, nil)
	bsp, _ := protoconv.Sampling(big)
	var held []*decodev1.ReserveResponse
	for {
		r, err := p.dec.Reserve(ctx, &decodev1.ReserveRequest{PromptTokens: 4, Sampling: bsp})
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("exhaustion: %v", err)
			}
			break
		}
		held = append(held, r)
	}
	if n := metricValue(t, p.decSrv.Collector(), "duet_decode_reserve_rejected_total", "reason", "no_capacity"); n != 1 {
		t.Errorf("%v refusals for capacity counted, want 1", n)
	}
	if n := metricValue(t, p.decSrv.Collector(), "duet_decode_kv_blocks", "state", "reserved"); n == 0 {
		t.Error("no reserved blocks while the pool is held")
	}
	for _, r := range append(held, rr) {
		var d kvtransfer.Descriptor
		d.UnmarshalBinary(r.GetDescriptor_())
		if _, err := p.dec.Release(ctx, &decodev1.ReleaseRequest{ReservationId: r.GetReservationId(), Token: d.Token[:]}); err != nil {
			t.Fatal(err)
		}
	}
	waitFree(t, p.decEng)
}

func TestClientGoneFreesBlocks(t *testing.T) {
	p := startPair(t, engine.DefaultOptions())
	ctx, cancel := context.WithCancel(context.Background())
	prompt := p.model.Encode("Once upon a time")
	done := make(chan error, 1)
	go func() {
		_, _, err := p.generate(ctx, prompt, greedy(400, nil))
		done <- err
	}()
	// Cancel mid-generation: the decode node drops the sequence.
	deadline := time.Now().Add(10 * time.Second)
	for p.decSrv.Load().RunningSeqs == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Fatalf("generate after cancel: %v", err)
	}
	waitFree(t, p.decEng)
	waitFree(t, p.preEng)
}

// waitFree waits until every KV block of e is free again.
func waitFree(t *testing.T, e *engine.Engine) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Pool().FreeBlocks() != e.Pool().NumBlocks() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d KV blocks free", e.Pool().FreeBlocks(), e.Pool().NumBlocks())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCollectorsLint: the prefill and decode series pass a pedantic
// registry (consistent descriptions) and Prometheus' naming lint.
func TestCollectorsLint(t *testing.T) {
	p := startPair(t, engine.DefaultOptions())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(p.decSrv.Collector(), p.preSrv.Collector())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("%s: %s", pr.Metric, pr.Text)
	}
}

// TestDrainCancelsUnattached: a reservation nobody attached to (its router
// gave up between Reserve and Attach) does not hold a draining node for
// its whole TTL.
func TestDrainCancelsUnattached(t *testing.T) {
	p := startPair(t, engine.DefaultOptions())
	sp, _ := protoconv.Sampling(greedy(8, nil))
	if _, err := p.dec.Reserve(context.Background(), &decodev1.ReserveRequest{PromptTokens: 4, Sampling: sp}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // far below the minute of TTL
	defer cancel()
	if err := p.decSrv.Drain(ctx); err != nil {
		t.Fatalf("drain with an unattached reservation: %v", err)
	}
	waitFree(t, p.decEng)
}
