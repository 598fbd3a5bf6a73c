package decode

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/duet-llm/duet/engine/sample"
	"github.com/duet-llm/duet/kvtransfer"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
)

// reservation is one request on this node, from Reserve until its blocks
// are free again.
type reservation struct {
	s          *Server
	id         uint64
	token      kvtransfer.Token
	reqID      string
	blocks     []int32
	promptLen  int
	promptHash uint64
	params     sample.Params
	prompt     []int32
	ttl        time.Duration
	created    time.Time

	kv        *kvtransfer.Reservation // remote KV; nil when local
	localDone chan *commonv1.KVCommit // local commit (nil: the prefill gave up)
	acquired  atomic.Bool             // a local prefill holds the blocks
	admitted  atomic.Bool             // the KV is committed: the blocks belong to a sequence

	// events carries the stream to the attached router; it holds every
	// event a request can produce, so senders never block.
	events      chan *decodev1.AttachResponse
	attachFlag  atomic.Bool
	attached    chan struct{}
	streamEnded chan struct{} // closed when the attached stream's handler returns
	cancelOnce  sync.Once
	canceled    chan struct{}
	cancelCause atomic.Value // string
	finishOnce  sync.Once
	done        chan struct{}
}

func (r *reservation) attach() bool {
	if !r.attachFlag.CompareAndSwap(false, true) {
		return false
	}
	close(r.attached)
	return true
}

// cancel asks the reservation to end; the owner of its blocks (the watcher
// before admission, the decode loop after) finishes it.
func (r *reservation) cancel(reason string) {
	r.cancelOnce.Do(func() {
		r.cancelCause.Store(reason)
		close(r.canceled)
		if r.kv != nil {
			r.kv.Cancel(reason)
		}
	})
}

func (r *reservation) isCanceled() bool {
	select {
	case <-r.canceled:
		return true
	default:
		return false
	}
}

func (r *reservation) cause() string {
	if c, ok := r.cancelCause.Load().(string); ok {
		return c
	}
	return "canceled"
}

// finish sends the final event, frees the blocks and forgets the
// reservation, once. Only the blocks' owner calls it.
func (r *reservation) finish(f *decodev1.Finished) {
	r.finishOnce.Do(func() {
		outcome := f.GetReason()
		if outcome != outcomeStop && outcome != outcomeLength {
			outcome = outcomeError
			if r.isCanceled() {
				outcome = outcomeCanceled
			}
		}
		r.s.m.finished.WithLabelValues(outcome).Inc()
		r.events <- &decodev1.AttachResponse{Event: &decodev1.AttachResponse_Finished{Finished: f}}
		if err := r.s.pool.Free(r.blocks); err != nil {
			r.s.lg.Error("free KV blocks", zap.String("request-id", r.reqID), zap.Uint64("reservation", r.id), zap.Error(err))
		}
		close(r.done)
		r.s.reportLoad()
		level := zap.DebugLevel
		if f.GetReason() == "error" && !r.isCanceled() {
			level = zap.WarnLevel // a failure nobody asked for
		}
		if ce := r.s.lg.Check(level, "finished"); ce != nil {
			ce.Write(zap.String("request-id", r.reqID), zap.Uint64("reservation", r.id), zap.String("reason", f.GetReason()), zap.String("error", f.GetError()))
		}
	})
}

// watch owns the reservation until its KV is committed: it waits for the
// commit (or its failure, expiry or cancellation), checks it, and hands
// the sequence to the decode loop — or finishes the reservation.
func (r *reservation) watch() {
	defer r.s.wg.Done()
	defer r.linger()
	commit, err := r.awaitCommit()
	if err == nil {
		err = r.check(commit)
	}
	if err != nil {
		r.finish(finishedErr(err))
		return
	}
	committed := time.Now()
	wait := committed.Sub(r.created)
	r.admitted.Store(true)
	r.s.m.kvWait.Observe(wait.Seconds())
	if ce := r.s.lg.Check(zap.DebugLevel, "kv committed"); ce != nil {
		ce.Write(zap.String("request-id", r.reqID), zap.Uint64("reservation", r.id), zap.Duration("wait", wait), zap.Bool("local", r.kv == nil))
	}
	r.events <- &decodev1.AttachResponse{Event: &decodev1.AttachResponse_Admitted{Admitted: &decodev1.Admitted{
		PromptTokens: int32(r.promptLen), WaitUs: wait.Microseconds()}}}
	if reason := commit.GetFinishReason(); reason != "" {
		// The first token already ended the completion: nothing to decode.
		r.finish(&decodev1.Finished{Reason: reason, CompletionTokens: 1})
		return
	}
	r.s.admit <- &admission{r: r, first: commit.GetFirstToken(), committed: committed}
	// The loop owns the blocks now.
}

// linger keeps a reservation findable until its stream has taken every
// event: a short completion can finish before the router's Attach reaches
// this node. It cancels the reservation when no stream attaches within
// the TTL (a router that vanished), waits for it to finish, and forgets it
// once the stream is gone.
func (r *reservation) linger() {
	ttl := time.NewTimer(r.ttl)
	defer ttl.Stop()
	select {
	case <-r.attached:
	case <-r.canceled: // released or stopped: no stream is coming
	case <-ttl.C:
		r.cancel(ErrNotAttached.Error())
	}
	<-r.done
	if r.attachFlag.Load() {
		<-r.streamEnded
	}
	r.s.remove(r)
}

// awaitCommit waits for the KV and the commit payload.
func (r *reservation) awaitCommit() (*commonv1.KVCommit, error) {
	if r.kv == nil {
		ttl := time.NewTimer(r.ttl)
		defer ttl.Stop()
		select {
		case c := <-r.localDone:
			if c == nil {
				return nil, fmt.Errorf("%w: prefill gave up", ErrCanceled)
			}
			return c, nil
		case <-ttl.C:
			if !r.acquired.Load() {
				return nil, fmt.Errorf("%w: no prefill within %v", kvtransfer.ErrExpired, r.ttl)
			}
		case <-r.canceled:
			if !r.acquired.Load() {
				return nil, fmt.Errorf("%w: %s", ErrCanceled, r.cause())
			}
		}
		// A local prefill holds the blocks: they are freed only once it
		// lets go (it is canceled through its own stream).
		if c := <-r.localDone; c != nil && !r.isCanceled() {
			return c, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrCanceled, r.cause())
	}
	<-r.kv.Done() // delivered only once no write into the slots is in progress
	out := r.kv.Outcome()
	if out.State != kvtransfer.StateCommitted {
		return nil, fmt.Errorf("kv transfer %s: %w", out.State, out.Err)
	}
	var c commonv1.KVCommit
	if err := proto.Unmarshal(out.Payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrBadCommit, err)
	}
	return &c, nil
}

func (r *reservation) check(c *commonv1.KVCommit) error {
	switch {
	case int(c.GetPromptTokens()) != r.promptLen:
		return fmt.Errorf("%w: %d prompt tokens, reserved for %d", ErrBadCommit, c.GetPromptTokens(), r.promptLen)
	case c.GetPromptHash() != r.promptHash:
		return fmt.Errorf("%w: prompt hash differs", ErrBadCommit)
	case c.GetFirstToken() < 0 || int(c.GetFirstToken()) >= r.s.vocab:
		return fmt.Errorf("%w: first token %d", ErrBadCommit, c.GetFirstToken())
	case r.isCanceled():
		return fmt.Errorf("%w: %s", ErrCanceled, r.cause())
	}
	switch c.GetFinishReason() {
	case "", "stop", "length":
		return nil
	}
	return fmt.Errorf("%w: finish reason %q", ErrBadCommit, c.GetFinishReason())
}
