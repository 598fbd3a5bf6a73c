package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// GossipState is what the gossip layer says about a member.
type GossipState uint8

const (
	// GossipUnknown: gossip has not seen the member (or runs not at all in this process); the
	// etcd lease alone decides whether it is alive.
	GossipUnknown GossipState = iota
	// GossipAlive: the member answers probes.
	GossipAlive
	// GossipDead: the member failed its probes past the suspicion timeout, or left.
	GossipDead
)

func (s GossipState) String() string {
	switch s {
	case GossipAlive:
		return "alive"
	case GossipDead:
		return "dead"
	}
	return "unknown"
}

// Gossip wire format: one type byte, then JSON. JSON keeps the messages readable in a packet
// capture and cheap to evolve; they are small (about 150 bytes) and a few per second per member.
const (
	msgState  byte = 1 // one member's dynamic state, broadcast and relayed
	msgStates byte = 2 // every state a member knows, exchanged in push/pull
)

const (
	maxGossipMsg      = 64 << 10 // a state message is ~150 B; push/pull state up to 4 MiB
	maxPushPull       = 4 << 20
	maxPeerRecords    = 16384 // bound on records created by messages from outside
	leaveTimeout      = 500 * time.Millisecond
	deadRecordRetains = time.Hour
)

// stateMsg is one member's dynamic state as it travels by gossip.
type stateMsg struct {
	ID       string `json:"id"`
	Draining bool   `json:"draining,omitempty"`
	Load     Load   `json:"load"`
}

func (m stateMsg) validate() error {
	if err := ValidateID(m.ID); err != nil {
		return err
	}
	return m.Load.Validate()
}

func encodeState(m stateMsg) []byte {
	var b bytes.Buffer
	b.WriteByte(msgState)
	_ = json.NewEncoder(&b).Encode(m) // cannot fail: plain struct
	return bytes.TrimRight(b.Bytes(), "\n")
}

// decodeState decodes one state message; it never panics on outside bytes.
func decodeState(b []byte) (stateMsg, error) {
	var m stateMsg
	if len(b) < 2 || b[0] != msgState {
		return m, fmt.Errorf("%w: not a state message", ErrBadMessage)
	}
	if len(b) > maxGossipMsg {
		return m, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if err := strictJSON(b[1:], &m); err != nil {
		return stateMsg{}, err
	}
	if err := m.validate(); err != nil {
		return stateMsg{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	return m, nil
}

type statesMsg struct {
	States []stateMsg `json:"states"`
}

func encodeStates(ms []stateMsg) []byte {
	var b bytes.Buffer
	b.WriteByte(msgStates)
	_ = json.NewEncoder(&b).Encode(statesMsg{States: ms})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// decodeStates decodes a push/pull state; entries that fail validation are dropped, the rest
// are kept.
func decodeStates(b []byte) ([]stateMsg, error) {
	if len(b) < 2 || b[0] != msgStates {
		return nil, fmt.Errorf("%w: not a states message", ErrBadMessage)
	}
	if len(b) > maxPushPull {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	var m statesMsg
	if err := strictJSON(b[1:], &m); err != nil {
		return nil, err
	}
	out := m.States[:0]
	for _, s := range m.States {
		if s.validate() == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	return nil
}

// stateBroadcast is a queued state message; a newer one for the same member replaces it.
type stateBroadcast struct {
	id  string
	msg []byte
}

func (b *stateBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*stateBroadcast)
	return ok && ob.id == b.id
}
func (b *stateBroadcast) Name() string    { return "state/" + b.id }
func (b *stateBroadcast) Message() []byte { return b.msg }
func (b *stateBroadcast) Finished()       {}

var _ memberlist.NamedBroadcast = (*stateBroadcast)(nil)

// peerRecord is what gossip knows about one member.
type peerRecord struct {
	state      GossipState
	addr       string    // gossip address, from memberlist
	stateSince time.Time // when state last changed

	hasLoad  bool
	load     Load // Seq included
	draining bool
	loadAt   time.Time // when the newest load arrived
}

// selfState is this member's own dynamic state, shared by the Registrar (which writes it to
// etcd) and the gossip layer (which broadcasts it).
type selfState struct {
	mu       sync.Mutex
	load     Load
	draining bool
}

func newSelfState(start time.Time) *selfState {
	return &selfState{load: Load{Seq: max(1, uint64(start.UnixMicro()))}}
}

// update applies f and, if the state changed, bumps the sequence; it reports the change.
func (s *selfState) update(f func(l *Load, draining *bool)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, d := s.load, s.draining
	f(&l, &d)
	l.Seq = s.load.Seq
	if l == s.load && d == s.draining {
		return false
	}
	l.Seq = max(s.load.Seq+1, uint64(time.Now().UnixMicro()))
	s.load, s.draining = l, d
	return true
}

// bumpPast makes the next state outrank seq (a message about this id from a previous life).
func (s *selfState) bumpPast(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.load.Seq > seq {
		return false
	}
	s.load.Seq = seq + 1
	return true
}

func (s *selfState) get() (Load, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load, s.draining
}

// gossip is one process's memberlist member: it detects failed members, spreads this member's
// state, relays others', and keeps a table of what it learned for a Directory to merge.
type gossip struct {
	cfg     GossipConfig
	cluster string
	id      string
	role    Role
	self    *selfState
	lg      *zap.Logger
	changed *notifier

	queue   *memberlist.TransmitLimitedQueue
	members atomic.Int32
	mlLog   *memberlistLog

	mu    sync.Mutex
	ml    *memberlist.Memberlist
	peers map[string]*peerRecord
}

func newGossip(cfg GossipConfig, cluster string, node Node, self *selfState, lg *zap.Logger) *gossip {
	g := &gossip{
		cfg:     cfg,
		cluster: cluster,
		id:      node.ID,
		role:    node.Role,
		self:    self,
		lg:      lg,
		changed: newNotifier(),
		peers:   make(map[string]*peerRecord),
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return max(1, int(g.members.Load())) },
		RetransmitMult: 4,
	}
	return g
}

// memberlistConfig turns GossipConfig into memberlist's. The timings are the point; see doc.go.
func (g *gossip) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = g.id
	mc.Label = g.cluster
	host, port, err := net.SplitHostPort(g.cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("%w: gossip bind: %v", ErrBadConfig, err)
	}
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertisePort = mc.BindPort
	if g.cfg.Advertise != "" {
		ah, ap, err := net.SplitHostPort(g.cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("%w: gossip advertise: %v", ErrBadConfig, err)
		}
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	mc.ProbeInterval = g.cfg.ProbeInterval
	mc.ProbeTimeout = g.cfg.ProbeTimeout
	mc.SuspicionMult = g.cfg.SuspicionMult
	// With a max multiplier of 1 the suspicion timeout is fixed at its minimum instead of
	// starting 6x higher and shrinking only as independent confirmations arrive: in a cluster of
	// a few dozen members the bound on detection matters more than the rare false positive,
	// which a live member refutes anyway.
	mc.SuspicionMaxTimeoutMult = 1
	mc.GossipInterval = g.cfg.GossipInterval
	mc.GossipNodes = 3
	mc.PushPullInterval = g.cfg.PushPullInterval
	mc.TCPTimeout = 2 * time.Second
	mc.AwarenessMaxMultiplier = 4
	// A restarted member comes back under the same name, often at a new address (a new pod
	// IP, or port 0): let it reclaim its name as soon as its previous life is declared dead.
	mc.DeadNodeReclaimTime = time.Millisecond
	mc.EnableCompression = false
	mc.Delegate = g
	mc.Events = g
	g.mlLog = &memberlistLog{lg: g.lg.Named("memberlist")}
	mc.Logger = log.New(g.mlLog, "", 0)
	if len(g.cfg.Key) > 0 {
		mc.SecretKey = g.cfg.Key
	}
	return mc, nil
}

// start creates the memberlist member (binding its sockets) and returns the advertised address.
func (g *gossip) start() (string, error) {
	mc, err := g.memberlistConfig()
	if err != nil {
		return "", err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return "", fmt.Errorf("gossip: %w", err)
	}
	g.mu.Lock()
	g.ml = ml
	g.mu.Unlock()
	return ml.LocalNode().Address(), nil
}

// stop leaves the cluster (bounded) and shuts the member down. Peer states become unknown: this
// process no longer observes them.
func (g *gossip) stop() {
	g.mu.Lock()
	ml := g.ml
	g.ml = nil
	g.mu.Unlock()
	if ml == nil {
		return
	}
	if err := ml.Leave(leaveTimeout); err != nil {
		g.lg.Debug("gossip leave", zap.Error(err))
	}
	if err := ml.Shutdown(); err != nil {
		g.lg.Warn("gossip shutdown", zap.Error(err))
	}
	// Shutdown does not wait for every memberlist goroutine; what they say now is noise, and
	// the logger's owner may be gone.
	g.mlLog.closed.Store(true)
	g.mu.Lock()
	for _, r := range g.peers {
		r.state = GossipUnknown
	}
	g.mu.Unlock()
	g.members.Store(0)
	g.changed.notify()
}

func (g *gossip) memberlist() *memberlist.Memberlist {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ml
}

// join contacts addrs and reports how many answered.
func (g *gossip) join(addrs []string) (int, error) {
	ml := g.memberlist()
	if ml == nil || len(addrs) == 0 {
		return 0, nil
	}
	return ml.Join(addrs)
}

// aliveAt reports whether gossip sees member id alive at addr.
func (g *gossip) aliveAt(id, addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.peers[id]
	return r != nil && r.state == GossipAlive && r.addr == addr
}

// alone reports whether this member knows no other live member.
func (g *gossip) alone() bool { return g.members.Load() <= 1 }

// broadcastSelf queues this member's current state for gossip.
func (g *gossip) broadcastSelf() {
	l, d := g.self.get()
	g.queue.QueueBroadcast(&stateBroadcast{id: g.id, msg: encodeState(stateMsg{ID: g.id, Draining: d, Load: l})})
}

// peerSnapshot copies the table for a Directory.
func (g *gossip) peerSnapshot() map[string]peerRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]peerRecord, len(g.peers))
	for id, r := range g.peers {
		out[id] = *r
	}
	return out
}

// prune forgets dead or unknown members that have said nothing for retain.
func (g *gossip) prune(retain time.Duration) {
	cut := time.Now().Add(-retain)
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, r := range g.peers {
		if r.state != GossipAlive && r.stateSince.Before(cut) && r.loadAt.Before(cut) {
			delete(g.peers, id)
		}
	}
}

// record returns the record of id, creating it unless the table is full.
func (g *gossip) recordLocked(id string) *peerRecord {
	r := g.peers[id]
	if r == nil {
		if len(g.peers) >= maxPeerRecords {
			return nil
		}
		r = &peerRecord{}
		g.peers[id] = r
	}
	return r
}

// mergeState applies a state message; it reports whether the message was news.
func (g *gossip) mergeState(m stateMsg) bool {
	if m.ID == g.id {
		// Someone carries a state of this id at least as new as ours: a previous life of this
		// member. Jump past it and announce, so ours wins everywhere.
		if g.self.bumpPast(m.Load.Seq) {
			g.broadcastSelf()
		}
		return false
	}
	now := time.Now()
	g.mu.Lock()
	r := g.recordLocked(m.ID)
	if r == nil || (r.hasLoad && m.Load.Seq <= r.load.Seq) {
		g.mu.Unlock()
		return false
	}
	r.hasLoad, r.load, r.draining, r.loadAt = true, m.Load, m.Draining, now
	g.mu.Unlock()
	g.changed.notify()
	return true
}

func (g *gossip) setState(n *memberlist.Node, s GossipState) {
	g.mu.Lock()
	r := g.recordLocked(n.Name)
	if r == nil {
		g.mu.Unlock()
		return
	}
	if r.state != s {
		r.state, r.stateSince = s, time.Now()
	}
	r.addr = n.Address()
	g.mu.Unlock()
	g.changed.notify()
}

// memberlist.Delegate. memberlist calls these from its own goroutines, some under its locks:
// they must not block or call back into memberlist.

func (g *gossip) NodeMeta(limit int) []byte { return []byte(g.role) }

func (g *gossip) NotifyMsg(b []byte) {
	m, err := decodeState(b)
	if err != nil {
		if ce := g.lg.Check(zap.DebugLevel, "dropped gossip message"); ce != nil {
			ce.Write(zap.Error(err))
		}
		return
	}
	if g.mergeState(m) {
		// Relay news, epidemic style: memberlist itself sends a user broadcast only from its
		// origin, to a few random members; relaying makes every member reach everyone.
		g.queue.QueueBroadcast(&stateBroadcast{id: m.ID, msg: bytes.Clone(b)})
	}
}

func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte {
	return g.queue.GetBroadcasts(overhead, limit)
}

func (g *gossip) LocalState(join bool) []byte {
	l, d := g.self.get()
	ms := []stateMsg{{ID: g.id, Draining: d, Load: l}}
	g.mu.Lock()
	for id, r := range g.peers {
		if r.hasLoad && r.state != GossipDead {
			ms = append(ms, stateMsg{ID: id, Draining: r.draining, Load: r.load})
		}
	}
	g.mu.Unlock()
	return encodeStates(ms)
}

func (g *gossip) MergeRemoteState(buf []byte, join bool) {
	ms, err := decodeStates(buf)
	if err != nil {
		g.lg.Debug("dropped gossip state", zap.Error(err))
		return
	}
	for _, m := range ms {
		g.mergeState(m)
	}
}

// memberlist.EventDelegate.

func (g *gossip) NotifyJoin(n *memberlist.Node) {
	g.members.Add(1)
	g.setState(n, GossipAlive)
}

func (g *gossip) NotifyLeave(n *memberlist.Node) {
	g.members.Add(-1)
	g.setState(n, GossipDead)
	g.lg.Info("gossip member gone", zap.String("node-id", n.Name), zap.String("addr", n.Address()))
}

func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.setState(n, GossipAlive) }

var (
	_ memberlist.Delegate      = (*gossip)(nil)
	_ memberlist.EventDelegate = (*gossip)(nil)
)

// memberlistLog routes memberlist's "[LEVEL] memberlist: ..." lines to zap. Its ERR lines are
// about peers (a failed ping to a member that just died), so they are warnings here.
type memberlistLog struct {
	lg     *zap.Logger
	closed atomic.Bool
}

func (w *memberlistLog) Write(p []byte) (int, error) {
	if w.closed.Load() {
		return len(p), nil
	}
	msg := strings.TrimSpace(string(p))
	lvl := zapcore.InfoLevel
	for _, l := range []struct {
		prefix string
		level  zapcore.Level
	}{
		{"[DEBUG]", zapcore.DebugLevel},
		{"[INFO]", zapcore.InfoLevel},
		{"[WARN]", zapcore.WarnLevel},
		{"[ERR]", zapcore.WarnLevel},
	} {
		if rest, ok := strings.CutPrefix(msg, l.prefix); ok {
			lvl, msg = l.level, strings.TrimSpace(rest)
			break
		}
	}
	if ce := w.lg.Check(lvl, msg); ce != nil {
		ce.Write()
	}
	return len(p), nil
}
