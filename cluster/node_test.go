package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"decode-0", true},
		{"pod.name_1-A", true},
		{strings.Repeat("a", 128), true},
		{"", false},
		{strings.Repeat("a", 129), false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadID) {
				t.Fatalf("error %v does not wrap ErrBadID", err)
			}
		})
	}
}

func TestRoleServes(t *testing.T) {
	for _, tc := range []struct {
		have, want Role
		ok         bool
	}{
		{RolePrefill, RolePrefill, true},
		{RoleDecode, RoleDecode, true},
		{RoleBoth, RolePrefill, true},
		{RoleBoth, RoleDecode, true},
		{RoleBoth, RoleBoth, true},
		{RolePrefill, RoleDecode, false},
		{RoleDecode, RolePrefill, false},
		{RolePrefill, RoleBoth, false},
		{RoleRouter, RolePrefill, false},
		{RoleRouter, RoleRouter, true},
		{RoleBoth, RoleRouter, false},
	} {
		if got := tc.have.Serves(tc.want); got != tc.ok {
			t.Errorf("%s.Serves(%s) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
	if _, err := ParseRole("gpu"); !errors.Is(err, ErrBadRole) {
		t.Errorf("ParseRole(gpu) = %v", err)
	}
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%s) = %v, %v", r, got, err)
		}
	}
}

func TestParseNodeKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		role Role
		id   string
		ok   bool
	}{
		{"/duet/nodes/decode/d-0", RoleDecode, "d-0", true},
		{"/duet/nodes/router/r", RoleRouter, "r", true},
		{"/duet/nodes/both/x.y", RoleBoth, "x.y", true},
		{"/other/nodes/decode/d-0", "", "", false},
		{"/duet/nodes/decode", "", "", false},
		{"/duet/nodes/decode/", "", "", false},
		{"/duet/nodes/gpu/d-0", "", "", false},
		{"/duet/nodes/decode/a/b", "", "", false},
		{"/duet/nodes/", "", "", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			role, id, err := ParseNodeKey("duet", tc.key)
			if (err == nil) != tc.ok || role != tc.role || id != tc.id {
				t.Fatalf("ParseNodeKey(%q) = %q, %q, %v", tc.key, role, id, err)
			}
			if err != nil && !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v does not wrap ErrBadKey", err)
			}
			if err == nil && NodeKey("duet", role, id) != tc.key {
				t.Fatalf("NodeKey round trip: %q", NodeKey("duet", role, id))
			}
		})
	}
}

func TestDescriptorRoundTrip(t *testing.T) {
	d := Descriptor{
		Node: Node{ID: "decode-0", Role: RoleDecode, GRPCAddr: "10.0.0.1:7000", KVAddr: "10.0.0.1:7001",
			GossipAddr: "10.0.0.1:7946", ModelID: "m", KVLayout: KVLayout{DType: "int8", BlockTokens: 16, Layers: 2, KVHeads: 2, HeadDim: 64, Kernel: "avx2"},
			TotalBlocks: 10, Host: "h", Zone: "z", RDMADevices: []string{"mlx5_0", "mlx5_1"}, Version: "v1",
			StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)},
		Draining: true,
		Load:     Load{FreeBlocks: 3, RunningSeqs: 2, QueuedPrefillTokens: 100, Seq: 1 << 52},
	}
	b, err := MarshalDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"schema":1`, `"kv_layout":{"dtype":"int8"`, `"rdma_devices":["mlx5_0","mlx5_1"]`, `"draining":true`, `"load":{"free_blocks":3`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON %s lacks %s", b, field)
		}
	}
	got, err := UnmarshalDescriptor(b)
	if err != nil {
		t.Fatal(err)
	}
	d.Schema = SchemaVersion
	if got.ID != d.ID || got.KVLayout != d.KVLayout || got.Load != d.Load || !got.StartedAt.Equal(d.StartedAt) ||
		got.Draining != d.Draining || strings.Join(got.RDMADevices, ",") != "mlx5_0,mlx5_1" || got.Schema != 1 {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
}

func TestUnmarshalDescriptorRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":          ``,
		"not json":       `hello`,
		"array":          `[]`,
		"no schema":      `{"id":"a","role":"decode"}`,
		"bad role":       `{"schema":1,"id":"a","role":"gpu"}`,
		"bad id":         `{"schema":1,"id":"a/b","role":"decode"}`,
		"negative load":  `{"schema":1,"id":"a","role":"decode","load":{"free_blocks":-1}}`,
		"negative total": `{"schema":1,"id":"a","role":"decode","total_blocks":-5}`,
		"wrong type":     `{"schema":1,"id":7,"role":"decode"}`,
		"trailing":       `{"schema":1,"id":"a","role":"decode"} {}`,
		"huge":           `{"schema":1,"id":"a","role":"decode","host":"` + strings.Repeat("x", maxDescriptorSize) + `"}`,
		"long field":     `{"schema":1,"id":"a","role":"decode","host":"` + strings.Repeat("x", 2000) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalDescriptor([]byte(in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// A future schema with unknown fields is read.
	if _, err := UnmarshalDescriptor([]byte(`{"schema":2,"id":"a","role":"decode","gpu":"h100"}`)); err != nil {
		t.Errorf("future schema: %v", err)
	}
}

func TestSelfStateSeq(t *testing.T) {
	start := time.Now()
	s := newSelfState(start)
	l0, _ := s.get()
	if l0.Seq < uint64(start.UnixMicro()) {
		t.Fatalf("initial seq %d below start time", l0.Seq)
	}
	if s.update(func(*Load, *bool) {}) {
		t.Error("no-op update reported a change")
	}
	last := l0.Seq
	for i := 1; i <= 1000; i++ {
		if !s.update(func(l *Load, _ *bool) { l.FreeBlocks = i }) {
			t.Fatal("update lost")
		}
		l, _ := s.get()
		if l.Seq <= last {
			t.Fatalf("seq went %d -> %d", last, l.Seq)
		}
		last = l.Seq
	}
	if !s.update(func(_ *Load, d *bool) { *d = true }) {
		t.Fatal("draining change not reported")
	}
	l, d := s.get()
	if !d || l.Seq <= last || l.FreeBlocks != 1000 {
		t.Fatalf("after draining: %+v %v", l, d)
	}
	if !s.bumpPast(l.Seq + 100) {
		t.Fatal("bumpPast")
	}
	if l2, _ := s.get(); l2.Seq != l.Seq+101 {
		t.Fatalf("bumped to %d", l2.Seq)
	}
	if s.bumpPast(1) {
		t.Error("bumpPast of an old seq changed something")
	}
}
