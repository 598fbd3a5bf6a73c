package kvtransfer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Transport is the sender's (prefill node's) side: it opens sessions that
// write into a peer's reservation. Implementations: tcp.Transport,
// rdma.Transport, and Selector, which picks between them. Safe for
// concurrent use.
type Transport interface {
	// Open starts a session for the reservation d describes. It dials the
	// peer if no connection is up, but does not wait for the receiver to
	// check the token: that answer arrives with the first Flush or Commit
	// (or fails the next Write).
	Open(ctx context.Context, d *Descriptor) (Session, error)
	// Name is the transport's name for logs and metrics ("tcp", "rdma").
	Name() string
}

// Session writes one reservation. Write, Flush and Err may be called from
// several goroutines at once; Commit and Abort end the session.
type Session interface {
	// Write queues len(src) bytes for slot (an index into the descriptor's
	// Slots) at byte offset off inside it, and returns once they are queued:
	// the transfer happens in the background. src is not copied: the caller
	// must leave it unchanged until a later Flush, Commit or Abort returns.
	// Write blocks only for backpressure (until ctx is done). A write
	// outside the slot is refused here, before anything is sent.
	Write(ctx context.Context, slot int, off int64, src []byte) error
	// Flush waits until every earlier Write has landed in the receiver's
	// slots, or returns the first error. One round trip per connection used.
	Flush(ctx context.Context) error
	// Commit waits for every earlier Write to land, then commits with a
	// small payload (first token, prompt length, checksum: at most 4 KiB).
	// Nil means the receiver has the bytes and the payload.
	Commit(ctx context.Context, payload []byte) error
	// Abort gives the reservation back; the receiver sees StateAborted.
	Abort(ctx context.Context, reason string) error
}

// Mode chooses how a Selector picks a transport.
type Mode int

// Modes.
const (
	ModeAuto Mode = iota // RDMA when both ends offer it and setup works, else TCP
	ModeTCP              // always TCP
	ModeRDMA             // always RDMA; fail if it cannot be set up
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeTCP:
		return "tcp"
	case ModeRDMA:
		return "rdma"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "auto", "tcp" or "rdma" (a flag's value).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "tcp":
		return ModeTCP, nil
	case "rdma":
		return ModeRDMA, nil
	}
	return 0, fmt.Errorf("kvtransfer: unknown transport mode %q (auto, tcp, rdma)", s)
}

// SelectorConfig configures a Selector.
type SelectorConfig struct {
	Mode Mode
	TCP  Transport // required unless Mode is ModeRDMA
	RDMA Transport // nil when this node has no RDMA device or library
	// RetryRDMAAfter is how long a peer whose RDMA setup failed is served
	// over TCP before RDMA is tried again (default 1m).
	RetryRDMAAfter time.Duration
	// Stats receives SessionsTCP, SessionsRDMA and Fallbacks; may be nil.
	Stats *Counters
}

// Choice is the transport a Selector used for a peer, and why.
type Choice struct {
	Transport string // "tcp" or "rdma"
	Reason    string // why not RDMA, when TCP was used
	At        time.Time
}

// Selector is a Transport that opens each session over RDMA when both ends
// offer it and setup succeeds, and over TCP otherwise. The choice per peer,
// and any fallback reason, is logged once per change and kept (Choices).
type Selector struct {
	cfg SelectorConfig
	lg  *zap.Logger

	mu      sync.Mutex
	choices map[string]Choice // by first endpoint address
	noRDMA  map[string]time.Time
}

var _ Transport = (*Selector)(nil)

// NewSelector returns a selector. lg may be nil.
func NewSelector(cfg SelectorConfig, lg *zap.Logger) (*Selector, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.Mode != ModeRDMA && cfg.TCP == nil {
		return nil, errors.New("kvtransfer: selector needs a tcp transport")
	}
	if cfg.Mode == ModeRDMA && cfg.RDMA == nil {
		return nil, fmt.Errorf("%w: rdma forced but no rdma transport on this node", ErrRDMA)
	}
	if cfg.RetryRDMAAfter <= 0 {
		cfg.RetryRDMAAfter = time.Minute
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Counters)
	}
	return &Selector{cfg: cfg, lg: lg, choices: map[string]Choice{}, noRDMA: map[string]time.Time{}}, nil
}

// Name returns "auto", "tcp" or "rdma".
func (s *Selector) Name() string { return s.cfg.Mode.String() }

// Choices returns the last choice per peer address.
func (s *Selector) Choices() map[string]Choice {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Choice, len(s.choices))
	for k, v := range s.choices {
		out[k] = v
	}
	return out
}

// Open opens a session over the chosen transport.
func (s *Selector) Open(ctx context.Context, d *Descriptor) (Session, error) {
	if len(d.Endpoints) == 0 {
		return nil, ErrNoEndpoint
	}
	peer := d.Endpoints[0].Addr
	reason := ""
	switch {
	case s.cfg.Mode == ModeTCP:
		reason = "tcp forced"
	case s.cfg.RDMA == nil:
		reason = "no rdma on this node"
	case !d.HasRDMA():
		reason = "peer does not offer rdma"
	}
	if s.cfg.Mode == ModeRDMA && reason != "" {
		return nil, &TransferError{Op: "open", Peer: peer, ID: d.ID, Err: fmt.Errorf("%w: %s", ErrRDMA, reason)}
	}
	if reason == "" && s.cfg.Mode == ModeAuto {
		s.mu.Lock()
		if until, bad := s.noRDMA[peer]; bad && time.Now().Before(until) {
			reason = s.choices[peer].Reason
		}
		s.mu.Unlock()
	}
	if reason == "" {
		sess, err := s.cfg.RDMA.Open(ctx, d)
		if err == nil {
			s.cfg.Stats.SessionsRDMA.Add(1)
			s.record(peer, Choice{Transport: "rdma"}, false)
			return sess, nil
		}
		if s.cfg.Mode == ModeRDMA || ctx.Err() != nil {
			return nil, err
		}
		reason = "rdma setup failed: " + err.Error()
		s.cfg.Stats.Fallbacks.Add(1)
		s.record(peer, Choice{Transport: "tcp", Reason: reason}, true)
	} else {
		s.record(peer, Choice{Transport: "tcp", Reason: reason}, false)
	}
	sess, err := s.cfg.TCP.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	s.cfg.Stats.SessionsTCP.Add(1)
	return sess, nil
}

func (s *Selector) record(peer string, c Choice, failed bool) {
	c.At = time.Now()
	s.mu.Lock()
	prev, had := s.choices[peer]
	s.choices[peer] = c
	if failed {
		s.noRDMA[peer] = c.At.Add(s.cfg.RetryRDMAAfter)
	} else if c.Transport == "rdma" {
		delete(s.noRDMA, peer)
	}
	s.mu.Unlock()
	if !had || prev.Transport != c.Transport || prev.Reason != c.Reason {
		lvl := zap.InfoLevel
		if failed {
			lvl = zap.WarnLevel
		}
		s.lg.Log(lvl, "kv transport chosen",
			zap.String("peer", peer),
			zap.String("transport", c.Transport),
			zap.String("reason", c.Reason),
			zap.Stringer("mode", s.cfg.Mode))
	}
}
