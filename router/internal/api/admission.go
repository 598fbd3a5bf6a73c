package api

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Admission outcomes other than a slot.
var (
	errQueueFull    = errors.New("api: queue full")
	errQueueTimeout = errors.New("api: queue timeout")
)

// admission bounds the generations running at once (slots) and the
// requests waiting for one (queue). A buffered channel is the semaphore:
// the runtime hands a released slot to the longest-waiting sender, so the
// queue is FIFO and a newcomer cannot overtake a waiter.
type admission struct {
	slots    chan struct{}
	queued   atomic.Int64
	maxQueue int64
	timeout  time.Duration
}

func newAdmission(maxConcurrent, maxQueue int, timeout time.Duration) *admission {
	return &admission{slots: make(chan struct{}, maxConcurrent), maxQueue: int64(maxQueue), timeout: timeout}
}

// acquire takes a slot, waiting in the queue up to the timeout. It returns
// errQueueFull, errQueueTimeout or ctx's error when it gets none.
func (a *admission) acquire(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	if a.queued.Add(1) > a.maxQueue {
		a.queued.Add(-1)
		return errQueueFull
	}
	defer a.queued.Add(-1)
	t := time.NewTimer(a.timeout)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errQueueTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives a slot back.
func (a *admission) release() { <-a.slots }

// running and waiting report the current load (tests, metrics).
func (a *admission) running() int { return len(a.slots) }
func (a *admission) waiting() int { return int(a.queued.Load()) }
