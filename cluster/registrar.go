package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// errLeaseLost ends one registration: the keepalive stream closed (the lease expired during
// an etcd outage, or was revoked) and the member must register again under a new lease.
var errLeaseLost = errors.New("cluster: lease lost")

// maxJoinsPerRound bounds the gossip joins one rejoin round attempts.
const maxJoinsPerRound = 8

// Registrar keeps one member registered: its descriptor at /<cluster>/nodes/<role>/<id> under
// a kept-alive lease, its load written on change (rate-limited), its draining flag written at
// once, and — with gossip on — its membership in the gossip cluster, which spreads its state
// sub-second and lets the others see it die within about a second and a half.
type Registrar struct {
	cfg  Config
	cli  *clientv3.Client
	lg   *zap.Logger
	key  string
	self *selfState

	gossip *gossip // nil with gossip off

	nodeMu sync.Mutex
	node   Node // GossipAddr filled by Run

	wake    chan struct{}
	written *notifier
	// writtenDraining is the draining flag of the last descriptor etcd acknowledged.
	writtenDraining atomic.Bool
	leaseID         atomic.Int64
	ready           chan struct{}
	readyOnce       sync.Once
	running         atomic.Bool

	registrations, writes, writeErrors atomic.Int64 // for Collector
}

// NewRegistrar prepares a Registrar for node; it does no I/O. node.StartedAt defaults to now.
// The configuration and node are checked by Run. A non-nil cli is shared, not owned: Run does
// not close it; with cli nil, Run makes its own client from cfg and closes it when done.
func NewRegistrar(cfg Config, cli *clientv3.Client, node Node, lg *zap.Logger) *Registrar {
	if lg == nil {
		lg = zap.NewNop()
	}
	if node.StartedAt.IsZero() {
		node.StartedAt = time.Now()
	}
	node.StartedAt = node.StartedAt.UTC().Round(0)
	node.RDMADevices = append([]string(nil), node.RDMADevices...)
	lg = lg.With(zap.String("node-id", node.ID), zap.String("role", string(node.Role)))
	r := &Registrar{
		cfg:     cfg,
		cli:     cli,
		lg:      lg,
		key:     NodeKey(cfg.ClusterName, node.Role, node.ID),
		self:    newSelfState(node.StartedAt),
		node:    node,
		wake:    make(chan struct{}, 1),
		written: newNotifier(),
		ready:   make(chan struct{}),
	}
	if cfg.Gossip.Enabled {
		r.gossip = newGossip(cfg.Gossip, cfg.ClusterName, node, r.self, lg.Named("gossip"))
	}
	return r
}

// Key is the etcd key the member registers at.
func (r *Registrar) Key() string { return r.key }

// Node returns the static descriptor, with GossipAddr once Run has bound the gossip socket.
func (r *Registrar) Node() Node {
	r.nodeMu.Lock()
	defer r.nodeMu.Unlock()
	return r.node
}

// Ready is closed once the member is registered for the first time.
func (r *Registrar) Ready() <-chan struct{} { return r.ready }

// LeaseID is the lease the member is registered under now, 0 while it is not.
func (r *Registrar) LeaseID() clientv3.LeaseID { return clientv3.LeaseID(r.leaseID.Load()) }

// UpdateLoad records the member's current load. It never blocks: gossip broadcasts the change
// at its next round (every GossipInterval), and etcd gets it at most every LoadWriteInterval.
// Load.Seq is ignored: the Registrar numbers updates itself. A call that changes nothing does
// nothing.
func (r *Registrar) UpdateLoad(l Load) {
	changed := r.self.update(func(cur *Load, _ *bool) {
		cur.FreeBlocks, cur.RunningSeqs, cur.QueuedPrefillTokens = l.FreeBlocks, l.RunningSeqs, l.QueuedPrefillTokens
	})
	if changed {
		r.changed()
	}
}

// SetDraining marks the member as draining (routers send it no new work) or not. It never
// blocks; the flag goes to etcd at once, not rate-limited, and out by gossip.
func (r *Registrar) SetDraining(draining bool) {
	if r.self.update(func(_ *Load, d *bool) { *d = draining }) {
		r.changed()
	}
}

// Drain sets the draining flag and waits until etcd has it (or ctx ends): when it returns nil
// every router watching etcd has been told, and a node may finish its in-flight work knowing
// no new work is on its way.
func (r *Registrar) Drain(ctx context.Context) error {
	r.SetDraining(true)
	for {
		ch := r.written.wait()
		if r.writtenDraining.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("drain: draining flag not written: %w", ctx.Err())
		}
	}
}

func (r *Registrar) changed() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
	if r.gossip != nil {
		r.gossip.broadcastSelf()
	}
}

// Run registers the member and keeps it registered until ctx is done; then it revokes the lease
// (bounded by RevokeTimeout) and leaves the gossip cluster (bounded too). It retries every etcd
// failure with backoff for as long as ctx lives: it fails only on bad configuration or when the
// gossip socket cannot be bound. It returns nil after a clean stop.
func (r *Registrar) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	if err := r.node.Validate(); err != nil {
		return err
	}
	if r.cli == nil {
		cli, err := r.cfg.NewEtcdClient(r.lg)
		if err != nil {
			return err
		}
		defer cli.Close()
		r.cli = cli
	}
	if r.gossip != nil {
		addr, err := r.gossip.start()
		if err != nil {
			return err
		}
		defer r.gossip.stop()
		r.nodeMu.Lock()
		r.node.GossipAddr = addr
		r.nodeMu.Unlock()
		r.lg.Info("gossip started", zap.String("gossip-addr", addr))
		// Join before registering, so that routers know the member by gossip by the time they
		// see it in etcd.
		r.joinPeers(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.session(gctx) })
	if r.gossip != nil {
		g.Go(func() error { return r.gossipLoop(gctx) })
	}
	return g.Wait()
}

// session registers, serves the lease until it is lost, and registers again, forever.
func (r *Registrar) session(ctx context.Context) error {
	bo := newBackoff(100*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		lease, written, err := r.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.writeErrors.Add(1)
			d := bo.next()
			r.lg.Warn("register failed, retrying", zap.Error(err), zap.Duration("backoff", d))
			sleep(ctx, d)
			continue
		}
		bo.reset()
		r.registrations.Add(1)
		r.leaseID.Store(int64(lease))
		r.readyOnce.Do(func() { close(r.ready) })
		r.lg.Info("registered", zap.String("key", r.key), zap.Int64("lease-id", int64(lease)))
		err = r.serve(ctx, lease, written)
		r.leaseID.Store(0)
		if ctx.Err() != nil {
			r.revoke(lease)
			break
		}
		r.lg.Warn("registration lost, registering again", zap.Error(err))
	}
	return nil
}

func (r *Registrar) descriptor() Descriptor {
	l, d := r.self.get()
	return Descriptor{Schema: SchemaVersion, Node: r.Node(), Draining: d, Load: l}
}

// register grants a lease and writes the descriptor under it.
func (r *Registrar) register(ctx context.Context) (clientv3.LeaseID, Descriptor, error) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Etcd.RequestTimeout)
	defer cancel()
	lease, err := r.cli.Grant(rctx, int64(r.cfg.LeaseTTL/time.Second))
	if err != nil {
		return 0, Descriptor{}, fmt.Errorf("grant lease: %w", err)
	}
	d, err := r.put(rctx, lease.ID)
	if err != nil {
		r.revoke(lease.ID)
		return 0, Descriptor{}, err
	}
	return lease.ID, d, nil
}

// put writes the current descriptor under lease and returns what it wrote.
func (r *Registrar) put(ctx context.Context, lease clientv3.LeaseID) (Descriptor, error) {
	d := r.descriptor()
	val, err := MarshalDescriptor(d)
	if err != nil {
		return Descriptor{}, err
	}
	if _, err := r.cli.Put(ctx, r.key, string(val), clientv3.WithLease(lease)); err != nil {
		return Descriptor{}, fmt.Errorf("put %s: %w", r.key, err)
	}
	r.writes.Add(1)
	r.writtenDraining.Store(d.Draining)
	r.written.notify()
	return d, nil
}

// serve keeps lease alive and writes state changes until the lease is lost or ctx is done.
func (r *Registrar) serve(ctx context.Context, lease clientv3.LeaseID, written Descriptor) error {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := r.cli.KeepAlive(kctx, lease)
	if err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	lastWrite := time.Now()
	lastLoad, lastDraining := written.Load, written.Draining
	var timer *time.Timer
	var timerC <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm := func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		timerC = timer.C
	}
	retry := newBackoff(100*time.Millisecond, time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ka:
			if !ok {
				return errLeaseLost
			}
			continue
		case <-r.wake:
		case <-timerC:
			timerC = nil
		}
		cur, draining := r.self.get()
		if sameLoad(cur, lastLoad) && draining == lastDraining {
			continue
		}
		if draining == lastDraining && timerC != nil {
			continue // a write is already scheduled
		}
		if wait := r.cfg.LoadWriteInterval - time.Since(lastWrite); draining == lastDraining && wait > 0 {
			arm(wait)
			continue
		}
		wctx, wcancel := context.WithTimeout(ctx, r.cfg.Etcd.RequestTimeout)
		d, err := r.put(wctx, lease)
		wcancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.writeErrors.Add(1)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return err
			}
			d := retry.next()
			r.lg.Warn("write state failed, retrying", zap.Error(err), zap.Duration("backoff", d))
			arm(d)
			continue
		}
		retry.reset()
		lastWrite, lastLoad, lastDraining = time.Now(), d.Load, d.Draining
	}
}

func sameLoad(a, b Load) bool {
	a.Seq, b.Seq = 0, 0
	return a == b
}

// revoke deletes the member's key by revoking its lease, bounded by RevokeTimeout: a member
// that stops while etcd is down must not hang; its lease then expires by itself.
func (r *Registrar) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RevokeTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		r.lg.Warn("revoke lease failed; it will expire", zap.Error(err), zap.Int64("lease-id", int64(lease)))
		return
	}
	r.lg.Info("lease revoked", zap.Int64("lease-id", int64(lease)))
}

// gossipLoop re-broadcasts this member's state every LoadInterval, reconciles gossip membership
// with etcd every RejoinInterval, and prunes old records.
func (r *Registrar) gossipLoop(ctx context.Context) error {
	lt := time.NewTicker(r.cfg.Gossip.LoadInterval)
	defer lt.Stop()
	jt := time.NewTicker(r.cfg.Gossip.RejoinInterval)
	defer jt.Stop()
	pt := time.NewTicker(time.Minute)
	defer pt.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-lt.C:
			r.gossip.broadcastSelf()
		case <-jt.C:
			r.joinPeers(ctx)
		case <-pt.C:
			r.gossip.prune(deadRecordRetains)
		}
	}
}

// joinPeers joins, by gossip, members that etcd lists and gossip does not see alive at the
// address they registered, and the static seeds while this member is alone. Routers go first:
// they are the members that must learn of a new node soonest.
func (r *Registrar) joinPeers(ctx context.Context) {
	type cand struct{ id, addr string }
	var routers, others []cand
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Etcd.RequestTimeout)
	resp, err := r.cli.Get(rctx, NodesPrefix(r.cfg.ClusterName), clientv3.WithPrefix())
	cancel()
	if err != nil {
		r.lg.Debug("list members for gossip join", zap.Error(err))
	} else {
		self := r.Node().ID
		for _, kv := range resp.Kvs {
			d, err := UnmarshalDescriptor(kv.Value)
			if err != nil || d.ID == self || d.GossipAddr == "" || r.gossip.aliveAt(d.ID, d.GossipAddr) {
				continue
			}
			if d.Role == RoleRouter {
				routers = append(routers, cand{d.ID, d.GossipAddr})
			} else {
				others = append(others, cand{d.ID, d.GossipAddr})
			}
		}
	}
	rand.Shuffle(len(routers), func(i, j int) { routers[i], routers[j] = routers[j], routers[i] })
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	cands := append(routers, others...)
	if r.gossip.alone() {
		for _, s := range r.cfg.Gossip.Seeds {
			cands = append(cands, cand{"", s})
		}
	}
	tries := 0
	for _, c := range cands {
		if ctx.Err() != nil || tries == maxJoinsPerRound {
			return
		}
		if c.id != "" && r.gossip.aliveAt(c.id, c.addr) {
			continue // learned from an earlier join's push/pull
		}
		tries++
		if n, err := r.gossip.join([]string{c.addr}); n == 0 {
			if ce := r.lg.Check(zap.DebugLevel, "gossip join failed"); ce != nil {
				ce.Write(zap.String("peer-id", c.id), zap.String("addr", c.addr), zap.Error(err))
			}
		}
	}
}
