package tcp

import (
	"context"
	"fmt"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
)

// The TCP connection is also the control channel of an RDMA data path: the
// sender sends its queue-pair parameters in an RDMAConnect frame, the
// receiver answers with its own (and its regions' addresses and keys) in
// RDMAAccept, and from then on the session's writes go as one-sided RDMA
// WRITEs while open, flush, commit and abort stay on this connection. These
// interfaces are what package rdma implements; they stay here so this
// package needs no verbs library.

// RDMAAcceptor is the receiver half of an RDMA data path.
type RDMAAcceptor interface {
	// Accept sets up a queue pair for one connection from the sender's
	// parameters and returns the link and the reply parameters.
	Accept(params []byte) (RDMALink, []byte, error)
}

// RDMALink is the receiver's queue pair for one connection.
type RDMALink interface {
	// Fence waits until the sender's fence for reservation id (a
	// WRITE_WITH_IMM after its writes, on the same queue pair) has arrived:
	// every RDMA WRITE before it has then been placed in memory.
	Fence(ctx context.Context, id uint64) error
	Close() error
}

// RDMADialer is the sender half of an RDMA data path.
type RDMADialer interface {
	// Dial prepares a queue pair toward peer and returns the parameters to
	// send in RDMAConnect.
	Dial(peer string) (RDMAPath, []byte, error)
}

// RDMAPath is the sender's queue pair toward one peer connection.
type RDMAPath interface {
	// Connect finishes setup with the receiver's RDMAAccept parameters
	// (the queue pair goes to RTS).
	Connect(reply []byte) error
	// Write posts a one-sided RDMA WRITE of src to offset in the
	// receiver's region. It returns once posted; src must stay unchanged
	// until Fence returns.
	Write(region kvtransfer.RegionID, offset uint64, src []byte) error
	// Fence posts the WRITE_WITH_IMM that marks reservation id's writes as
	// complete and waits until every earlier write on the queue pair has
	// completed.
	Fence(ctx context.Context, id uint64) error
	Close() error
}

func (sc *serverConn) rdmaConnect(h *wire.Header) error {
	p, err := sc.readPayload(h.Length)
	if err != nil {
		return err
	}
	if sc.s.cfg.RDMA == nil {
		sc.sendErr(wire.FrameRDMAAccept, 0, fmt.Errorf("%w: receiver has no rdma", kvtransfer.ErrRDMA))
		return nil
	}
	sc.mu.Lock()
	had := sc.rdma != nil
	sc.mu.Unlock()
	if had {
		return &violation{code: wire.CodeProtocol, err: fmt.Errorf("%w: second rdma connect", kvtransfer.ErrProtocol)}
	}
	link, reply, err := sc.s.cfg.RDMA.Accept(p)
	if err != nil {
		sc.sendErr(wire.FrameRDMAAccept, 0, fmt.Errorf("%w: %w", kvtransfer.ErrRDMA, err))
		return nil
	}
	sc.mu.Lock()
	sc.rdma = link
	sc.mu.Unlock()
	return sc.send(wire.Header{Type: wire.FrameRDMAAccept}, reply)
}

// rdmaFence waits for the sender's RDMA fence and credits the bytes its
// one-sided writes placed (the receiver cannot count them itself).
func (sc *serverConn) rdmaFence(h *wire.Header) error {
	sc.mu.Lock()
	link := sc.rdma
	e := sc.entries[h.ID]
	sc.mu.Unlock()
	if link == nil {
		return &violation{id: h.ID, code: wire.CodeProtocol, err: fmt.Errorf("%w: rdma commit without an rdma link", kvtransfer.ErrProtocol)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sc.s.cfg.FrameTimeout)
	defer cancel()
	if err := link.Fence(ctx, h.ID); err != nil {
		return fmt.Errorf("rdma fence: %w", err)
	}
	e.att.Credit(int64(h.Arg))
	return nil
}
