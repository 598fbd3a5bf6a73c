package kernel

import (
	"encoding/binary"
	"runtime"
	"sync"
	"time"
)

// PeakFMA measures the machine's multiply-add throughput in GFLOP/s (2 per
// lane FMA): a register-only loop with enough independent accumulators to
// keep every FMA unit busy, on workers goroutines at once (workers <= 0
// means GOMAXPROCS) for about d. It uses the vector width of the active
// implementation, so that a kernel is compared with the peak of its own
// instructions. It is the denominator for prefill, which is compute-bound.
func PeakFMA(workers int, d time.Duration) (gflops float64) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	im := cur()
	flops := make([]float64, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				flops[i] += im.fmaLoop(1 << 14)
				if !time.Now().Before(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var total float64
	for _, f := range flops {
		total += f
	}
	return total / el / 1e9
}

// ReadBandwidth measures how fast workers goroutines together (workers <= 0
// means GOMAXPROCS) can read memory, in GB/s (1e9 bytes): each sums its
// share of a buffer of the given size with vector loads, over and over, for
// about d. Pick bytes well beyond the last-level cache (a few hundred MiB)
// to measure DRAM. It is the denominator for decode, which streams every
// weight once per token.
func ReadBandwidth(workers int, bytes int, d time.Duration) (gbps float64) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const unit = 256
	share := bytes / workers / unit * unit
	if share == 0 {
		share = unit
	}
	buf := make([]byte, share*workers)
	// Write every page so that reads do not all hit the shared zero page.
	for i := 0; i < len(buf); i += 4096 {
		binary.LittleEndian.PutUint32(buf[i:], uint32(i))
	}
	im := cur()
	read := make([]float64, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := buf[i*share : (i+1)*share]
			var sink uint64
			for {
				sink += im.sumBytes(part)
				read[i] += float64(len(part))
				if !time.Now().Before(deadline) {
					break
				}
			}
			if sink == 1 { // keep the sum alive
				read[i]++
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var total float64
	for _, r := range read {
		total += r
	}
	runtime.KeepAlive(buf)
	return total / el / 1e9
}

func fmaLoopGeneric(iters int) float64 {
	var a0, a1, a2, a3, a4, a5, a6, a7 float32 = 0, 1, 2, 3, 4, 5, 6, 7
	m, c := float32(0.999), float32(0.001)
	for range iters {
		a0 = a0*m + c
		a1 = a1*m + c
		a2 = a2*m + c
		a3 = a3*m + c
		a4 = a4*m + c
		a5 = a5*m + c
		a6 = a6*m + c
		a7 = a7*m + c
	}
	if a0+a1+a2+a3+a4+a5+a6+a7 == 1 {
		return 0
	}
	return float64(iters) * 8 * 2
}

// sumBytesGeneric is the sum of the little-endian uint32 words of b mod
// 2^32, as the vector versions compute it.
func sumBytesGeneric(b []byte) uint64 {
	var s0, s1, s2, s3 uint32
	for i := 0; i+16 <= len(b); i += 16 {
		s0 += binary.LittleEndian.Uint32(b[i:])
		s1 += binary.LittleEndian.Uint32(b[i+4:])
		s2 += binary.LittleEndian.Uint32(b[i+8:])
		s3 += binary.LittleEndian.Uint32(b[i+12:])
	}
	return uint64(s0 + s1 + s2 + s3)
}
