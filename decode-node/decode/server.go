package decode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/kvtransfer"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
	nodev1 "github.com/duet-llm/duet/proto/duet/node/v1"
)

// Config configures a decode server.
type Config struct {
	// NodeID is this node's cluster id (echoed in reservations).
	NodeID string
	// Role is "decode" or "both" (reported by Info).
	Role string
	// Version is reported by Info.
	Version string
	// ReserveTTL bounds how long a reservation waits for its commit, and a
	// committed sequence for its stream (default 2m; the router asks for
	// less, its first-token timeout).
	ReserveTTL time.Duration
	// AttachGrace is how long a draining node waits for a reservation's
	// stream before it cancels the reservation (default 3s).
	AttachGrace time.Duration
	// AllowLocal accepts local reservations (a colocated prefill).
	AllowLocal bool
	// OnLoad, when set, is called (from the server's goroutines, never
	// blocking them for long) whenever free blocks or running sequences
	// change.
	OnLoad func(Load)
}

// Load is what the decode node reports to the cluster.
type Load struct {
	FreeBlocks  int
	RunningSeqs int
}

// Server implements the decode and node gRPC services.
type Server struct {
	decodev1.UnimplementedDecodeServiceServer
	nodev1.UnimplementedNodeServiceServer

	cfg    Config
	eng    *engine.Engine
	pool   *kvcache.Pool
	recv   *kvtransfer.Receiver
	region kvtransfer.RegionID
	vocab  int
	lg     *zap.Logger
	m      *metrics

	admit    chan *admission
	running  atomic.Int32
	requests atomic.Uint64  // reservations granted
	wg       sync.WaitGroup // reservation watchers

	mu       sync.Mutex
	res      map[uint64]*reservation
	nextID   uint64
	draining bool
	empty    chan struct{} // closed and replaced when res becomes empty
	stopped  bool
}

// New returns a decode server over eng. recv receives remote KV (nil for a
// node that only takes local reservations); New registers the engine's KV
// arena with it. New starts nothing; Run runs the decode loop.
func New(cfg Config, eng *engine.Engine, recv *kvtransfer.Receiver, lg *zap.Logger) (*Server, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.ReserveTTL <= 0 {
		cfg.ReserveTTL = 2 * time.Minute
	}
	if cfg.Role == "" {
		cfg.Role = "decode"
	}
	if cfg.AttachGrace <= 0 {
		cfg.AttachGrace = 3 * time.Second
	}
	s := &Server{cfg: cfg, eng: eng, pool: eng.Pool(), recv: recv, vocab: eng.Model().LM.Vocab, lg: lg, m: newMetrics(),
		admit: make(chan *admission, 1024), res: map[uint64]*reservation{}, nextID: 1, empty: make(chan struct{})}
	if recv != nil {
		id, err := recv.RegisterRegion(eng.Pool().Arena())
		if err != nil {
			return nil, fmt.Errorf("register KV pool: %w", err)
		}
		s.region = id
	}
	return s, nil
}

// Run runs the decode loop until ctx ends, then cancels every reservation
// and waits for their watchers.
func (s *Server) Run(ctx context.Context) error {
	s.loop(ctx)
	s.mu.Lock()
	s.stopped = true
	all := make([]*reservation, 0, len(s.res))
	for _, r := range s.res {
		all = append(all, r)
	}
	s.mu.Unlock()
	for _, r := range all {
		r.cancel("decode node stopping")
	}
	// Finish sequences admitted after the loop stopped, until every
	// watcher is gone.
	watchers := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(watchers)
	}()
	for {
		select {
		case a := <-s.admit:
			a.r.finish(finishedErr(ErrCanceled))
		case <-watchers:
			return nil
		}
	}
}

// Drain stops new reservations and waits until every reservation and
// sequence has finished, or ctx ends.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	// A reservation whose router never attached (it gave up, or died,
	// between Reserve and Attach) would wait out its TTL: while draining,
	// it gets AttachGrace to attach, then is canceled.
	orphans := time.NewTimer(s.cfg.AttachGrace)
	defer orphans.Stop()
	for {
		s.mu.Lock()
		n, empty := len(s.res), s.empty
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-empty:
		case <-orphans.C:
			s.mu.Lock()
			var unattached []*reservation
			for _, r := range s.res {
				if !r.attachFlag.Load() {
					unattached = append(unattached, r)
				}
			}
			s.mu.Unlock()
			for _, r := range unattached {
				r.cancel("draining: no stream attached")
			}
		case <-ctx.Done():
			return fmt.Errorf("drain: %d requests still running: %w", n, ctx.Err())
		}
	}
}

// Load returns the current load figures.
func (s *Server) Load() Load {
	return Load{FreeBlocks: s.pool.FreeBlocks(), RunningSeqs: int(s.running.Load())}
}

func (s *Server) reportLoad() {
	if s.cfg.OnLoad != nil {
		s.cfg.OnLoad(s.Load())
	}
}

// Reserve implements DecodeService.
func (s *Server) Reserve(ctx context.Context, req *decodev1.ReserveRequest) (*decodev1.ReserveResponse, error) {
	r, err := s.reserve(req)
	if err != nil {
		s.m.refused(err)
		if ce := s.lg.Check(zap.DebugLevel, "reserve refused"); ce != nil {
			ce.Write(zap.String("request-id", req.GetRequestId()), zap.Int32("prompt-tokens", req.GetPromptTokens()), zap.Error(err))
		}
		return nil, toStatus(err)
	}
	resp := &decodev1.ReserveResponse{ReservationId: r.id, Blocks: r.blocks, NodeId: s.cfg.NodeID,
		Layout: protoconv.Layout(s.pool.Layout(), engine.KernelName())}
	if r.kv != nil {
		d := r.kv.Descriptor()
		if resp.Descriptor_, err = d.MarshalBinary(); err != nil {
			r.cancel("descriptor")
			return nil, toStatus(err)
		}
	} else {
		resp.Descriptor_ = r.token[:] // a local reservation's descriptor is its token
	}
	return resp, nil
}

func (s *Server) reserve(req *decodev1.ReserveRequest) (*reservation, error) {
	if m := req.GetModel(); m != "" && m != s.eng.Model().ID {
		return nil, fmt.Errorf("%w: model %q, this node serves %q", ErrBadRequest, m, s.eng.Model().ID)
	}
	params, err := protoconv.SamplingParams(req.GetSampling())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	n := int(req.GetPromptTokens())
	if n <= 0 {
		return nil, fmt.Errorf("%w: prompt_tokens %d", ErrBadRequest, n)
	}
	if n+params.MaxTokens > s.eng.MaxContext() {
		return nil, fmt.Errorf("%w: %d prompt + %d output tokens exceed the context of %d", ErrBadRequest, n, params.MaxTokens, s.eng.MaxContext())
	}
	if p := req.GetPrompt(); len(p) != 0 && len(p) != n {
		return nil, fmt.Errorf("%w: %d prompt ids for %d prompt tokens", ErrBadRequest, len(p), n)
	}
	if req.GetLocal() && !s.cfg.AllowLocal {
		return nil, fmt.Errorf("%w: local reservation on a node without a colocated prefill", ErrBadRequest)
	}
	if !req.GetLocal() && s.recv == nil {
		return nil, fmt.Errorf("%w: this node takes only local reservations", ErrBadRequest)
	}
	ttl := time.Duration(req.GetTtlMs()) * time.Millisecond
	if ttl <= 0 || ttl > s.cfg.ReserveTTL {
		ttl = s.cfg.ReserveTTL
	}

	s.mu.Lock()
	if s.draining || s.stopped {
		s.mu.Unlock()
		return nil, ErrDraining
	}
	s.mu.Unlock()
	layout := s.pool.Layout()
	blocks, err := s.pool.Alloc(layout.BlocksFor(n + params.MaxTokens))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCapacity, err)
	}
	r := &reservation{s: s, reqID: req.GetRequestId(), blocks: blocks, promptLen: n, promptHash: req.GetPromptHash(),
		params: params, prompt: req.GetPrompt(), ttl: ttl, created: time.Now(),
		events:   make(chan *decodev1.AttachResponse, params.MaxTokens+4),
		attached: make(chan struct{}), streamEnded: make(chan struct{}), canceled: make(chan struct{}), done: make(chan struct{})}
	if req.GetLocal() {
		r.token = kvtransfer.NewToken()
		r.localDone = make(chan *commonv1.KVCommit, 1)
	} else {
		slots := make([]kvtransfer.Slot, 0, layout.Layers*len(blocks))
		for l := 0; l < layout.Layers; l++ {
			for _, b := range blocks {
				slots = append(slots, kvtransfer.Slot{Region: s.region, Offset: uint64(s.pool.SlotOffset(l, b)), Length: uint32(layout.SlotBytes())})
			}
		}
		if r.kv, err = s.recv.Reserve(slots, ttl); err != nil {
			s.pool.Free(blocks)
			return nil, err
		}
		r.token = r.kv.Descriptor().Token
	}
	s.mu.Lock()
	r.id = s.nextID
	s.nextID++
	s.res[r.id] = r
	s.mu.Unlock()
	s.requests.Add(1)
	s.wg.Add(1)
	go r.watch()
	s.reportLoad()
	if ce := s.lg.Check(zap.DebugLevel, "reserved"); ce != nil {
		fields := []zap.Field{zap.String("request-id", r.reqID), zap.Uint64("reservation", r.id), zap.Int("blocks", len(blocks)), zap.Bool("local", r.kv == nil)}
		if r.kv != nil {
			// kvtransfer's own lines name this id, not the request's.
			fields = append(fields, zap.Uint64("kv-reservation-id", r.kv.ID()))
		}
		ce.Write(fields...)
	}
	return r, nil
}

// lookup finds a reservation and checks its capability token.
func (s *Server) lookup(id uint64, token []byte) (*reservation, error) {
	s.mu.Lock()
	r, ok := s.res[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknown, id)
	}
	var t kvtransfer.Token
	if len(token) != len(t) {
		return nil, ErrToken
	}
	copy(t[:], token)
	if !t.Equal(r.token) {
		return nil, ErrToken
	}
	return r, nil
}

// Attach implements DecodeService.
func (s *Server) Attach(req *decodev1.AttachRequest, stream decodev1.DecodeService_AttachServer) error {
	r, err := s.lookup(req.GetReservationId(), req.GetToken())
	if err != nil {
		return toStatus(err)
	}
	if !r.attach() {
		return toStatus(ErrAttached)
	}
	defer close(r.streamEnded)
	ctx := stream.Context()
	for {
		select {
		case ev := <-r.events:
			if err := stream.Send(ev); err != nil {
				r.cancel("stream send failed")
				return err
			}
			if ev.GetFinished() != nil {
				return nil
			}
		case <-ctx.Done():
			r.cancel("stream closed by the router")
			return toStatus(ctx.Err())
		}
	}
}

// Release implements DecodeService.
func (s *Server) Release(ctx context.Context, req *decodev1.ReleaseRequest) (*decodev1.ReleaseResponse, error) {
	r, err := s.lookup(req.GetReservationId(), req.GetToken())
	if err != nil {
		return nil, toStatus(err)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "released"
	}
	r.cancel(reason)
	return &decodev1.ReleaseResponse{}, nil
}

// Info implements NodeService.
func (s *Server) Info(ctx context.Context, _ *nodev1.InfoRequest) (*nodev1.InfoResponse, error) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	return &nodev1.InfoResponse{Id: s.cfg.NodeID, Role: s.cfg.Role, Model: s.eng.Model().ID,
		Layout: protoconv.Layout(s.pool.Layout(), engine.KernelName()), TotalBlocks: int32(s.pool.NumBlocks()),
		FreeBlocks: int32(s.pool.FreeBlocks()), Running: s.running.Load(), Draining: draining,
		Version: s.cfg.Version, MaxContext: int32(s.eng.MaxContext()), Requests: s.requests.Load()}, nil
}

// Requests is the number of reservations granted since start.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Local is the in-process hand-off of a colocated node: the prefill writes
// the reservation's blocks in the shared pool directly and commits by a
// call. Acquire returns the blocks; exactly one of commit or release must
// follow (release when the prefill gives up: the blocks are freed only
// once the prefill no longer writes them).
func (s *Server) AcquireLocal(id uint64, token []byte) (blocks []int32, commit func(*commonv1.KVCommit), release func(), err error) {
	r, err := s.lookup(id, token)
	if err != nil {
		return nil, nil, nil, err
	}
	if r.localDone == nil || !r.acquired.CompareAndSwap(false, true) {
		return nil, nil, nil, fmt.Errorf("%w: reservation %d is not a free local reservation", ErrBadRequest, id)
	}
	var once sync.Once
	commit = func(c *commonv1.KVCommit) { once.Do(func() { r.localDone <- c }) }
	release = func() { once.Do(func() { r.localDone <- nil }) }
	return r.blocks, commit, release, nil
}

// remove forgets a finished reservation.
func (s *Server) remove(r *reservation) {
	s.mu.Lock()
	delete(s.res, r.id)
	if len(s.res) == 0 {
		close(s.empty)
		s.empty = make(chan struct{})
	}
	s.mu.Unlock()
}

func finishedErr(err error) *decodev1.Finished {
	return &decodev1.Finished{Reason: "error", Error: err.Error()}
}

// Compile-time guards.
var (
	_ decodev1.DecodeServiceServer = (*Server)(nil)
	_ nodev1.NodeServiceServer     = (*Server)(nil)
)
