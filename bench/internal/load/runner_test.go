package load

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/duet-llm/duet/bench/internal/stats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sleeper is a Sender that takes a fixed time per request and records
// how many ran at once. The scheduling tests run it in a synctest bubble,
// so its time is exact; the runner's behaviour against a real server is
// tested through the cluster test of package report.
type sleeper struct {
	took time.Duration

	mu      sync.Mutex
	running int
	peak    int
	sent    []time.Duration // offsets from t0
	t0      time.Time
}

func (s *sleeper) Send(ctx context.Context, r Request) stats.Sample {
	s.mu.Lock()
	s.running++
	s.peak = max(s.peak, s.running)
	s.sent = append(s.sent, time.Since(s.t0))
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.running--; s.mu.Unlock() }()
	select {
	case <-time.After(s.took):
	case <-ctx.Done():
		return stats.Sample{ID: r.ID, Error: ctx.Err().Error()}
	}
	return stats.Sample{ID: r.ID, Class: r.Class, TTFTms: 1, E2Ems: float64(s.took.Milliseconds()), OutputTokens: r.MaxTokens}
}

func TestRunnerOpenLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 10, 20
		snd := &sleeper{took: 350 * time.Millisecond, t0: time.Now()}
		r, err := New(Config{Workload: w, Sender: snd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		samples, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) != 20 {
			t.Fatalf("%d samples", len(samples))
		}
		for i, s := range samples {
			want := float64(i) * 0.1
			if s.ID != i || s.ScheduledS < want-1e-9 || s.ScheduledS > want+1e-9 || s.StartS != s.ScheduledS {
				t.Fatalf("sample %d: id %d scheduled %v started %v, want both %v", i, s.ID, s.ScheduledS, s.StartS, want)
			}
			if d := s.EndS - s.StartS; d < 0.35-1e-9 || d > 0.35+1e-9 {
				t.Fatalf("sample %d took %v", i, d)
			}
		}
		// Open loop: arrivals do not wait for answers; 350 ms at 10/s
		// keeps 4 in flight.
		if snd.peak != 4 {
			t.Fatalf("peak in flight %d, want 4", snd.peak)
		}
	})
}

func TestRunnerMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 10, 6
		snd := &sleeper{took: time.Second, t0: time.Now()}
		r, err := New(Config{Workload: w, Sender: snd, MaxInFlight: 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		samples, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if snd.peak != 2 {
			t.Fatalf("peak %d, want 2", snd.peak)
		}
		// The third arrival (planned at 0.2 s) waits for the first to end
		// at 1 s; the lag stays visible.
		if s := samples[2]; s.ScheduledS > 0.2+1e-9 || s.StartS < 1-1e-9 {
			t.Fatalf("third request scheduled %v started %v", s.ScheduledS, s.StartS)
		}
	})
}

func TestRunnerClosedLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Concurrency, w.Requests = Closed, 3, 10
		snd := &sleeper{took: 100 * time.Millisecond, t0: time.Now()}
		r, err := New(Config{Workload: w, Sender: snd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		samples, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) != 10 || snd.peak != 3 {
			t.Fatalf("%d samples, peak %d; want 10, 3", len(samples), snd.peak)
		}
		// Waves of three every 100 ms: 0, 0.1, 0.2, then the 10th at 0.3.
		if s := samples[9]; s.StartS < 0.3-1e-9 || s.StartS > 0.3+1e-9 {
			t.Fatalf("10th request started at %v", s.StartS)
		}
	})
}

func TestRunnerClosedLoopDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Concurrency, w.Requests, w.Duration = Closed, 2, 1000, time.Second
		snd := &sleeper{took: 300 * time.Millisecond, t0: time.Now()}
		r, _ := New(Config{Workload: w, Sender: snd}, nil)
		samples, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Starts at 0, 0.3, 0.6, 0.9 on each of two slots; none at 1.2.
		if len(samples) != 8 {
			t.Fatalf("%d samples in 1 s, want 8", len(samples))
		}
	})
}

func TestRunnerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 10, 100
		snd := &sleeper{took: 10 * time.Second, t0: time.Now()}
		r, _ := New(Config{Workload: w, Sender: snd}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond)
		defer cancel()
		samples, err := r.Run(ctx)
		if err != context.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
		if len(samples) != 5 {
			t.Fatalf("%d samples after 0.45 s at 10/s, want 5", len(samples))
		}
		for _, s := range samples {
			if s.OK() {
				t.Fatal("a canceled request completed")
			}
		}
	})
}

func TestRunnerProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 1, 5
		var buf bytes.Buffer
		snd := &sleeper{took: 500 * time.Millisecond, t0: time.Now()}
		r, _ := New(Config{Workload: w, Sender: snd, Progress: &buf, ProgressEvery: 2 * time.Second, Label: "rate 1/s"}, nil)
		if _, err := r.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		// Ticks at 2 s and 4 s, and the final line at 4.5 s.
		if len(lines) != 3 {
			t.Fatalf("progress lines %q", lines)
		}
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rate 1/s [##############################] 5/5 done, 0 in flight, 0 failed") {
			t.Fatalf("last line %q", last)
		}
		if !strings.Contains(lines[0], "2/5 done") {
			t.Fatalf("first line %q", lines[0])
		}
	})
}

func TestRunnerTTY(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := baseWorkload()
		w.Arrival, w.Rate, w.Requests = Constant, 10, 3
		var buf bytes.Buffer
		r, _ := New(Config{Workload: w, Sender: &sleeper{took: time.Second, t0: time.Now()}, Progress: &buf, ProgressTTY: true}, nil)
		if _, err := r.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if !strings.HasPrefix(out, "\r") || !strings.HasSuffix(out, "\033[K\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("terminal progress %q", out)
		}
	})
}
