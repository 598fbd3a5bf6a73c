package kvtransfer

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReserveValidation(t *testing.T) {
	r := NewReceiver(ReceiverConfig{}, nil)
	defer r.Close()
	if _, err := r.RegisterRegion(nil); !errors.Is(err, ErrBadRegion) {
		t.Fatalf("empty region: %v", err)
	}
	reg, _ := r.RegisterRegion(make([]byte, 1000))
	tests := []struct {
		name  string
		slots []Slot
		want  error
	}{
		{"ok", []Slot{{Region: reg, Offset: 0, Length: 10}, {Region: reg, Offset: 990, Length: 10}}, nil},
		{"none", nil, ErrBadSlots},
		{"empty slot", []Slot{{Region: reg, Length: 0}}, ErrBadSlots},
		{"past region", []Slot{{Region: reg, Offset: 991, Length: 10}}, ErrBadSlots},
		{"unknown region", []Slot{{Region: 5, Length: 10}}, ErrBadSlots},
		{"overflow", []Slot{{Region: reg, Offset: ^uint64(0) - 3, Length: 10}}, ErrBadSlots},
		{"overlap", []Slot{{Region: reg, Offset: 0, Length: 10}, {Region: reg, Offset: 9, Length: 10}}, ErrBadSlots},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := r.Reserve(tc.slots, time.Minute)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v want %v", err, tc.want)
			}
			if err == nil {
				res.Cancel("")
			}
		})
	}
}

func TestAttachmentLifecycle(t *testing.T) {
	r := NewReceiver(ReceiverConfig{ReclaimGrace: 20 * time.Millisecond}, nil)
	defer r.Close()
	mem := make([]byte, 100)
	reg, _ := r.RegisterRegion(mem)
	slots := []Slot{{Region: reg, Offset: 10, Length: 10}, {Region: reg, Offset: 50, Length: 20}}
	ctx := context.Background()

	t.Run("token", func(t *testing.T) {
		res, _ := r.Reserve(slots, time.Minute)
		defer res.Cancel("")
		bad := res.Descriptor().Token
		bad[0] ^= 1
		if _, err := r.Attach(res.ID(), bad, AttachHooks{}); !errors.Is(err, ErrBadToken) {
			t.Fatalf("wrong token: %v", err)
		}
		if _, err := r.Attach(res.ID()+1, res.Descriptor().Token, AttachHooks{}); !errors.Is(err, ErrBadToken) {
			t.Fatalf("wrong id: %v", err)
		}
	})
	t.Run("commit waits for bytes in flight", func(t *testing.T) {
		res, _ := r.Reserve(slots, time.Minute)
		tok := res.Descriptor().Token
		a1, _ := r.Attach(res.ID(), tok, AttachHooks{})
		a2, _ := r.Attach(res.ID(), tok, AttachHooks{})
		dst, err := a1.BeginWrite(1, 5, 15)
		if err != nil || len(dst) != 15 || cap(dst) != 15 {
			t.Fatalf("begin: %v len %d cap %d", err, len(dst), cap(dst))
		}
		if _, err := a1.BeginWrite(1, 6, 15); !errors.Is(err, ErrOutOfBounds) {
			t.Fatalf("past slot: %v", err)
		}
		if _, err := a1.BeginWrite(2, 0, 1); !errors.Is(err, ErrOutOfBounds) {
			t.Fatalf("bad slot: %v", err)
		}
		copy(dst, "abcdefghijklmno")
		var committed error = errors.New("not yet")
		a2.Commit(25, []byte("pay"), func(err error) { committed = err })
		if committed == nil {
			t.Fatal("commit completed before the bytes landed")
		}
		a1.EndWrite(15, nil)
		d2, _ := a2.BeginWrite(0, 0, 10)
		a2.EndWrite(len(d2), nil)
		if committed != nil {
			t.Fatalf("commit: %v", committed)
		}
		out, _ := res.Wait(ctx)
		if out.State != StateCommitted || string(out.Payload) != "pay" || out.Bytes != 25 {
			t.Fatalf("outcome %+v", out)
		}
		if string(mem[55:70]) != "abcdefghijklmno" {
			t.Fatal("bytes not in the slot")
		}
		if _, err := r.Attach(res.ID(), tok, AttachHooks{}); !errors.Is(err, ErrCommitted) {
			t.Fatalf("attach after commit: %v", err)
		}
	})
	t.Run("reclaim waits for a write in progress, then kills it", func(t *testing.T) {
		res, _ := r.Reserve(slots, time.Minute)
		killed := make(chan struct{})
		var a *Attachment
		a, _ = r.Attach(res.ID(), res.Descriptor().Token, AttachHooks{Kill: func() { close(killed) }})
		if _, err := a.BeginWrite(0, 0, 10); err != nil {
			t.Fatal(err)
		}
		res.Cancel("client left")
		select {
		case <-res.Done():
			t.Fatal("done while a write was streaming into the slots")
		default:
		}
		<-killed // after ReclaimGrace the transport is told to cut it
		a.EndWrite(3, errors.New("connection closed"))
		out, _ := res.Wait(ctx)
		if out.State != StateCanceled || !errors.Is(out.Err, ErrCanceled) {
			t.Fatalf("outcome %+v", out)
		}
		if _, err := a.BeginWrite(0, 0, 1); !errors.Is(err, ErrCanceled) {
			t.Fatalf("write after cancel: %v", err)
		}
	})
	t.Run("expiry and late open", func(t *testing.T) {
		var got []Outcome
		r2 := NewReceiver(ReceiverConfig{OnOutcome: func(o Outcome) { got = append(got, o) }}, nil)
		reg, _ := r2.RegisterRegion(make([]byte, 10))
		res, _ := r2.Reserve([]Slot{{Region: reg, Length: 10}}, 10*time.Millisecond)
		out, _ := res.Wait(ctx)
		if out.State != StateExpired || len(got) != 1 || got[0].State != StateExpired {
			t.Fatalf("outcome %+v, callback %+v", out, got)
		}
		if _, err := r2.Attach(res.ID(), res.Descriptor().Token, AttachHooks{}); !errors.Is(err, ErrExpired) {
			t.Fatalf("late attach: %v", err)
		}
		r2.Close()
		if _, err := r2.Reserve([]Slot{{Region: reg, Length: 1}}, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("reserve after close: %v", err)
		}
	})
	t.Run("sizes that do not add up", func(t *testing.T) {
		res, _ := r.Reserve(slots, time.Minute)
		a, _ := r.Attach(res.ID(), res.Descriptor().Token, AttachHooks{})
		var cerr error
		a.Commit(31, nil, func(err error) { cerr = err })
		if !errors.Is(cerr, ErrSizeMismatch) {
			t.Fatalf("commit beyond the reservation: %v", cerr)
		}
		if out, _ := res.Wait(ctx); out.State != StateFailed {
			t.Fatalf("outcome %+v", out)
		}
	})
}
