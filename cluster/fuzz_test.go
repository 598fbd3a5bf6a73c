package cluster

import (
	"testing"
)

// The decoders of outside bytes: etcd values (anyone with write access to the prefix), gossip
// packets (anyone who can reach the gossip port, without a key), and keys. None may panic, and
// whatever they accept must be valid and survive a round trip.

func FuzzUnmarshalDescriptor(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := UnmarshalDescriptor(b)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted an invalid descriptor: %v", err)
		}
		out, err := MarshalDescriptor(d)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		d2, err := UnmarshalDescriptor(out)
		if err != nil || d2.ID != d.ID || d2.Load != d.Load || d2.Role != d.Role {
			t.Fatalf("round trip: %+v -> %+v (%v)", d, d2, err)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeState(b)
		if err != nil {
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("accepted an invalid message: %v", err)
		}
		m2, err := decodeState(encodeState(m))
		if err != nil || m2 != m {
			t.Fatalf("round trip: %+v -> %+v (%v)", m, m2, err)
		}
		// Merging it must not panic either.
		newTestGossip("self").NotifyMsg(b)
	})
}

func FuzzDecodeStates(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := decodeStates(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if err := m.validate(); err != nil {
				t.Fatalf("kept an invalid entry: %v", err)
			}
		}
		newTestGossip("self").MergeRemoteState(b, false)
	})
}

func FuzzParseNodeKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		role, id, err := ParseNodeKey("duet", key)
		if err != nil {
			return
		}
		if NodeKey("duet", role, id) != key {
			t.Fatalf("%q parsed to %s/%s, which keys as %q", key, role, id, NodeKey("duet", role, id))
		}
	})
}
