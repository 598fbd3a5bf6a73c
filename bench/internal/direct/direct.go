package direct

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/duet-llm/duet/bench/internal/load"
	"github.com/duet-llm/duet/bench/internal/stats"
	"github.com/duet-llm/duet/kvtransfer"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// ErrText is returned for a request with a text prompt: the direct path
// has no tokenizer.
var ErrText = errors.New("direct: text prompts need a tokenizer; send token ids")

// Pair names the nodes. For a colocated node, Prefill and Decode are the
// same address and Local is set.
type Pair struct {
	Model                   string
	PrefillAddr, DecodeAddr string
	Local                   bool
	// StopTokens end a completion (the model's end-of-sequence ids).
	StopTokens []int32
}

// Deadlines of the legs (the router's defaults).
const (
	reserveTimeout = 2 * time.Second
	prefillTimeout = time.Minute
)

// Client sends generations to one pair. It implements load.Sender.
type Client struct {
	p      Pair
	pc, dc *grpc.ClientConn
	seq    atomic.Uint64
}

var _ load.Sender = (*Client)(nil)

// New returns a client; connections are made on first use.
func New(p Pair) (*Client, error) {
	dc, err := grpc.NewClient(p.DecodeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("decode node %s: %w", p.DecodeAddr, err)
	}
	pc := dc
	if p.PrefillAddr != p.DecodeAddr {
		if pc, err = grpc.NewClient(p.PrefillAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			dc.Close()
			return nil, fmt.Errorf("prefill node %s: %w", p.PrefillAddr, err)
		}
	}
	return &Client{p: p, pc: pc, dc: dc}, nil
}

// Close closes the connections.
func (c *Client) Close() error {
	err := c.dc.Close()
	if c.pc != c.dc {
		err = errors.Join(err, c.pc.Close())
	}
	return err
}

// Timing is what the prefill node reported about its part.
type Timing struct {
	Queue, Compute, Transfer time.Duration
	Transport                string
}

// Send runs r (see Generate) and returns its sample.
func (c *Client) Send(ctx context.Context, r load.Request) stats.Sample {
	s, _ := c.Generate(ctx, r)
	return s
}

// Generate runs r and returns its sample and the prefill node's timing.
// TTFT runs from the Reserve call to the prefill's first token, and the
// end-to-end latency to the decode stream's Finished event, the points at
// which the router would write the first chunk and [DONE].
func (c *Client) Generate(ctx context.Context, r load.Request) (stats.Sample, Timing) {
	s := stats.Sample{ID: r.ID, Class: r.Class, PromptTokens: len(r.PromptIDs), MaxTokens: r.MaxTokens}
	var tm Timing
	if r.PromptIDs == nil {
		s.Error = ErrText.Error()
		return s, tm
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := decodev1.NewDecodeServiceClient(c.dc)
	pre := prefillv1.NewPrefillServiceClient(c.pc)
	id := fmt.Sprintf("direct-%d-%d", time.Now().UnixNano(), c.seq.Add(1))
	sp := &commonv1.SamplingParams{Temperature: 0, TopP: 1, RepetitionPenalty: 1, Seed: 1,
		StopTokenIds: c.p.StopTokens, MaxTokens: int32(r.MaxTokens)}

	start := time.Now()
	fail := func(err error) (stats.Sample, Timing) {
		s.Error = err.Error()
		return s, tm
	}
	rctx, rcancel := context.WithTimeout(ctx, reserveTimeout)
	rr, err := dec.Reserve(rctx, &decodev1.ReserveRequest{RequestId: id, Model: c.p.Model, PromptTokens: int32(len(r.PromptIDs)),
		Sampling: sp, PromptHash: commonv1.PromptHash(r.PromptIDs), Local: c.p.Local,
		TtlMs: (prefillTimeout + reserveTimeout).Milliseconds()})
	rcancel()
	if err != nil {
		return fail(fmt.Errorf("reserve: %w", err))
	}
	token := rr.GetDescriptor_()
	if !c.p.Local {
		var d kvtransfer.Descriptor
		if err := d.UnmarshalBinary(token); err != nil {
			return fail(fmt.Errorf("reservation descriptor: %w", err))
		}
		token = d.Token[:]
	}
	att, err := dec.Attach(ctx, &decodev1.AttachRequest{ReservationId: rr.GetReservationId(), Token: token})
	if err != nil {
		return fail(fmt.Errorf("attach: %w", err))
	}
	pctx, pcancel := context.WithTimeout(ctx, prefillTimeout)
	defer pcancel()
	st, err := pre.Prefill(pctx, &prefillv1.PrefillRequest{RequestId: id, Model: c.p.Model, Tokens: r.PromptIDs, Sampling: sp,
		Reservation: &prefillv1.Reservation{DecodeNodeId: rr.GetNodeId(), Id: rr.GetReservationId(),
			Descriptor_: rr.GetDescriptor_(), Blocks: rr.GetBlocks(), Layout: rr.GetLayout()}})
	if err != nil {
		return fail(fmt.Errorf("prefill: %w", err))
	}
	var first *prefillv1.FirstToken
	for first == nil {
		ev, err := st.Recv()
		if err == io.EOF {
			return fail(errors.New("prefill stream ended without a first token"))
		}
		if err != nil {
			return fail(fmt.Errorf("prefill: %w", err))
		}
		first = ev.GetFirstToken()
	}
	firstAt := time.Now()
	tm = Timing{Queue: time.Duration(first.GetQueueUs()) * time.Microsecond, Compute: time.Duration(first.GetComputeUs()) * time.Microsecond,
		Transfer: time.Duration(first.GetTransferUs()) * time.Microsecond, Transport: first.GetTransport()}
	s.TTFTms = msSince(start, firstAt)
	s.OutputTokens, s.Chunks = 1, 1
	last := firstAt
	if f := first.GetToken().GetFinishReason(); f != "" {
		s.FinishReason = f
		s.E2Ems = s.TTFTms
		return s, tm
	}
	for {
		ev, err := att.Recv()
		if err != nil {
			return fail(fmt.Errorf("decode stream: %w", err))
		}
		switch {
		case ev.GetToken() != nil:
			now := time.Now()
			s.ITLms = append(s.ITLms, msSince(last, now))
			last = now
			s.OutputTokens++
			s.Chunks++
		case ev.GetFinished() != nil:
			f := ev.GetFinished()
			if f.GetReason() == "error" {
				return fail(fmt.Errorf("decode node: %s", f.GetError()))
			}
			s.FinishReason = f.GetReason()
			s.E2Ems = msSince(start, time.Now())
			return s, tm
		}
	}
}

func msSince(a, b time.Time) float64 { return float64(b.Sub(a)) / float64(time.Millisecond) }
