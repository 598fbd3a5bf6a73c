package dispatch

import (
	"errors"
	"testing"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/router/internal/gen"
)

// staticDir is a membership view fixed by the test: choose's inputs.
type staticDir []cluster.NodeView

func (s staticDir) Routable(role cluster.Role) []cluster.NodeView {
	var out []cluster.NodeView
	for _, v := range s {
		if v.Role.Serves(role) {
			out = append(out, v)
		}
	}
	return out
}

var layout = cluster.KVLayout{DType: "f16", BlockTokens: 16, Layers: 5, KVHeads: 4, HeadDim: 8, Kernel: "avx512"}

func node(id string, role cluster.Role, free, queued int) cluster.NodeView {
	return cluster.NodeView{Node: cluster.Node{ID: id, Role: role, ModelID: "m", KVLayout: layout},
		Load: cluster.Load{FreeBlocks: free, QueuedPrefillTokens: queued}, Routable: true}
}

func TestChoose(t *testing.T) {
	other := node("p-other", cluster.RolePrefill, 0, 0)
	other.KVLayout.Kernel = "avx2"
	dir := staticDir{
		node("d1", cluster.RoleDecode, 100, 0),
		node("d2", cluster.RoleDecode, 1000, 0),
		node("p1", cluster.RolePrefill, 0, 500),
		node("p2", cluster.RolePrefill, 0, 10),
		other, // idle, but its kernel differs: KV bytes would not match
	}
	d := New(Config{}, dir, nil)
	pr, err := d.choose("m", 4, 100, nil, nil)
	if err != nil || pr.d.ID != "d2" || pr.p.ID != "p2" || pr.local {
		t.Fatalf("first pair %s/%s local=%v: %v", pr.p.ID, pr.d.ID, pr.local, err)
	}
	// The choice counts at once: p2 now carries 100 more queued tokens
	// than it reports, which still beats p1's 500.
	if p := d.pendingOf("p2"); p.tokens != 100 {
		t.Fatalf("pending on p2: %+v", p)
	}
	d.unassign(pr, 4, 100)
	if p := d.pendingOf("d2"); p != (pending{}) {
		t.Fatalf("pending after unassign: %+v", p)
	}
	// Avoiding the failed nodes picks the next best.
	pr, err = d.choose("m", 4, 100, map[string]bool{"p2": true}, map[string]bool{"d2": true})
	if err != nil || pr.d.ID != "d1" || pr.p.ID != "p1" {
		t.Fatalf("avoiding p2 and d2: %s/%s %v", pr.p.ID, pr.d.ID, err)
	}
	// Too big for every decode node: overloaded (retry later).
	if _, err := d.choose("m", 5000, 100, nil, nil); !errors.Is(err, gen.ErrOverloaded) {
		t.Fatalf("no capacity: %v", err)
	}
	// Unknown model: unavailable.
	if _, err := d.choose("x", 4, 100, nil, nil); !errors.Is(err, gen.ErrUnavailable) {
		t.Fatalf("unknown model: %v", err)
	}
	// Only an incompatible prefill node left: unavailable.
	if _, err := d.choose("m", 4, 100, map[string]bool{"p1": true, "p2": true}, nil); !errors.Is(err, gen.ErrUnavailable) {
		t.Fatalf("incompatible prefill: %v", err)
	}
}

func TestChooseColocated(t *testing.T) {
	dir := staticDir{node("b1", cluster.RoleBoth, 100, 0), node("p1", cluster.RolePrefill, 0, 0)}
	d := New(Config{}, dir, nil)
	pr, err := d.choose("m", 4, 10, nil, nil)
	if err != nil || pr.d.ID != "b1" || pr.p.ID != "b1" || !pr.local {
		t.Fatalf("a both node prefills its own requests: %s/%s local=%v %v", pr.p.ID, pr.d.ID, pr.local, err)
	}
	// Its prefill side failed: another prefill node writes into it remotely.
	pr, err = d.choose("m", 4, 10, map[string]bool{"b1": true}, nil)
	if err != nil || pr.d.ID != "b1" || pr.p.ID != "p1" || pr.local {
		t.Fatalf("after b1's prefill failed: %s/%s local=%v %v", pr.p.ID, pr.d.ID, pr.local, err)
	}
}

func TestChooseSpreadsConcurrentRequests(t *testing.T) {
	dir := staticDir{node("d1", cluster.RoleDecode, 1000, 0), node("d2", cluster.RoleDecode, 1000, 0),
		node("p1", cluster.RolePrefill, 0, 0), node("p2", cluster.RolePrefill, 0, 0)}
	d := New(Config{}, dir, nil)
	seen := map[string]int{}
	for range 8 { // in flight together: nothing is unassigned
		pr, err := d.choose("m", 100, 1000, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[pr.d.ID]++
		seen[pr.p.ID]++
	}
	for _, id := range []string{"d1", "d2", "p1", "p2"} {
		if seen[id] < 2 {
			t.Fatalf("8 concurrent requests spread as %v", seen)
		}
	}
}
