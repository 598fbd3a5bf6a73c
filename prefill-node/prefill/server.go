package prefill

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/kvtransfer"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	nodev1 "github.com/duet-llm/duet/proto/duet/node/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// Errors.
var (
	ErrDraining   = errors.New("prefill: node is draining")
	ErrQueueFull  = errors.New("prefill: queue is full")
	ErrBadRequest = errors.New("prefill: invalid request")
	ErrLayout     = errors.New("prefill: decode node's KV layout differs from this node's")
	ErrCanceled   = errors.New("prefill: canceled")
)

// Config configures a prefill server.
type Config struct {
	NodeID  string
	Role    string // "prefill" or "both" (reported by Info)
	Version string
	// MaxQueuedTokens bounds the prompt tokens waiting or running; beyond
	// it Prefill fails with RESOURCE_EXHAUSTED (default: the larger of 64
	// batches and 4 full contexts). A request finding the queue empty is
	// always taken.
	MaxQueuedTokens int64
	// CommitTimeout bounds the wait for the decode node to acknowledge a
	// commit (default 10s).
	CommitTimeout time.Duration
	// OnLoad, when set, is called whenever the queue changes.
	OnLoad func(Load)
}

// Load is what a prefill node reports to the cluster.
type Load struct {
	QueuedTokens int64
	Requests     int
}

// LocalDecoder is the decode side of a colocated node ("both"): a local
// reservation's blocks are written in place and committed by a call.
type LocalDecoder interface {
	AcquireLocal(id uint64, token []byte) (blocks []int32, commit func(*commonv1.KVCommit), release func(), err error)
}

// Server implements the prefill and node gRPC services.
type Server struct {
	prefillv1.UnimplementedPrefillServiceServer
	nodev1.UnimplementedNodeServiceServer

	cfg   Config
	eng   *engine.Engine
	pool  *kvcache.Pool
	tr    kvtransfer.Transport // nil on a node that only prefills locally
	local LocalDecoder         // nil unless colocated
	lg    *zap.Logger
	m     *metrics

	wake     chan struct{}
	commits  sync.WaitGroup // commit and abort goroutines
	requests atomic.Uint64  // requests queued since start

	mu       sync.Mutex
	queue    []*job
	queued   int64 // prompt tokens not yet prefilled
	draining bool
	idle     chan struct{} // closed and replaced when the node has no work
	inflight int           // jobs queued or committing
}

// New returns a prefill server. tr moves KV to decode nodes; local (may
// be nil) is the colocated decode side. New starts nothing.
func New(cfg Config, eng *engine.Engine, tr kvtransfer.Transport, local LocalDecoder, lg *zap.Logger) *Server {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.MaxQueuedTokens <= 0 {
		cfg.MaxQueuedTokens = max(64*int64(eng.Options().MaxBatchTokens), 4*int64(eng.MaxContext()))
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 10 * time.Second
	}
	if cfg.Role == "" {
		cfg.Role = "prefill"
	}
	return &Server{cfg: cfg, eng: eng, pool: eng.Pool(), tr: tr, local: local, lg: lg, m: newMetrics(),
		wake: make(chan struct{}, 1), idle: make(chan struct{})}
}

// job is one prompt on its way through the node.
type job struct {
	ctx      context.Context // the request's stream: canceled when the router gives up
	id       string
	tokens   []int32
	params   sample.Params
	seq      kvcache.Seq
	own      bool // seq.Blocks come from this node's pool (remote reservation)
	nBlocks  int  // blocks in the decode node's reservation
	sess     kvtransfer.Session
	commitFn func(*commonv1.KVCommit)
	release  func()
	events   chan *prefillv1.PrefillResponse
	final    chan error // the outcome, once
	enqueued time.Time
	started  time.Time
	done     int   // prompt tokens prefilled
	err      error // first transfer error (set by the loop)
	ended    atomic.Bool
}

// Prefill implements PrefillService.
func (s *Server) Prefill(req *prefillv1.PrefillRequest, stream prefillv1.PrefillService_PrefillServer) error {
	ctx := stream.Context()
	j, err := s.admit(ctx, req)
	if err != nil {
		s.m.requests.WithLabelValues(outcomeRejected).Inc()
		if ce := s.lg.Check(zap.DebugLevel, "prefill refused"); ce != nil {
			ce.Write(zap.String("request-id", req.GetRequestId()), zap.Error(err))
		}
		return toStatus(err)
	}
	for {
		select {
		case ev := <-j.events:
			if err := stream.Send(ev); err != nil {
				j.ended.Store(true)
				s.kick()
				return err
			}
		case err := <-j.final:
			// Forward what the loop sent before the outcome.
			for len(j.events) > 0 {
				if err := stream.Send(<-j.events); err != nil {
					return err
				}
			}
			return toStatus(err)
		case <-ctx.Done():
			j.ended.Store(true)
			s.kick()
			return toStatus(ctx.Err())
		}
	}
}

// admit validates a request, opens its transfer session and queues it.
func (s *Server) admit(ctx context.Context, req *prefillv1.PrefillRequest) (*job, error) {
	m := s.eng.Model()
	if id := req.GetModel(); id != "" && id != m.ID {
		return nil, fmt.Errorf("%w: model %q, this node serves %q", ErrBadRequest, id, m.ID)
	}
	tokens := req.GetTokens()
	if len(tokens) == 0 || len(tokens) >= s.eng.MaxContext() {
		return nil, fmt.Errorf("%w: %d prompt tokens (1..%d)", ErrBadRequest, len(tokens), s.eng.MaxContext()-1)
	}
	for _, t := range tokens {
		if t < 0 || int(t) >= m.LM.Vocab {
			return nil, fmt.Errorf("%w: token %d outside the vocabulary of %d", ErrBadRequest, t, m.LM.Vocab)
		}
	}
	params, err := protoconv.SamplingParams(req.GetSampling())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	res := req.GetReservation()
	layout, kernel, err := protoconv.KVLayout(res.GetLayout())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if own := s.pool.Layout(); layout != own || kernel != engine.KernelName() {
		return nil, fmt.Errorf("%w: theirs %v/%s, ours %v/%s", ErrLayout, layout, kernel, own, engine.KernelName())
	}
	blocks := res.GetBlocks()
	need := layout.BlocksFor(len(tokens))
	if len(blocks) < need {
		return nil, fmt.Errorf("%w: reservation of %d blocks for %d tokens", ErrBadRequest, len(blocks), len(tokens))
	}
	if need > s.pool.NumBlocks() {
		return nil, fmt.Errorf("%w: a %d-token prompt needs %d KV blocks, this node has %d", ErrQueueFull, len(tokens), need, s.pool.NumBlocks())
	}
	j := &job{ctx: ctx, id: req.GetRequestId(), tokens: tokens, params: params, nBlocks: len(blocks),
		events: make(chan *prefillv1.PrefillResponse, 64), final: make(chan error, 1), enqueued: time.Now()}

	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil, ErrDraining
	}
	if s.queued > 0 && s.queued+int64(len(tokens)) > s.cfg.MaxQueuedTokens {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %d tokens queued", ErrQueueFull, s.queued)
	}
	s.inflight++ // counted now so Drain waits for the session being opened
	s.mu.Unlock()

	if s.local != nil && res.GetDecodeNodeId() == s.cfg.NodeID {
		b, commit, release, err := s.local.AcquireLocal(res.GetId(), res.GetDescriptor_())
		if err != nil {
			s.leave()
			return nil, fmt.Errorf("%w: local reservation: %v", ErrBadRequest, err)
		}
		j.seq.Blocks, j.commitFn, j.release = b, commit, release
	} else {
		if s.tr == nil {
			s.leave()
			return nil, fmt.Errorf("%w: remote reservation on a node without a KV transport", ErrBadRequest)
		}
		var d kvtransfer.Descriptor
		if err := d.UnmarshalBinary(res.GetDescriptor_()); err != nil {
			s.leave()
			return nil, fmt.Errorf("%w: descriptor: %v", ErrBadRequest, err)
		}
		if len(d.Slots) != layout.Layers*len(blocks) {
			s.leave()
			return nil, fmt.Errorf("%w: %d slots for %d layers of %d blocks", ErrBadRequest, len(d.Slots), layout.Layers, len(blocks))
		}
		for _, sl := range d.Slots {
			if int(sl.Length) != layout.SlotBytes() {
				s.leave()
				return nil, fmt.Errorf("%w: slot of %d bytes, layout needs %d", ErrBadRequest, sl.Length, layout.SlotBytes())
			}
		}
		if j.sess, err = s.tr.Open(ctx, &d); err != nil {
			s.leave()
			return nil, fmt.Errorf("open KV session to %s: %w", res.GetDecodeNodeId(), err)
		}
		j.own = true
	}

	s.mu.Lock()
	ahead := s.queued
	s.queue = append(s.queue, j)
	s.queued += int64(len(tokens))
	s.mu.Unlock()
	s.requests.Add(1)
	s.m.promptTokens.Add(float64(len(tokens)))
	if ce := s.lg.Check(zap.DebugLevel, "queued"); ce != nil {
		ce.Write(zap.String("request-id", j.id), zap.Int("prompt-tokens", len(tokens)), zap.Int64("tokens-ahead", ahead),
			zap.String("decode-node", res.GetDecodeNodeId()), zap.Bool("local", j.sess == nil))
	}
	j.events <- &prefillv1.PrefillResponse{Event: &prefillv1.PrefillResponse_Queued{Queued: &prefillv1.Queued{TokensAhead: ahead}}}
	s.reportLoad()
	s.kick()
	return j, nil
}

// leave records that a request left the node.
func (s *Server) leave() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 {
		close(s.idle)
		s.idle = make(chan struct{})
	}
	s.mu.Unlock()
	s.reportLoad()
	s.kick()
}

func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Drain refuses new requests and waits until every queued request has
// been prefilled and committed, or ctx ends.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	for {
		s.mu.Lock()
		n, idle := s.inflight, s.idle
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("drain: %d requests still in flight: %w", n, ctx.Err())
		}
	}
}

// Load returns the queue figures.
func (s *Server) Load() Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Load{QueuedTokens: s.queued, Requests: s.inflight}
}

func (s *Server) reportLoad() {
	if s.cfg.OnLoad != nil {
		s.cfg.OnLoad(s.Load())
	}
}

// Info implements NodeService.
func (s *Server) Info(ctx context.Context, _ *nodev1.InfoRequest) (*nodev1.InfoResponse, error) {
	s.mu.Lock()
	draining, queued := s.draining, s.queued
	s.mu.Unlock()
	return &nodev1.InfoResponse{Id: s.cfg.NodeID, Role: s.cfg.Role, Model: s.eng.Model().ID,
		Layout: protoconv.Layout(s.pool.Layout(), engine.KernelName()), TotalBlocks: int32(s.pool.NumBlocks()),
		FreeBlocks: int32(s.pool.FreeBlocks()), QueuedPrefillTokens: queued, Draining: draining,
		Version: s.cfg.Version, MaxContext: int32(s.eng.MaxContext()), Requests: s.requests.Load()}, nil
}

// toStatus maps an error to its gRPC status (the one place this package
// meets the wire).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrDraining):
		code = codes.Unavailable
	case errors.Is(err, ErrQueueFull), errors.Is(err, kvcache.ErrNoBlocks):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrBadRequest):
		code = codes.InvalidArgument
	case errors.Is(err, ErrLayout):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled), errors.Is(err, ErrCanceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, kvtransfer.ErrExpired), errors.Is(err, kvtransfer.ErrCanceled), errors.Is(err, kvtransfer.ErrAborted):
		code = codes.Aborted
	default:
		code = codes.Unavailable // a transfer that failed: the router retries elsewhere
	}
	return status.Error(code, err.Error())
}

var (
	_ prefillv1.PrefillServiceServer = (*Server)(nil)
	_ nodev1.NodeServiceServer       = (*Server)(nil)
)
