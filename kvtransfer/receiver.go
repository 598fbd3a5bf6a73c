package kvtransfer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// State is where a reservation stands.
type State uint8

// States. Every state but StateActive is final.
const (
	StateActive    State = iota // granted, taking writes
	StateCommitted              // the sender committed; the payload is set
	StateAborted                // the sender aborted
	StateExpired                // the TTL ran out before a commit
	StateCanceled               // the receiver canceled it (Reservation.Cancel)
	StateFailed                 // a connection carrying it died, or the sender broke the protocol
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateCommitted:
		return "committed"
	case StateAborted:
		return "aborted"
	case StateExpired:
		return "expired"
	case StateCanceled:
		return "canceled"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Err returns the sentinel for a final state other than committed.
func (s State) Err() error {
	switch s {
	case StateCommitted:
		return ErrCommitted
	case StateAborted:
		return ErrAborted
	case StateExpired:
		return ErrExpired
	case StateCanceled:
		return ErrCanceled
	case StateFailed:
		return ErrFailed
	}
	return nil
}

// Outcome is how a reservation ended. It is delivered once the slots are
// safe to reuse: no write into them is in progress and none will start.
type Outcome struct {
	ID      uint64
	State   State
	Payload []byte // the sender's commit payload (StateCommitted only)
	Bytes   int64  // bytes that landed in the slots
	Err     error  // why it did not commit (nil when committed)
}

// ReceiverConfig configures a Receiver. The zero value is usable.
type ReceiverConfig struct {
	// DefaultTTL applies when Reserve is given ttl <= 0 (default 30s).
	DefaultTTL time.Duration
	// MaxTTL caps a reservation's TTL (default 10m).
	MaxTTL time.Duration
	// ReclaimGrace is how long an ended reservation waits for a write that
	// is already streaming into its slots before the transport cuts that
	// connection (default 250ms). The outcome is delivered only after.
	ReclaimGrace time.Duration
	// OnOutcome, when set, is called once per reservation with its outcome,
	// from the goroutine that finished it. It must not block.
	OnOutcome func(Outcome)
}

func (c *ReceiverConfig) withDefaults() ReceiverConfig {
	out := *c
	if out.DefaultTTL <= 0 {
		out.DefaultTTL = 30 * time.Second
	}
	if out.MaxTTL <= 0 {
		out.MaxTTL = 10 * time.Minute
	}
	if out.ReclaimGrace <= 0 {
		out.ReclaimGrace = 250 * time.Millisecond
	}
	return out
}

// recentCap bounds how many ended reservations are remembered so a late open
// gets "expired" (a benign race) instead of "unknown" (a protocol violation).
const recentCap = 4096

type recent struct {
	token Token
	state State
}

// Receiver is the decode node's side: it owns the registered regions and the
// reservations into them, independent of the transports that serve it. It
// starts no goroutines (expiry uses timers); transports call Attach.
type Receiver struct {
	cfg   ReceiverConfig
	lg    *zap.Logger
	stats Counters

	mu        sync.Mutex
	regions   [][]byte
	live      map[uint64]*Reservation
	recent    map[uint64]recent
	recentIDs []uint64 // FIFO of recent's keys
	endpoints []Endpoint
	nextID    uint64
	closed    bool
}

// NewReceiver returns a receiver with no regions. lg may be nil.
func NewReceiver(cfg ReceiverConfig, lg *zap.Logger) *Receiver {
	if lg == nil {
		lg = zap.NewNop()
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	return &Receiver{
		cfg:    cfg.withDefaults(),
		lg:     lg,
		live:   make(map[uint64]*Reservation),
		recent: make(map[uint64]recent),
		// Ids are not secrets, but starting at a random point keeps a stale
		// descriptor from a previous process from naming a live reservation.
		nextID: binary.LittleEndian.Uint64(seed[:])>>1 | 1,
	}
}

// RegisterRegion registers mem (the whole KV pool, normally) once. The
// receiver writes into it for the life of the process; the caller must keep
// it alive and not move it. Transports that need registration (RDMA) pick up
// regions from Regions.
func (r *Receiver) RegisterRegion(mem []byte) (RegionID, error) {
	if len(mem) == 0 {
		return 0, fmt.Errorf("%w: empty", ErrBadRegion)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	r.regions = append(r.regions, mem)
	return RegionID(len(r.regions) - 1), nil
}

// Regions returns the registered regions, indexed by RegionID.
func (r *Receiver) Regions() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.regions)
}

// AddEndpoint advertises an endpoint in every descriptor from now on; a
// transport calls it once it listens. The returned func withdraws it.
func (r *Receiver) AddEndpoint(e Endpoint) (remove func()) {
	r.mu.Lock()
	r.endpoints = append(r.endpoints, e)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if i := slices.Index(r.endpoints, e); i >= 0 {
			r.endpoints = slices.Delete(r.endpoints, i, i+1)
		}
	}
}

// Stats returns a snapshot of the receiver's counters.
func (r *Receiver) Stats() Stats { return r.stats.Snapshot() }

// Counters are the receiver's counters; transports serving it add to them.
func (r *Receiver) Counters() *Counters { return &r.stats }

// Reserve grants a reservation of slots for ttl (<= 0: the default). The
// slots must lie inside registered regions and not overlap each other; the
// caller's allocator keeps them apart from other live reservations.
func (r *Receiver) Reserve(slots []Slot, ttl time.Duration) (*Reservation, error) {
	if err := validateSlots(slots); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = r.cfg.DefaultTTL
	}
	ttl = min(ttl, r.cfg.MaxTTL)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var size int64
	for i, s := range slots {
		if int(s.Region) >= len(r.regions) || s.End() > uint64(len(r.regions[s.Region])) {
			return nil, fmt.Errorf("%w: slot %d (region %d, %d+%d) outside the registered regions", ErrBadSlots, i, s.Region, s.Offset, s.Length)
		}
		size += int64(s.Length)
	}
	id := r.nextID
	r.nextID++
	res := &Reservation{
		r:       r,
		id:      id,
		token:   NewToken(),
		slots:   slices.Clone(slots),
		size:    size,
		expiry:  time.Now().Add(ttl),
		eps:     slices.Clone(r.endpoints),
		regions: r.regions[:len(r.regions):len(r.regions)],
		done:    make(chan struct{}),
		atts:    make(map[*Attachment]struct{}),
	}
	r.live[id] = res
	r.stats.Reserved.Add(1)
	res.mu.Lock() // end() reads timer under mu, and may run as soon as it is armed
	res.timer = time.AfterFunc(ttl, func() { res.end(StateExpired, ErrExpired, nil) })
	res.mu.Unlock()
	return res, nil
}

// Lookup returns the live reservation id, if any.
func (r *Receiver) Lookup(id uint64) (*Reservation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.live[id]
	return res, ok
}

// Close fails every live reservation and refuses new ones.
func (r *Receiver) Close() {
	r.mu.Lock()
	r.closed = true
	all := make([]*Reservation, 0, len(r.live))
	for _, res := range r.live {
		all = append(all, res)
	}
	r.mu.Unlock()
	for _, res := range all {
		res.end(StateFailed, ErrClosed, nil)
	}
}

// AttachHooks are a transport's callbacks for one attachment.
type AttachHooks struct {
	// Ended is called once, without locks held, when the reservation ends
	// for any cause other than this attachment's own Commit, Abort or Fail.
	Ended func(State, error)
	// Kill is called when the reservation has ended and a write through
	// this attachment has been streaming for longer than ReclaimGrace: the
	// transport must make that write fail now (close the connection).
	Kill func()
}

// Attach binds a transport connection to reservation id after checking tok.
// A wrong token or an unknown id is ErrBadToken (a protocol violation: the
// caller should drop the connection); a reservation that already ended
// returns its state's error (ErrExpired, ErrCanceled: a benign race).
func (r *Receiver) Attach(id uint64, tok Token, hooks AttachHooks) (*Attachment, error) {
	r.mu.Lock()
	res, ok := r.live[id]
	if !ok {
		rc, was := r.recent[id]
		r.mu.Unlock()
		if was && rc.token.Equal(tok) {
			return nil, rc.state.Err()
		}
		return nil, ErrBadToken
	}
	r.mu.Unlock()
	if !res.token.Equal(tok) {
		return nil, ErrBadToken
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.state != StateActive {
		return nil, res.state.Err()
	}
	a := &Attachment{res: res, hooks: hooks}
	res.atts[a] = struct{}{}
	return a, nil
}

func (r *Receiver) forget(res *Reservation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, res.id)
	r.recent[res.id] = recent{token: res.token, state: res.state}
	r.recentIDs = append(r.recentIDs, res.id)
	if len(r.recentIDs) > recentCap {
		delete(r.recent, r.recentIDs[0])
		r.recentIDs = r.recentIDs[1:]
	}
}

// Reservation is one grant of slots to one sender.
type Reservation struct {
	r       *Receiver
	id      uint64
	token   Token
	slots   []Slot
	size    int64
	expiry  time.Time
	eps     []Endpoint
	regions [][]byte // the receiver's regions when it was granted
	timer   *time.Timer
	done    chan struct{}

	mu          sync.Mutex
	state       State
	err         error
	received    int64
	inflight    int
	payload     []byte
	commitTotal int64
	commitDone  func(error) // a commit waiting for bytes still in flight on other connections
	atts        map[*Attachment]struct{}
	finalized   bool
	outcome     Outcome
}

// ID returns the reservation id.
func (res *Reservation) ID() uint64 { return res.id }

// Size returns the sum of the slot lengths.
func (res *Reservation) Size() int64 { return res.size }

// Descriptor returns what the sender needs: id, token, endpoints, slots,
// expiry. It holds the token: hand it only to the chosen prefill node.
func (res *Reservation) Descriptor() Descriptor {
	return Descriptor{
		ID:        res.id,
		Token:     res.token,
		Expiry:    res.expiry,
		Endpoints: slices.Clone(res.eps),
		Slots:     slices.Clone(res.slots),
	}
}

// Done is closed once the reservation has ended and its slots may be reused.
func (res *Reservation) Done() <-chan struct{} { return res.done }

// Outcome returns the outcome; it is the zero Outcome until Done is closed.
func (res *Reservation) Outcome() Outcome {
	select {
	case <-res.done:
		return res.outcome
	default:
		return Outcome{}
	}
}

// Wait blocks until the reservation ends or ctx is done.
func (res *Reservation) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-res.done:
		return res.outcome, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// Cancel ends the reservation (the client went away): the sender's next
// write or commit fails promptly, and Done closes once no write is in
// progress. Canceling an ended reservation does nothing.
func (res *Reservation) Cancel(reason string) {
	err := ErrCanceled
	if reason != "" {
		err = fmt.Errorf("%w: %s", ErrCanceled, reason)
	}
	res.end(StateCanceled, err, nil)
}

// end moves an active reservation to a final state. cause is the attachment
// whose action ended it (it gets no Ended callback), or nil.
func (res *Reservation) end(st State, err error, cause *Attachment) {
	res.mu.Lock()
	if res.state != StateActive {
		res.mu.Unlock()
		return
	}
	res.state, res.err = st, err
	res.timer.Stop()
	pending := res.commitDone
	res.commitDone = nil
	notify := make([]*Attachment, 0, len(res.atts))
	for a := range res.atts {
		if a != cause {
			notify = append(notify, a)
		}
	}
	final := res.inflight == 0
	res.mu.Unlock()

	if pending != nil {
		if st == StateCommitted {
			pending(nil)
		} else {
			pending(err)
		}
	}
	for _, a := range notify {
		if a.hooks.Ended != nil {
			a.hooks.Ended(st, err)
		}
	}
	if final {
		res.finalize()
		return
	}
	time.AfterFunc(res.r.cfg.ReclaimGrace, res.killWriters)
}

// killWriters cuts the connections still streaming into an ended reservation.
func (res *Reservation) killWriters() {
	res.mu.Lock()
	var kill []func()
	for a := range res.atts {
		if a.writing > 0 && a.hooks.Kill != nil {
			kill = append(kill, a.hooks.Kill)
		}
	}
	res.mu.Unlock()
	for _, k := range kill {
		k()
	}
}

func (res *Reservation) finalize() {
	res.mu.Lock()
	if res.finalized {
		res.mu.Unlock()
		return
	}
	res.finalized = true
	res.outcome = Outcome{ID: res.id, State: res.state, Bytes: res.received, Err: res.err}
	if res.state == StateCommitted {
		res.outcome.Payload = res.payload
	}
	res.atts = nil
	out := res.outcome
	res.mu.Unlock()

	res.r.forget(res)
	res.r.stats.countOutcome(out.State)
	res.r.lg.Debug("kv reservation ended",
		zap.Uint64("reservation-id", out.ID),
		zap.Stringer("state", out.State),
		zap.Int64("bytes", out.Bytes),
		zap.Error(out.Err))
	if cb := res.r.cfg.OnOutcome; cb != nil {
		cb(out)
	}
	close(res.done)
}

// Attachment is one transport connection's handle on a reservation: the
// transport-facing side of the receiver. Its methods are safe for
// concurrent use.
type Attachment struct {
	res     *Reservation
	hooks   AttachHooks
	writing int // guarded by res.mu
}

// Reservation returns the reservation this attachment writes.
func (a *Attachment) Reservation() *Reservation { return a.res }

// Slot returns slot i of the reservation.
func (a *Attachment) Slot(i uint32) (Slot, bool) {
	if int(i) >= len(a.res.slots) {
		return Slot{}, false
	}
	return a.res.slots[i], true
}

// BeginWrite checks a write of n bytes at off inside slot and returns the
// slot memory to fill, capacity-limited so nothing past it can be touched.
// Every successful BeginWrite must be followed by EndWrite. Errors:
// ErrOutOfBounds and ErrCommitted are violations; the other states' errors
// (ErrCanceled, ErrExpired, ...) mean the reservation ended under a sender
// that has not heard yet: discard the payload.
func (a *Attachment) BeginWrite(slot uint32, off uint64, n uint32) ([]byte, error) {
	res := a.res
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.state != StateActive || res.finalized {
		return nil, res.state.Err()
	}
	if int(slot) >= len(res.slots) {
		return nil, fmt.Errorf("%w: slot %d of %d", ErrOutOfBounds, slot, len(res.slots))
	}
	s := res.slots[slot]
	if off > uint64(s.Length) || uint64(n) > uint64(s.Length)-off {
		return nil, fmt.Errorf("%w: %d bytes at %d in a %d-byte slot", ErrOutOfBounds, n, off, s.Length)
	}
	mem := res.regions[s.Region]
	start := s.Offset + off
	res.inflight++
	a.writing++
	return mem[start : start+uint64(n) : start+uint64(n)], nil
}

// EndWrite finishes a write begun with BeginWrite: n bytes landed (err nil)
// or the payload could not be read (err set: the caller fails the
// connection). It may complete a commit that waited for these bytes.
func (a *Attachment) EndWrite(n int, err error) {
	res := a.res
	res.mu.Lock()
	res.inflight--
	a.writing--
	if err == nil {
		res.received += int64(n)
		res.r.stats.BytesReceived.Add(uint64(n))
	}
	endState, endErr := res.commitCheckLocked()
	final := res.state != StateActive && res.inflight == 0
	res.mu.Unlock()
	if endState != StateActive {
		res.end(endState, endErr, nil)
	}
	if final {
		res.finalize()
	}
}

// BeginWrites is BeginWrite for n writes at once, under one lock: seg(i)
// gives write i's slot, offset and length. Either every write is begun and
// its memory appended to dsts, or none is and the error is the first
// write's that failed (as BeginWrite's). End them with one EndWrites.
func (a *Attachment) BeginWrites(n int, seg func(i int) (slot uint32, off uint64, length uint32), dsts [][]byte) ([][]byte, error) {
	res := a.res
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.state != StateActive || res.finalized {
		return dsts, res.state.Err()
	}
	base := len(dsts)
	for i := range n {
		slot, off, length := seg(i)
		if int(slot) >= len(res.slots) {
			clear(dsts[base:])
			return dsts[:base], fmt.Errorf("%w: slot %d of %d", ErrOutOfBounds, slot, len(res.slots))
		}
		s := res.slots[slot]
		if off > uint64(s.Length) || uint64(length) > uint64(s.Length)-off {
			clear(dsts[base:])
			return dsts[:base], fmt.Errorf("%w: %d bytes at %d in a %d-byte slot", ErrOutOfBounds, length, off, s.Length)
		}
		start := s.Offset + off
		end := start + uint64(length)
		dsts = append(dsts, res.regions[s.Region][start:end:end])
	}
	res.inflight += n
	a.writing += n
	return dsts, nil
}

// EndWrites finishes n writes begun with one BeginWrites: landed bytes of
// them arrived (err nil), or the payload could not be read completely (err
// set: only landed bytes count, and the caller fails the connection).
func (a *Attachment) EndWrites(n int, landed int64, err error) {
	res := a.res
	res.mu.Lock()
	res.inflight -= n
	a.writing -= n
	res.received += landed
	res.r.stats.BytesReceived.Add(uint64(landed))
	endState, endErr := res.commitCheckLocked()
	final := res.state != StateActive && res.inflight == 0
	res.mu.Unlock()
	if endState != StateActive {
		res.end(endState, endErr, nil)
	}
	if final {
		res.finalize()
	}
}

// commitCheckLocked says whether a commit waiting for bytes in flight can
// now end the reservation (res.mu held).
func (res *Reservation) commitCheckLocked() (State, error) {
	if res.state == StateActive && res.commitDone != nil {
		switch {
		case res.received == res.commitTotal:
			return StateCommitted, nil
		case res.received > res.commitTotal:
			return StateFailed, fmt.Errorf("%w: received %d bytes, commit says %d", ErrSizeMismatch, res.received, res.commitTotal)
		}
	}
	return StateActive, nil
}

// Credit counts n bytes that landed without BeginWrite (a one-sided RDMA
// data path, fenced by the transport before it calls Commit).
func (a *Attachment) Credit(n int64) {
	a.res.mu.Lock()
	a.res.received += n
	a.res.mu.Unlock()
	a.res.r.stats.BytesReceived.Add(uint64(n))
	a.res.r.stats.BytesReceivedRDMA.Add(uint64(n))
}

// Commit ends the reservation as committed with payload once total bytes
// have landed. If bytes are still in flight on other connections it waits
// for them (until they land, a connection fails, or the reservation
// expires); done is called exactly once, possibly from another goroutine,
// with nil or the reason it failed. A total that cannot add up fails the
// reservation with ErrSizeMismatch.
func (a *Attachment) Commit(total uint64, payload []byte, done func(error)) {
	res := a.res
	res.mu.Lock()
	if res.state != StateActive {
		err := res.state.Err()
		res.mu.Unlock()
		done(err)
		return
	}
	if res.commitDone != nil {
		res.mu.Unlock()
		done(fmt.Errorf("%w: second commit", ErrProtocol))
		return
	}
	var bad error
	switch {
	case total > uint64(res.size):
		bad = fmt.Errorf("%w: commit of %d bytes into %d reserved", ErrSizeMismatch, total, res.size)
	case uint64(res.received) > total:
		bad = fmt.Errorf("%w: received %d bytes, commit says %d", ErrSizeMismatch, res.received, total)
	}
	if bad != nil {
		res.mu.Unlock()
		res.end(StateFailed, bad, a)
		done(bad)
		return
	}
	res.payload = slices.Clone(payload)
	if uint64(res.received) == total {
		res.mu.Unlock()
		res.end(StateCommitted, nil, a)
		done(nil)
		return
	}
	res.commitTotal = int64(total)
	res.commitDone = done
	res.mu.Unlock()
}

// Abort ends the reservation as aborted by the sender.
func (a *Attachment) Abort(reason string) {
	err := ErrAborted
	if reason != "" {
		err = fmt.Errorf("%w: %s", ErrAborted, reason)
	}
	a.res.end(StateAborted, err, a)
}

// Fail ends the reservation as failed (the connection died or the sender
// broke the protocol).
func (a *Attachment) Fail(err error) {
	if err == nil {
		err = ErrFailed
	}
	a.res.end(StateFailed, fmt.Errorf("%w: %w", ErrFailed, err), a)
}

// Detach stops callbacks to this attachment. It does not end the reservation.
func (a *Attachment) Detach() {
	a.res.mu.Lock()
	defer a.res.mu.Unlock()
	if a.res.atts != nil {
		delete(a.res.atts, a)
	}
}
