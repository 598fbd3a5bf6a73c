package decode

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/kvcache"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/engine/sample"
	decodev1 "github.com/duet-llm/duet/proto/duet/decode/v1"
)

// admission hands a committed reservation to the decode loop.
type admission struct {
	r         *reservation
	first     int32
	committed time.Time
}

// sequence is a running sequence in the decode batch.
type sequence struct {
	r       *reservation
	kv      kvcache.Seq
	sampler *sample.Sampler
	logits  []float32
	next    int32 // the token to feed at the next step
	index   int   // index of the next token in the completion
}

// loop is the continuous-batching decode loop: sequences join and leave
// between steps; each step feeds every running sequence its last token.
func (s *Server) loop(ctx context.Context) {
	maxSeqs := s.eng.Options().MaxSeqs
	ws, err := sample.NewWorkspace(s.vocab)
	if err != nil {
		s.lg.Error("sampler workspace", zap.Error(err))
		return
	}
	var (
		running []*sequence
		steps   = make([]engine.Step, 0, maxSeqs)
		tok     = make([][]int32, maxSeqs)
	)
	for i := range tok {
		tok[i] = make([]int32, 1)
	}
	for {
		// Admit committed sequences: block only when idle.
		if len(running) == 0 {
			select {
			case a := <-s.admit:
				running = s.start(running, a, ws)
			case <-ctx.Done():
				return
			}
		}
	admitting:
		for len(running) < maxSeqs {
			select {
			case a := <-s.admit:
				running = s.start(running, a, ws)
			default:
				break admitting
			}
		}
		if ctx.Err() != nil {
			for _, q := range running {
				q.r.finish(finishedErr(ErrCanceled))
			}
			s.running.Store(0)
			return
		}
		// Drop sequences whose stream went away.
		live := running[:0]
		for _, q := range running {
			if q.r.isCanceled() {
				q.r.finish(finishedErr(fmt.Errorf("%w: %s", ErrCanceled, q.r.cause())))
				continue
			}
			live = append(live, q)
		}
		clear(running[len(live):])
		running = live
		s.running.Store(int32(len(running)))
		if len(running) == 0 {
			s.reportLoad()
			continue
		}

		steps = steps[:0]
		for i, q := range running {
			tok[i][0] = q.next
			steps = append(steps, engine.Step{Seq: &q.kv, Tokens: tok[i], Logits: q.logits})
		}
		began := time.Now()
		if err := s.eng.Forward(steps, nil); err != nil {
			s.lg.Error("decode step failed", zap.Error(err), zap.Int("batch", len(steps)))
			for _, q := range running {
				q.r.finish(finishedErr(err))
			}
			running = running[:0]
			continue
		}
		live = running[:0]
		for _, q := range running {
			if s.emit(q) {
				live = append(live, q)
			}
		}
		s.m.stepped(len(steps), time.Since(began))
		clear(running[len(live):])
		running = live
		s.running.Store(int32(len(running)))
	}
}

// start turns an admission into a running sequence.
func (s *Server) start(running []*sequence, a *admission, ws *sample.Workspace) []*sequence {
	r := a.r
	if r.isCanceled() {
		r.finish(finishedErr(fmt.Errorf("%w: %s", ErrCanceled, r.cause())))
		return running
	}
	sm, err := sample.NewWithWorkspace(r.params, ws)
	if err == nil {
		err = sm.Restore(r.prompt, []int32{a.first})
	}
	if err != nil {
		r.finish(finishedErr(err))
		return running
	}
	s.m.admitWait.Observe(time.Since(a.committed).Seconds())
	q := &sequence{r: r, kv: kvcache.Seq{Blocks: r.blocks, Len: r.promptLen}, sampler: sm,
		logits: make([]float32, s.vocab), next: a.first, index: 1}
	s.running.Store(int32(len(running) + 1))
	s.reportLoad()
	return append(running, q)
}

// emit samples q's next token and sends it; it reports whether q goes on.
func (s *Server) emit(q *sequence) bool {
	t, err := q.sampler.Sample(q.logits)
	if err != nil {
		q.r.finish(finishedErr(err))
		return false
	}
	q.r.events <- &decodev1.AttachResponse{Event: &decodev1.AttachResponse_Token{Token: protoconv.Token(t, q.index)}}
	q.index++
	if t.Finish != sample.NotFinished {
		q.r.finish(&decodev1.Finished{Reason: t.Finish.String(), CompletionTokens: int32(q.index)})
		return false
	}
	q.next = t.ID
	return true
}
