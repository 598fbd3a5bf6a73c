package load

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/bench/internal/stats"
)

// Sender runs one request and returns its measurements (latencies,
// counts, error); the runner fills in the offsets. *Client is one.
type Sender interface {
	Send(ctx context.Context, r Request) stats.Sample
}

// Config configures a Runner.
type Config struct {
	Workload Workload
	Sender   Sender
	// MaxInFlight caps the requests in flight in an open-loop run (0:
	// 4096). An arrival that finds the cap reached waits; the wait shows
	// as the gap between a sample's ScheduledS and StartS.
	MaxInFlight int
	// Progress receives a progress bar (nil: none). On a terminal it is
	// one line redrawn in place, elsewhere a line every ProgressEvery.
	Progress      io.Writer
	ProgressTTY   bool
	ProgressEvery time.Duration
	// Label prefixes the progress line.
	Label string
}

// Runner drives a workload against a Sender.
type Runner struct {
	cfg Config
	lg  *zap.Logger

	started, done, failed, inflight atomic.Int64
}

// New returns a runner; it does no I/O and starts nothing.
func New(cfg Config, lg *zap.Logger) (*Runner, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := cfg.Workload.Validate(); err != nil {
		return nil, err
	}
	if cfg.Sender == nil {
		return nil, fmt.Errorf("%w: no sender", ErrBadWorkload)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	return &Runner{cfg: cfg, lg: lg}, nil
}

// Run sends the workload and returns one sample per request sent, in the
// order they were planned. It returns when every request it started has
// ended. When ctx ends it stops sending; the requests in flight are
// canceled (their samples carry the error) and Run returns ctx's error
// with the samples gathered so far.
func (r *Runner) Run(ctx context.Context) ([]stats.Sample, error) {
	w := r.cfg.Workload
	plan := NewPlanner(w)
	start := time.Now()
	since := func() float64 { return time.Since(start).Seconds() }

	var (
		mu      sync.Mutex
		samples []stats.Sample
		wg      sync.WaitGroup
	)
	send := func(req Request, scheduled float64) {
		defer wg.Done()
		defer r.inflight.Add(-1)
		st := since()
		s := r.cfg.Sender.Send(ctx, req)
		s.ScheduledS, s.StartS, s.EndS = scheduled, st, since()
		r.done.Add(1)
		if !s.OK() {
			r.failed.Add(1)
			r.lg.Debug("request failed", zap.Int("id", req.ID), zap.String("error", s.Error))
		}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}

	progDone := make(chan struct{})
	stopProg := r.progress(start, progDone)
	defer func() { stopProg(); <-progDone }()

	slots := make(chan struct{}, r.cfg.MaxInFlight)
	if w.Arrival == Closed {
		slots = make(chan struct{}, w.Concurrency)
	}
	var err error
loop:
	for {
		req, ok := plan.Next()
		if !ok {
			break
		}
		scheduled := 0.0
		if w.Arrival != Closed {
			scheduled = req.At.Seconds()
			if d := time.Until(start.Add(req.At)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					err = ctx.Err()
					break loop
				}
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
		if w.Arrival == Closed {
			scheduled = since()
			if w.Duration > 0 && scheduled >= w.Duration.Seconds() {
				<-slots
				break
			}
		}
		r.started.Add(1)
		r.inflight.Add(1)
		wg.Add(1)
		go func() {
			defer func() { <-slots }()
			send(req, scheduled)
		}()
	}
	wg.Wait()
	// Samples in planned order, whatever order they ended in.
	slices.SortFunc(samples, func(a, b stats.Sample) int { return cmp.Compare(a.ID, b.ID) })
	return samples, err
}

// progress draws the progress bar until stop is called; done is closed
// when the drawing goroutine has ended.
func (r *Runner) progress(start time.Time, done chan struct{}) (stop func()) {
	if r.cfg.Progress == nil {
		close(done)
		return func() {}
	}
	every := r.cfg.ProgressEvery
	if r.cfg.ProgressTTY {
		every = 200 * time.Millisecond
	}
	quit := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.draw(start, false)
			case <-quit:
				r.draw(start, true)
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit) }) }
}

func (r *Runner) draw(start time.Time, final bool) {
	const width = 30
	total := int64(r.cfg.Workload.Requests)
	done := r.done.Load()
	filled := int(width * done / max(total, 1))
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	line := fmt.Sprintf("%s[%s] %d/%d done, %d in flight, %d failed, %.0fs",
		r.label(), bar, done, total, r.inflight.Load(), r.failed.Load(), time.Since(start).Seconds())
	switch {
	case r.cfg.ProgressTTY && final:
		fmt.Fprintf(r.cfg.Progress, "\r%s\033[K\n", line)
	case r.cfg.ProgressTTY:
		fmt.Fprintf(r.cfg.Progress, "\r%s\033[K", line)
	default:
		fmt.Fprintln(r.cfg.Progress, line)
	}
}

func (r *Runner) label() string {
	if r.cfg.Label == "" {
		return ""
	}
	return r.cfg.Label + " "
}
