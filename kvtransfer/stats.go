package kvtransfer

import "sync/atomic"

// Stats is a snapshot of counters, plain fields for a metrics exporter.
type Stats struct {
	BytesSent     uint64 // payload bytes handed to the wire or posted as RDMA writes (sender)
	BytesReceived uint64 // payload bytes landed in slots (receiver), BytesReceivedRDMA included
	// BytesReceivedRDMA is the part of BytesReceived written by one-sided
	// RDMA (credited at commit); the rest came in TCP frames.
	BytesReceivedRDMA uint64

	Reserved  uint64 // reservations granted (receiver)
	Committed uint64 // reservations or sessions by outcome
	Aborted   uint64
	Expired   uint64
	Canceled  uint64
	Failed    uint64

	Refused uint64 // frames refused as protocol violations (connection closed)

	SessionsTCP  uint64 // sessions opened over each transport (sender)
	SessionsRDMA uint64
	Fallbacks    uint64 // RDMA wanted but TCP used
}

// Counters are live atomic counters; Snapshot reads them.
type Counters struct {
	BytesSent, BytesReceived, BytesReceivedRDMA             atomic.Uint64
	Reserved, Committed, Aborted, Expired, Canceled, Failed atomic.Uint64
	Refused, SessionsTCP, SessionsRDMA, Fallbacks           atomic.Uint64
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() Stats {
	return Stats{
		BytesSent: c.BytesSent.Load(), BytesReceived: c.BytesReceived.Load(), BytesReceivedRDMA: c.BytesReceivedRDMA.Load(),
		Reserved: c.Reserved.Load(), Committed: c.Committed.Load(), Aborted: c.Aborted.Load(),
		Expired: c.Expired.Load(), Canceled: c.Canceled.Load(), Failed: c.Failed.Load(),
		Refused: c.Refused.Load(), SessionsTCP: c.SessionsTCP.Load(), SessionsRDMA: c.SessionsRDMA.Load(),
		Fallbacks: c.Fallbacks.Load(),
	}
}

func (c *Counters) countOutcome(s State) {
	switch s {
	case StateCommitted:
		c.Committed.Add(1)
	case StateAborted:
		c.Aborted.Add(1)
	case StateExpired:
		c.Expired.Add(1)
	case StateCanceled:
		c.Canceled.Add(1)
	case StateFailed:
		c.Failed.Add(1)
	}
}

// CountOutcome adds one session ending in s (for sender-side transports).
func (c *Counters) CountOutcome(s State) { c.countOutcome(s) }
