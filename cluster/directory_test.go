package cluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestChangedWakesEveryWaiter(t *testing.T) {
	srv, _ := startEtcd(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Gossip.Enabled = false
	r := newRunner(t)
	dir := NewDirectory(cfg, r.client(cfg), nil, nil)
	r.run("directory", dir.Run)
	select {
	case <-dir.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("directory never ready")
	}
	if len(dir.Snapshot()) != 0 {
		t.Fatal("empty cluster has members")
	}

	// Several consumers follow the directory; each must see the new member.
	const waiters = 4
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ch := dir.Changed()
				if _, ok := dir.Get("decode-0"); ok {
					return
				}
				select {
				case <-ch:
				case <-ctx.Done():
					t.Error("waiter never saw the member")
					return
				}
			}
		}()
	}
	startMember(t, r, cfg, Node{ID: "decode-0", Role: RoleDecode}, false)
	wg.Wait()

	// Snapshot is the caller's to change.
	s := dir.Snapshot()
	s[0].ID = "mutated"
	if v, ok := dir.Get("decode-0"); !ok || v.ID != "decode-0" {
		t.Error("changing a snapshot changed the directory")
	}
	if err := dir.Run(context.Background()); err != ErrRunning {
		t.Errorf("second Run: %v", err)
	}
}

func TestDirectoryViewMerge(t *testing.T) {
	seen := time.Now()
	e := &entry{
		desc:   Descriptor{Schema: 1, Node: Node{ID: "d", Role: RoleDecode}, Load: Load{FreeBlocks: 1, Seq: 10}},
		lease:  7,
		seenAt: seen,
	}
	for _, tc := range []struct {
		name     string
		peer     *peerRecord
		gossip   GossipState
		free     int
		routable bool
	}{
		{"no gossip", nil, GossipUnknown, 1, true},
		{"alive, older load", &peerRecord{state: GossipAlive, hasLoad: true, load: Load{FreeBlocks: 2, Seq: 9}}, GossipAlive, 1, true},
		{"alive, newer load", &peerRecord{state: GossipAlive, hasLoad: true, load: Load{FreeBlocks: 3, Seq: 11}}, GossipAlive, 3, true},
		{"newer draining", &peerRecord{state: GossipAlive, hasLoad: true, draining: true, load: Load{Seq: 12}}, GossipAlive, 0, false},
		{"dead since after seen", &peerRecord{state: GossipDead, stateSince: seen.Add(time.Second)}, GossipDead, 1, false},
		{"dead before this life", &peerRecord{state: GossipDead, stateSince: seen.Add(-time.Second)}, GossipUnknown, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers := map[string]peerRecord{}
			if tc.peer != nil {
				peers["d"] = *tc.peer
			}
			v := view(e, peers)
			if v.Gossip != tc.gossip || v.Load.FreeBlocks != tc.free || v.Routable != tc.routable {
				t.Fatalf("view: gossip %v free %d routable %v", v.Gossip, v.Load.FreeBlocks, v.Routable)
			}
		})
	}
	unleased := *e
	unleased.lease = 0
	if view(&unleased, nil).Routable {
		t.Error("key without lease routable")
	}
}
