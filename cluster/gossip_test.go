package cluster

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestStateMessageRoundTrip(t *testing.T) {
	m := stateMsg{ID: "decode-0", Draining: true, Load: Load{FreeBlocks: 7, RunningSeqs: 1, QueuedPrefillTokens: 9, Seq: 1<<53 + 1}}
	b := encodeState(m)
	if b[0] != msgState || len(b) > 200 {
		t.Fatalf("encoded %d bytes: %q", len(b), b)
	}
	got, err := decodeState(b)
	if err != nil || got != m {
		t.Fatalf("decode: %+v %v", got, err)
	}
	all := encodeStates([]stateMsg{m, {ID: "p", Load: Load{Seq: 3}}})
	ms, err := decodeStates(all)
	if err != nil || len(ms) != 2 || ms[0] != m {
		t.Fatalf("decodeStates: %+v %v", ms, err)
	}
}

func TestDecodeStateRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":       nil,
		"type only":   {msgState},
		"wrong type":  append([]byte{msgStates}, `{"id":"a"}`...),
		"not json":    append([]byte{msgState}, "xx"...),
		"bad id":      append([]byte{msgState}, `{"id":"a/b","load":{}}`...),
		"no id":       append([]byte{msgState}, `{"load":{}}`...),
		"negative":    append([]byte{msgState}, `{"id":"a","load":{"free_blocks":-2}}`...),
		"seq too big": append([]byte{msgState}, `{"id":"a","load":{"seq":1e30}}`...),
		"trailing":    append([]byte{msgState}, `{"id":"a","load":{}}{}`...),
		"huge":        append([]byte{msgState}, bytes.Repeat([]byte(" "), maxGossipMsg)...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeState(b); !errors.Is(err, ErrBadMessage) {
				t.Fatalf("decodeState = %v, want ErrBadMessage", err)
			}
		})
	}
	// In push/pull state, bad entries are dropped and good ones kept.
	ms, err := decodeStates(append([]byte{msgStates}, `{"states":[{"id":"ok","load":{"seq":1}},{"id":"../x"},{"id":"n","load":{"running_seqs":-1}}]}`...))
	if err != nil || len(ms) != 1 || ms[0].ID != "ok" {
		t.Fatalf("decodeStates: %+v %v", ms, err)
	}
}

func newTestGossip(id string) *gossip {
	cfg := DefaultConfig().Gossip
	return newGossip(cfg, "c", Node{ID: id, Role: RoleDecode}, newSelfState(time.Now()), zap.NewNop())
}

func TestGossipMergeKeepsNewest(t *testing.T) {
	g := newTestGossip("self")
	msg := func(seq uint64, free int) []byte {
		return encodeState(stateMsg{ID: "peer", Load: Load{FreeBlocks: free, Seq: seq}})
	}
	g.NotifyMsg(msg(10, 1))
	g.NotifyMsg(msg(5, 2))  // stale: loses
	g.NotifyMsg(msg(10, 3)) // same seq: not news
	if r := g.peerSnapshot()["peer"]; r.load.FreeBlocks != 1 || r.load.Seq != 10 {
		t.Fatalf("record %+v", r)
	}
	if n := g.queue.NumQueued(); n != 1 {
		t.Errorf("%d relays queued, want 1 (the news only)", n)
	}
	g.NotifyMsg(msg(11, 4))
	if r := g.peerSnapshot()["peer"]; r.load.FreeBlocks != 4 {
		t.Fatalf("newer lost: %+v", r)
	}
	if n := g.queue.NumQueued(); n != 1 {
		t.Errorf("%d relays queued; a newer state of one member must replace the older", n)
	}
	g.NotifyMsg([]byte("garbage")) // ignored, no panic

	// A message about ourselves from a previous life with a higher seq: we jump past it.
	self, _ := g.self.get()
	g.NotifyMsg(encodeState(stateMsg{ID: "self", Load: Load{Seq: self.Seq + 1000}}))
	if now, _ := g.self.get(); now.Seq != self.Seq+1001 {
		t.Errorf("own seq %d, want %d", now.Seq, self.Seq+1001)
	}
	if _, ok := g.peerSnapshot()["self"]; ok {
		t.Error("recorded ourselves as a peer")
	}

	// Push/pull: the remote's newer states are merged, older ones ignored.
	g.MergeRemoteState(encodeStates([]stateMsg{{ID: "peer", Load: Load{Seq: 3, FreeBlocks: 99}}, {ID: "other", Load: Load{Seq: 1}}}), false)
	snap := g.peerSnapshot()
	if snap["peer"].load.FreeBlocks != 4 || !snap["other"].hasLoad {
		t.Errorf("after push/pull: %+v", snap)
	}
	var local []stateMsg
	if ms, err := decodeStates(g.LocalState(false)); err == nil {
		local = ms
	}
	if len(local) != 3 {
		t.Errorf("LocalState has %d states, want self, peer, other", len(local))
	}
}

func TestGossipPeerTableBounded(t *testing.T) {
	g := newTestGossip("self")
	for i := 0; i < maxPeerRecords+100; i++ {
		g.NotifyMsg(encodeState(stateMsg{ID: "p" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strconv.Itoa(i), Load: Load{Seq: 1}}))
	}
	if n := len(g.peerSnapshot()); n != maxPeerRecords {
		t.Fatalf("%d records, want the cap %d", n, maxPeerRecords)
	}
	g.prune(0)
	if n := len(g.peerSnapshot()); n != 0 {
		t.Fatalf("%d records after pruning everything stale", n)
	}
}

func TestMemberlistLogLevels(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string
	}{
		{"[DEBUG] memberlist: x", "debug"},
		{"[INFO] memberlist: x", "info"},
		{"[WARN] memberlist: x", "warn"},
		{"[ERR] memberlist: x", "warn"},
		{"no prefix", "info"},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		w := &memberlistLog{lg: zap.New(core)}
		if _, err := w.Write([]byte(tc.line + "\n")); err != nil {
			t.Fatal(err)
		}
		all := logs.All()
		if len(all) != 1 || all[0].Level.String() != tc.want || all[0].Message == "" {
			t.Errorf("%q logged as %+v, want one entry at %q", tc.line, all, tc.want)
		}
	}
}
