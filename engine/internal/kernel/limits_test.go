package kernel

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSumBytesReadsEverything checks the bandwidth loop's result against a
// plain sum, so that it is known to read every byte it is timed on.
func TestSumBytesReadsEverything(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	b := make([]byte, 256*37+100)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	var want uint32
	for i := 0; i+4 <= 256*37; i += 4 {
		want += binary.LittleEndian.Uint32(b[i:])
	}
	forEachImpl(t, func(t *testing.T) {
		if got := cur().sumBytes(b); got != uint64(want) {
			t.Fatalf("sumBytes = %#x, want %#x", got, want)
		}
	})
}

func TestLimitsRun(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		if g := PeakFMA(2, 10*time.Millisecond); !(g > 0) {
			t.Errorf("PeakFMA = %v GFLOP/s", g)
		}
		if g := ReadBandwidth(2, 1<<20, 10*time.Millisecond); !(g > 0) {
			t.Errorf("ReadBandwidth = %v GB/s", g)
		}
		if g := ReadBandwidth(0, 1, time.Millisecond); !(g > 0) {
			t.Errorf("ReadBandwidth of a tiny buffer = %v GB/s", g)
		}
	})
}
