package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// NodeView is one member as a Directory sees it: its descriptor from etcd, merged with what
// gossip says of its liveness and (when newer) its load.
type NodeView struct {
	Node
	Load     Load
	Draining bool
	// Gossip is the gossip layer's verdict; GossipUnknown where this process runs no gossip or
	// gossip has not seen the member.
	Gossip GossipState
	// Lease is the etcd lease the member's key lives under; Revision is the key's last
	// modification revision.
	Lease    clientv3.LeaseID
	Revision int64
	// Routable: the member may get new work — its key is under a lease, gossip does not call it
	// dead, and it is not draining. Role matching is Directory.Routable's business.
	Routable bool
}

// entry is one key of the etcd snapshot.
type entry struct {
	desc      Descriptor
	lease     clientv3.LeaseID
	createRev int64
	modRev    int64
	seenAt    time.Time // when this Directory first saw this registration (key, create revision)
}

// Directory keeps a local, always-available snapshot of a cluster's members: it lists and
// watches /<cluster>/nodes/ in etcd and merges the gossip layer's liveness and load. While etcd
// is unreachable it keeps serving the last snapshot (gossip still updates it) and reconnects
// by itself.
type Directory struct {
	cfg    Config
	cli    *clientv3.Client
	gossip *gossip // nil without a Registrar with gossip
	lg     *zap.Logger
	prefix string

	mu      sync.Mutex
	entries map[string]*entry // by key

	rebuildMu sync.Mutex // serializes rebuilds, so an older view never replaces a newer one

	snap      atomic.Pointer[snapshot]
	changed   *notifier
	ready     chan struct{}
	readyOnce sync.Once
	running   atomic.Bool
	lists     atomic.Int64 // for Collector
	watching  atomic.Bool  // for Collector: a watch runs from a fresh list

	// afterList, when set (tests), runs after each successful list, before the watch starts.
	afterList func()
}

// NewDirectory prepares a Directory; it does no I/O. With reg non-nil (a Registrar with gossip
// on, in the same process) the Directory merges that member's gossip view; with nil it relies on
// etcd alone. A non-nil cli is shared, not owned; with cli nil, Run makes its own client from
// cfg and closes it when done.
func NewDirectory(cfg Config, cli *clientv3.Client, reg *Registrar, lg *zap.Logger) *Directory {
	if lg == nil {
		lg = zap.NewNop()
	}
	d := &Directory{
		cfg:     cfg,
		cli:     cli,
		lg:      lg,
		prefix:  NodesPrefix(cfg.ClusterName),
		entries: make(map[string]*entry),
		changed: newNotifier(),
		ready:   make(chan struct{}),
	}
	if reg != nil {
		d.gossip = reg.gossip
	}
	d.snap.Store(&snapshot{})
	return d
}

// snapshot is one published state: every member sorted by id, and per role the routable ones
// (computed once per change, since routers ask per request).
type snapshot struct {
	all      []NodeView
	routable map[Role][]NodeView
}

// Snapshot returns every member, sorted by ID. The slice is the caller's; the RDMADevices
// slices inside are shared and must not be modified.
func (d *Directory) Snapshot() []NodeView { return slices.Clone(d.snap.Load().all) }

// Routable returns the members that may get new work of role: routable and serving role (a
// "both" member serves prefill and decode).
func (d *Directory) Routable(role Role) []NodeView {
	return slices.Clone(d.snap.Load().routable[role])
}

// Get returns the member with id.
func (d *Directory) Get(id string) (NodeView, bool) {
	s := d.snap.Load().all
	i, ok := slices.BinarySearchFunc(s, id, func(v NodeView, id string) int { return cmp.Compare(v.ID, id) })
	if !ok {
		return NodeView{}, false
	}
	return s[i], true
}

// Changed returns a channel closed at the next change of the snapshot. Take it before reading
// the snapshot, so a change in between is not missed:
//
//	for {
//		ch := dir.Changed()
//		use(dir.Snapshot())
//		<-ch
//	}
func (d *Directory) Changed() <-chan struct{} { return d.changed.wait() }

// Ready is closed once the first list from etcd has been applied.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// Run lists and watches etcd and follows gossip until ctx is done. It retries etcd failures
// for as long as ctx lives and returns nil after a clean stop.
func (d *Directory) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	if d.cli == nil {
		if err := d.cfg.Validate(); err != nil {
			return err
		}
		cli, err := d.cfg.NewEtcdClient(d.lg)
		if err != nil {
			return err
		}
		defer cli.Close()
		d.cli = cli
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.syncEtcd(gctx) })
	if d.gossip != nil {
		g.Go(func() error { return d.followGossip(gctx) })
	}
	return g.Wait()
}

// gossipRebuildInterval is the least time between two rebuilds caused by gossip: with a few
// hundred members each sending several load updates a second, rebuilding on every one would
// cost a core; coalescing them costs at most this much latency.
const gossipRebuildInterval = 20 * time.Millisecond

func (d *Directory) followGossip(ctx context.Context) error {
	for {
		ch := d.gossip.changed.wait()
		last := time.Now()
		d.rebuild()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
		if wait := gossipRebuildInterval - time.Since(last); wait > 0 && !sleep(ctx, wait) {
			return nil
		}
	}
}

// syncEtcd lists, then watches from the list's revision; when the watch fails (compacted,
// no leader, canceled) it lists again. Failures back off; the snapshot stays as it was.
func (d *Directory) syncEtcd(ctx context.Context) error {
	bo := newBackoff(100*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		rev, err := d.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			b := bo.next()
			d.lg.Warn("list members failed, keeping last snapshot", zap.Error(err), zap.Duration("backoff", b))
			sleep(ctx, b)
			continue
		}
		bo.reset()
		if d.afterList != nil {
			d.afterList()
		}
		d.watching.Store(true)
		err = d.watch(ctx, rev+1)
		d.watching.Store(false)
		if ctx.Err() != nil {
			break
		}
		b := bo.next()
		d.lg.Warn("watch ended, listing again", zap.Error(err), zap.Duration("backoff", b))
		sleep(ctx, b)
	}
	return nil
}

// list replaces the etcd part of the snapshot with a fresh read and returns its revision.
func (d *Directory) list(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.Etcd.RequestTimeout)
	defer cancel()
	resp, err := d.cli.Get(rctx, d.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", d.prefix, err)
	}
	fresh := make(map[string]*entry, len(resp.Kvs))
	d.mu.Lock()
	for _, kv := range resp.Kvs {
		if e := d.decode(kv); e != nil {
			if old := d.entries[string(kv.Key)]; old != nil && old.createRev == e.createRev {
				e.seenAt = old.seenAt
			}
			fresh[string(kv.Key)] = e
		}
	}
	d.entries = fresh
	d.mu.Unlock()
	d.lists.Add(1)
	d.rebuild()
	d.readyOnce.Do(func() { close(d.ready) })
	return resp.Header.Revision, nil
}

func (d *Directory) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := d.cli.Watch(wctx, d.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d: compacted at %d: %w", rev, resp.CompactRevision, err)
			}
			return fmt.Errorf("watch: %w", err)
		}
		if resp.Canceled {
			return errors.New("watch canceled")
		}
		if len(resp.Events) == 0 {
			continue
		}
		d.mu.Lock()
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.DELETE:
				delete(d.entries, key)
			case mvccpb.PUT:
				e := d.decode(ev.Kv)
				if e == nil {
					continue // bad value: keep what we had
				}
				if old := d.entries[key]; old != nil && old.createRev == e.createRev {
					e.seenAt = old.seenAt
				}
				d.entries[key] = e
			}
		}
		d.mu.Unlock()
		d.rebuild()
	}
	return ctx.Err()
}

// decode turns a key-value into an entry, or nil (logged) when it is not a valid registration.
func (d *Directory) decode(kv *mvccpb.KeyValue) *entry {
	role, id, err := ParseNodeKey(d.cfg.ClusterName, string(kv.Key))
	if err == nil {
		var desc Descriptor
		desc, err = UnmarshalDescriptor(kv.Value)
		if err == nil && (desc.ID != id || desc.Role != role) {
			err = fmt.Errorf("%w: descriptor says %s/%s", ErrBadDescriptor, desc.Role, desc.ID)
		}
		if err == nil {
			return &entry{desc: desc, lease: clientv3.LeaseID(kv.Lease), createRev: kv.CreateRevision,
				modRev: kv.ModRevision, seenAt: time.Now()}
		}
	}
	d.lg.Warn("ignoring bad member key", zap.String("key", string(kv.Key)), zap.Error(err))
	return nil
}

// rebuild recomputes the published snapshot from the etcd entries and the gossip table.
func (d *Directory) rebuild() {
	d.rebuildMu.Lock()
	defer d.rebuildMu.Unlock()
	var peers map[string]peerRecord
	if d.gossip != nil {
		peers = d.gossip.peerSnapshot()
	}
	d.mu.Lock()
	byID := make(map[string]*entry, len(d.entries))
	for _, e := range d.entries {
		// The same id under two keys (a member restarted with another role while its old
		// key's lease runs out): the newest registration wins.
		if o := byID[e.desc.ID]; o == nil || e.createRev > o.createRev {
			byID[e.desc.ID] = e
		}
	}
	views := make([]NodeView, 0, len(byID))
	for _, e := range byID {
		views = append(views, view(e, peers))
	}
	d.mu.Unlock()
	slices.SortFunc(views, func(a, b NodeView) int { return cmp.Compare(a.ID, b.ID) })
	snap := &snapshot{all: views, routable: make(map[Role][]NodeView, len(Roles))}
	for _, role := range Roles {
		var r []NodeView
		for _, v := range views {
			if v.Routable && v.Role.Serves(role) {
				r = append(r, v)
			}
		}
		snap.routable[role] = r
	}
	d.snap.Store(snap)
	d.changed.notify()
}

func view(e *entry, peers map[string]peerRecord) NodeView {
	v := NodeView{
		Node:     e.desc.Node,
		Load:     e.desc.Load,
		Draining: e.desc.Draining,
		Lease:    e.lease,
		Revision: e.modRev,
	}
	v.RDMADevices = slices.Clip(v.RDMADevices)
	if p, ok := peers[v.ID]; ok {
		v.Gossip = p.state
		// A death recorded before this registration was first seen belongs to an earlier life
		// of the member (killed, then restarted under the same id): it says nothing of this one.
		if p.state == GossipDead && p.stateSince.Before(e.seenAt) {
			v.Gossip = GossipUnknown
		}
		if p.hasLoad && p.load.Seq > v.Load.Seq {
			v.Load, v.Draining = p.load, p.draining
		}
	}
	v.Routable = v.Lease != 0 && v.Gossip != GossipDead && !v.Draining
	return v
}
