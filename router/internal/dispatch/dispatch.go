package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/engine/sample"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
	"github.com/duet-llm/duet/router/internal/gen"
)

// Config bounds each leg of a generation.
type Config struct {
	// ReserveTimeout bounds the Reserve call.
	ReserveTimeout time.Duration
	// FirstTokenTimeout bounds the prefill leg, queueing included.
	FirstTokenTimeout time.Duration
	// TokenTimeout bounds the wait for each event of the decode stream.
	TokenTimeout time.Duration
	// Attempts is how many pairs a generation may try before the first
	// token.
	Attempts int
	// BlockTokens is used to estimate a request's KV blocks before a
	// decode node answers (default 16).
	BlockTokens int
}

// DefaultConfig returns the default deadlines.
func DefaultConfig() Config {
	return Config{ReserveTimeout: 2 * time.Second, FirstTokenTimeout: 60 * time.Second,
		TokenTimeout: 30 * time.Second, Attempts: 3, BlockTokens: 16}
}

// Directory is the membership view the dispatcher routes by.
type Directory interface {
	Routable(role cluster.Role) []cluster.NodeView
}

// Dispatcher implements the HTTP layer's Generator over the cluster.
type Dispatcher struct {
	cfg Config
	dir Directory
	lg  *zap.Logger

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	pending map[string]*pending // this router's assignments not yet in the membership view

	stats counters
}

// Stats counts what the dispatcher did since start (for metrics).
type Stats struct {
	// Attempts is the node pairs tried; Retries those tried after another
	// pair failed before the first token.
	Attempts, Retries uint64
	// PrefillFailures and DecodeFailures count failed legs by the node
	// blamed (a retried attempt, or one that ended the generation).
	PrefillFailures, DecodeFailures uint64
	// NoPair counts generations that found no pair to try (no capacity,
	// no compatible nodes).
	NoPair uint64
}

type counters struct {
	attempts, retries, prefillFailures, decodeFailures, noPair atomic.Uint64
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	c := &d.stats
	return Stats{Attempts: c.attempts.Load(), Retries: c.retries.Load(), PrefillFailures: c.prefillFailures.Load(),
		DecodeFailures: c.decodeFailures.Load(), NoPair: c.noPair.Load()}
}

// Keys of gen.Result.Timings: the parts of a successful generation's time
// to first token that the dispatcher sees (see the package comment).
const (
	TimingDecodeAdmission = "decode-admission" // Reserve and Attach on the decode node
	TimingPrefillQueue    = "prefill-queue"    // waiting in the prefill node's queue
	TimingPrefillCompute  = "prefill-compute"  // the prefill node's forward passes
	TimingPrefillOverhead = "prefill-overhead" // the rest of the prefill leg: RPC, session open, sampling
	TimingKVTransfer      = "kv-transfer"      // first token to the decode node's Admitted: the KV not yet landed
)

// pending is what this router has put on a node recently.
type pending struct {
	blocks int   // KV blocks reserved (decode)
	tokens int64 // prompt tokens queued (prefill)
	seqs   int
}

// New returns a dispatcher. It does no I/O; connections are made on use.
func New(cfg Config, dir Directory, lg *zap.Logger) *Dispatcher {
	if lg == nil {
		lg = zap.NewNop()
	}
	def := DefaultConfig()
	if cfg.ReserveTimeout <= 0 {
		cfg.ReserveTimeout = def.ReserveTimeout
	}
	if cfg.FirstTokenTimeout <= 0 {
		cfg.FirstTokenTimeout = def.FirstTokenTimeout
	}
	if cfg.TokenTimeout <= 0 {
		cfg.TokenTimeout = def.TokenTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = def.Attempts
	}
	if cfg.BlockTokens <= 0 {
		cfg.BlockTokens = def.BlockTokens
	}
	return &Dispatcher{cfg: cfg, dir: dir, lg: lg, conns: map[string]*grpc.ClientConn{}, pending: map[string]*pending{}}
}

// Close closes the connections to the nodes.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	for addr, c := range d.conns {
		err = errors.Join(err, c.Close())
		delete(d.conns, addr)
	}
	return err
}

// Ready reports whether some pair can serve model.
func (d *Dispatcher) Ready(model string) bool {
	for _, dn := range d.dir.Routable(cluster.RoleDecode) {
		if model != "" && dn.ModelID != model {
			continue
		}
		for _, pn := range d.dir.Routable(cluster.RolePrefill) {
			if compatible(pn, dn) {
				return true
			}
		}
	}
	return false
}

func compatible(p, d cluster.NodeView) bool {
	return p.ModelID == d.ModelID && p.KVLayout == d.KVLayout
}

func (d *Dispatcher) conn(addr string) (*grpc.ClientConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	d.conns[addr] = c
	return c, nil
}

// unassign forgets the load that choose put on a pair's nodes.
func (d *Dispatcher) unassign(pr pair, blocks int, tokens int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addPending(pr.d.ID, -blocks, 0, -1)
	d.addPending(pr.p.ID, 0, -tokens, 0)
}

// addPending changes this router's own load on a node; d.mu is held.
func (d *Dispatcher) addPending(id string, blocks int, tokens int64, seqs int) {
	p := d.pending[id]
	if p == nil {
		p = &pending{}
		d.pending[id] = p
	}
	p.blocks += blocks
	p.tokens += tokens
	p.seqs += seqs
	if p.blocks == 0 && p.tokens == 0 && p.seqs == 0 {
		delete(d.pending, id)
	}
}

func (d *Dispatcher) pendingOf(id string) pending {
	if p := d.pending[id]; p != nil {
		return *p
	}
	return pending{}
}

// pair is one choice of nodes.
type pair struct {
	p, d  cluster.NodeView
	local bool
}

// choose picks the next pair to try for a request of tokens prompt tokens
// needing blocks KV blocks, and counts the request on both nodes at once
// (undo with unassign), so that concurrent requests spread out before the
// nodes report their new load. Among equally good nodes the pick is random.
func (d *Dispatcher) choose(model string, blocks int, tokens int64, avoidP, avoidD map[string]bool) (pair, error) {
	decoders := d.dir.Routable(cluster.RoleDecode)
	prefillers := d.dir.Routable(cluster.RolePrefill)
	d.mu.Lock()
	defer d.mu.Unlock()
	type cand struct {
		v       cluster.NodeView
		free    int
		running int
		tie     int
	}
	var ds []cand
	served := false
	for _, v := range decoders {
		if v.ModelID != model {
			continue
		}
		served = true
		if avoidD[v.ID] {
			continue
		}
		pd := d.pendingOf(v.ID)
		c := cand{v: v, free: v.Load.FreeBlocks - pd.blocks, running: v.Load.RunningSeqs + pd.seqs, tie: rand.Int()}
		if c.free < blocks {
			continue
		}
		ds = append(ds, c)
	}
	if !served {
		return pair{}, fmt.Errorf("%w: no routable decode node serves %q", gen.ErrUnavailable, model)
	}
	// Most free blocks first, in steps of a typical request so that a
	// node's few reserved blocks do not outweigh its running sequences.
	slices.SortFunc(ds, func(a, b cand) int {
		if c := cmp.Compare(b.free/(4*blocks), a.free/(4*blocks)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.running, b.running); c != 0 {
			return c
		}
		return cmp.Compare(a.tie, b.tie)
	})
	for _, dc := range ds {
		var pr pair
		if dc.v.Role == cluster.RoleBoth && !avoidP[dc.v.ID] {
			pr = pair{p: dc.v, d: dc.v, local: true}
		} else {
			var best *cluster.NodeView
			var bestQ int64
			bestTie := 0
			for i := range prefillers {
				pv := prefillers[i]
				if avoidP[pv.ID] || !compatible(pv, dc.v) {
					continue
				}
				q := int64(pv.Load.QueuedPrefillTokens) + d.pendingOf(pv.ID).tokens
				if pv.ID == dc.v.ID {
					q = -1 // a "both" decode node prefills its own requests
				}
				tie := rand.Int()
				if best == nil || q < bestQ || q == bestQ && tie < bestTie {
					best, bestQ, bestTie = &prefillers[i], q, tie
				}
			}
			if best == nil {
				continue
			}
			pr = pair{p: *best, d: dc.v, local: best.ID == dc.v.ID}
		}
		d.addPending(pr.d.ID, blocks, 0, 1)
		d.addPending(pr.p.ID, 0, tokens, 0)
		return pr, nil
	}
	if len(ds) == 0 {
		return pair{}, fmt.Errorf("%w: no decode node has %d free KV blocks", gen.ErrOverloaded, blocks)
	}
	return pair{}, fmt.Errorf("%w: no routable prefill node matches the decode nodes of %q", gen.ErrUnavailable, model)
}

// legError says which leg of an attempt failed.
type legError struct {
	node  string
	isP   bool
	retry bool // nothing reached the client: another pair may be tried
	err   error
}

func (e *legError) Error() string { return e.err.Error() }
func (e *legError) Unwrap() error { return e.err }

// Generate runs req on the cluster, emitting each token as it comes.
func (d *Dispatcher) Generate(ctx context.Context, req *gen.Request, emit func(gen.Token) error) (gen.Result, error) {
	sp, err := protoconv.Sampling(req.Sampling)
	if err != nil {
		return gen.Result{}, err
	}
	blocks := (len(req.Prompt) + req.Sampling.MaxTokens + d.cfg.BlockTokens - 1) / d.cfg.BlockTokens
	avoidP, avoidD := map[string]bool{}, map[string]bool{}
	var last error
	for attempt := 0; attempt < d.cfg.Attempts; attempt++ {
		pr, err := d.choose(req.Model, blocks, int64(len(req.Prompt)), avoidP, avoidD)
		if err != nil {
			if attempt == 0 {
				d.stats.noPair.Add(1)
			}
			if last != nil && !errors.Is(err, gen.ErrOverloaded) {
				return gen.Result{}, fmt.Errorf("%w (after: %v)", err, last)
			}
			return gen.Result{}, err
		}
		// The pair's load counts until the first token: by then both nodes
		// report it themselves.
		var once sync.Once
		release := func() { once.Do(func() { d.unassign(pr, blocks, int64(len(req.Prompt))) }) }
		d.stats.attempts.Add(1)
		if attempt > 0 {
			d.stats.retries.Add(1)
		}
		if ce := d.lg.Check(zap.DebugLevel, "pair chosen"); ce != nil {
			ce.Write(zap.String("request-id", req.ID), zap.String("prefill", pr.p.ID), zap.String("decode", pr.d.ID),
				zap.Bool("local", pr.local), zap.Int("attempt", attempt+1))
		}
		res, emitted, err := d.attempt(ctx, req, sp, pr, emit, release)
		release()
		if err == nil {
			return res, nil
		}
		var le *legError
		if errors.As(err, &le) && ctx.Err() == nil {
			if le.isP {
				d.stats.prefillFailures.Add(1)
			} else {
				d.stats.decodeFailures.Add(1)
			}
		}
		if emitted > 0 || ctx.Err() != nil || !errors.As(err, &le) || !le.retry {
			if ctx.Err() == nil {
				d.lg.Warn("generation failed", zap.String("request-id", req.ID), zap.String("prefill", pr.p.ID),
					zap.String("decode", pr.d.ID), zap.Int("tokens", emitted), zap.Error(err))
			}
			if emitted > 0 {
				return gen.Result{}, &gen.StreamError{Tokens: emitted, Err: err}
			}
			return gen.Result{}, err
		}
		d.lg.Warn("leg failed, retrying with another pair", zap.String("request-id", req.ID),
			zap.String("node", le.node), zap.Bool("prefill-leg", le.isP), zap.Error(le.err))
		if le.isP {
			avoidP[le.node] = true
		} else {
			avoidD[le.node] = true
		}
		last = err
	}
	if status.Code(last) == codes.ResourceExhausted || errors.Is(last, gen.ErrOverloaded) {
		return gen.Result{}, fmt.Errorf("%w: %d attempts found no capacity, last: %v", gen.ErrOverloaded, d.cfg.Attempts, last)
	}
	return gen.Result{}, fmt.Errorf("%w: %d attempts failed, last: %v", gen.ErrUnavailable, d.cfg.Attempts, last)
}

// attempt runs one pair. emitted counts tokens passed to emit.
func (d *Dispatcher) attempt(ctx context.Context, req *gen.Request, sp *commonv1.SamplingParams, pr pair, emit func(gen.Token) error, release func()) (res gen.Result, emitted int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dc, err := d.conn(pr.d.GRPCAddr)
	if err != nil {
		return res, 0, &legError{node: pr.d.ID, retry: true, err: err}
	}
	pc, err := d.conn(pr.p.GRPCAddr)
	if err != nil {
		return res, 0, &legError{node: pr.p.ID, isP: true, retry: true, err: err}
	}
	dec := decodev1.NewDecodeServiceClient(dc)
	pre := prefillv1.NewPrefillServiceClient(pc)
	timings := make(map[string]time.Duration, 5)
	admitStart := time.Now()

	// 1. Reserve.
	rreq := &decodev1.ReserveRequest{RequestId: req.ID, Model: req.Model, PromptTokens: int32(len(req.Prompt)),
		Sampling: sp, PromptHash: commonv1.PromptHash(req.Prompt), Local: pr.local,
		TtlMs: (d.cfg.FirstTokenTimeout + d.cfg.ReserveTimeout).Milliseconds()}
	if req.Sampling.RepetitionPenalty != 1 {
		rreq.Prompt = req.Prompt
	}
	rctx, rcancel := context.WithTimeout(ctx, d.cfg.ReserveTimeout)
	rr, err := dec.Reserve(rctx, rreq)
	rcancel()
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			err = fmt.Errorf("%w: %v", gen.ErrOverloaded, err)
		}
		return res, 0, &legError{node: pr.d.ID, retry: status.Code(err) != codes.InvalidArgument, err: fmt.Errorf("reserve on %s: %w", pr.d.ID, err)}
	}
	token := rr.GetDescriptor_()
	if !pr.local {
		if token, err = descriptorToken(rr.GetDescriptor_()); err != nil {
			return res, 0, &legError{node: pr.d.ID, retry: true, err: err}
		}
	}
	// Whatever ends this attempt early, give the reservation back at once:
	// an attach stream that never reached the node would otherwise leave it
	// to its TTL (and hold up a draining node).
	finished := false
	defer func() {
		if !finished {
			rctx, cancel := context.WithTimeout(context.Background(), d.cfg.ReserveTimeout)
			_, _ = dec.Release(rctx, &decodev1.ReleaseRequest{ReservationId: rr.GetReservationId(), Token: token, Reason: "router gave up"})
			cancel()
		}
	}()

	// 2. Attach, read in the background so a dead decode node is seen
	// while the prefill runs.
	att, err := dec.Attach(ctx, &decodev1.AttachRequest{ReservationId: rr.GetReservationId(), Token: token})
	if err != nil {
		return res, 0, &legError{node: pr.d.ID, retry: true, err: fmt.Errorf("attach on %s: %w", pr.d.ID, err)}
	}
	events := make(chan attachEvent, 16)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer close(events)
		for {
			ev, err := att.Recv()
			select {
			case events <- attachEvent{ev, err, time.Now()}:
			case <-ctx.Done():
				return
			}
			if err != nil || ev.GetFinished() != nil {
				return
			}
		}
	}()
	defer readers.Wait()
	defer cancel() // runs before readers.Wait: unblocks the reader

	// 3. Prefill, up to the first token.
	prefillStart := time.Now()
	timings[TimingDecodeAdmission] = prefillStart.Sub(admitStart)
	ft, err := d.prefill(ctx, pre, req, sp, pr, rr)
	if err != nil {
		// A dead decode node fails the transfer too: blame the leg whose
		// stream broke.
		select {
		case ev, ok := <-events:
			if !ok || ev.err != nil {
				return res, 0, &legError{node: pr.d.ID, retry: true, err: fmt.Errorf("decode node %s: %v (prefill: %w)", pr.d.ID, ev.err, err)}
			}
		case <-time.After(50 * time.Millisecond):
		}
		return res, 0, &legError{node: pr.p.ID, isP: true, retry: status.Code(err) != codes.InvalidArgument, err: fmt.Errorf("prefill on %s: %w", pr.p.ID, err)}
	}
	firstAt := time.Now()
	queue := time.Duration(ft.GetQueueUs()) * time.Microsecond
	compute := time.Duration(ft.GetComputeUs()) * time.Microsecond
	timings[TimingPrefillQueue] = queue
	timings[TimingPrefillCompute] = compute
	timings[TimingPrefillOverhead] = max(0, firstAt.Sub(prefillStart)-queue-compute)
	release()
	tok := toToken(ft.GetToken())
	if err := emit(tok); err != nil {
		return res, 1, err
	}
	emitted = 1
	if tok.Finish != "" {
		return gen.Result{FinishReason: tok.Finish, CompletionTokens: 1, Timings: timings}, emitted, nil
	}

	// 4. Decode stream.
	timer := time.NewTimer(d.cfg.TokenTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return res, emitted, fmt.Errorf("decode stream from %s ended early", pr.d.ID)
			}
			if ev.err != nil {
				return res, emitted, fmt.Errorf("decode node %s: %w", pr.d.ID, ev.err)
			}
			timer.Reset(d.cfg.TokenTimeout)
			switch {
			case ev.ev.GetAdmitted() != nil:
				timings[TimingKVTransfer] = max(0, ev.at.Sub(firstAt))
			case ev.ev.GetToken() != nil:
				t := toToken(ev.ev.GetToken())
				if t.Index != emitted {
					return res, emitted, fmt.Errorf("decode node %s sent token %d, expected %d", pr.d.ID, t.Index, emitted)
				}
				if err := emit(t); err != nil {
					return res, emitted, err
				}
				emitted++
			case ev.ev.GetFinished() != nil:
				f := ev.ev.GetFinished()
				if f.GetReason() == "error" {
					return res, emitted, fmt.Errorf("decode node %s: %s", pr.d.ID, f.GetError())
				}
				finished = true // the decode node freed the reservation itself
				return gen.Result{FinishReason: f.GetReason(), CompletionTokens: emitted, Timings: timings}, emitted, nil
			}
		case <-timer.C:
			return res, emitted, fmt.Errorf("decode node %s sent nothing for %v", pr.d.ID, d.cfg.TokenTimeout)
		case <-ctx.Done():
			return res, emitted, ctx.Err()
		}
	}
}

type attachEvent struct {
	ev  *decodev1.AttachResponse
	err error
	at  time.Time // when it arrived
}

// prefill runs the prefill leg until the first token.
func (d *Dispatcher) prefill(ctx context.Context, pre prefillv1.PrefillServiceClient, req *gen.Request, sp *commonv1.SamplingParams, pr pair, rr *decodev1.ReserveResponse) (*prefillv1.FirstToken, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.FirstTokenTimeout)
	defer cancel()
	st, err := pre.Prefill(ctx, &prefillv1.PrefillRequest{RequestId: req.ID, Model: req.Model, Tokens: req.Prompt, Sampling: sp,
		Reservation: &prefillv1.Reservation{DecodeNodeId: rr.GetNodeId(), Id: rr.GetReservationId(),
			Descriptor_: rr.GetDescriptor_(), Blocks: rr.GetBlocks(), Layout: rr.GetLayout()}})
	if err != nil {
		return nil, err
	}
	for {
		ev, err := st.Recv()
		if err == io.EOF {
			return nil, errors.New("prefill stream ended without a first token")
		}
		if err != nil {
			return nil, err
		}
		if ft := ev.GetFirstToken(); ft != nil {
			return ft, nil
		}
	}
}

func toToken(w *commonv1.Token) gen.Token {
	t := gen.Token{ID: w.GetId(), Index: int(w.GetIndex()), Logprob: w.GetLogprob(), Finish: w.GetFinishReason()}
	if n := len(w.GetTopLogprobs()); n > 0 {
		t.TopLogprobs = make([]sample.TokenLogprob, n)
		for i, a := range w.GetTopLogprobs() {
			t.TopLogprobs[i] = sample.TokenLogprob{ID: a.GetId(), Logprob: a.GetLogprob()}
		}
	}
	return t
}
