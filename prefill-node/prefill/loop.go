package prefill

import (
	"context"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/duet-llm/duet/engine"
	"github.com/duet-llm/duet/engine/protoconv"
	"github.com/duet-llm/duet/engine/sample"
	commonv1 "github.com/duet-llm/duet/proto/duet/common/v1"
	prefillv1 "github.com/duet-llm/duet/proto/duet/prefill/v1"
)

// chunk is one job's part of an engine step.
type chunk struct {
	j      *job
	from   int // first prompt token of the chunk
	n      int
	logits []float32
}

// Run runs the prefill loop until ctx ends; it then fails what is queued
// and waits for the commits in flight.
func (s *Server) Run(ctx context.Context) error {
	vocab := s.eng.Model().LM.Vocab
	maxSeqs := s.eng.Options().MaxSeqs
	chunks := make([]chunk, 0, maxSeqs)
	steps := make([]engine.Step, 0, maxSeqs)
	ws, err := sample.NewWorkspace(vocab)
	if err != nil {
		return err
	}
	logits := make([][]float32, maxSeqs)
	for i := range logits {
		logits[i] = make([]float32, vocab)
	}
	for {
		chunks = s.plan(chunks[:0], logits)
		if len(chunks) == 0 {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
			}
			break
		}
		steps = steps[:0]
		for _, c := range chunks {
			st := engine.Step{Seq: &c.j.seq, Tokens: c.j.tokens[c.from : c.from+c.n]}
			if c.from+c.n == len(c.j.tokens) {
				st.Logits = c.logits
			}
			steps = append(steps, st)
		}
		began := time.Now()
		err := s.eng.Forward(steps, func(layer int) { s.ship(layer, chunks) })
		s.m.stepped(chunks, time.Since(began))
		for _, c := range chunks {
			s.after(ctx, c, err, ws)
		}
		s.reportLoad()
	}
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, j := range q {
		s.fail(j, ErrCanceled)
	}
	s.commits.Wait()
	return nil
}

// plan picks the next step's chunks: the queue in order, each job a chunk
// of its remaining prompt, until the token budget is spent. Canceled jobs
// are dropped here.
func (s *Server) plan(out []chunk, logits [][]float32) []chunk {
	budget := s.eng.Options().MaxBatchTokens
	bt := s.pool.Layout().BlockTokens
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.queue[:0]
	for _, j := range s.queue {
		if j.ended.Load() || j.ctx.Err() != nil {
			s.queued -= int64(len(j.tokens) - j.done)
			s.commits.Add(1)
			go func() { // fail takes s.mu and may wait for the abort
				defer s.commits.Done()
				s.fail(j, ErrCanceled)
			}()
			continue
		}
		kept = append(kept, j)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	for _, j := range s.queue {
		if budget == 0 || len(out) == cap(out) {
			break
		}
		if j.own && len(j.seq.Blocks) == 0 {
			if err := s.pool.Grow(&j.seq, len(j.tokens)); err != nil {
				break // wait for commits to free blocks; keep the order
			}
		}
		n := len(j.tokens) - j.done
		if n > budget {
			n = budget - budget%bt // whole blocks, so each block ships once
			if j.done%bt != 0 {
				n = 0
			}
		}
		if n == 0 {
			break
		}
		if j.done == 0 {
			j.started = time.Now()
		}
		out = append(out, chunk{j: j, from: j.done, n: n, logits: logits[len(out)]})
		budget -= n
	}
	return out
}

// ship queues one layer's slots of every chunk on its session. It runs
// inside the forward pass, right after the layer's K and V are stored.
func (s *Server) ship(layer int, chunks []chunk) {
	bt := s.pool.Layout().BlockTokens
	for _, c := range chunks {
		j := c.j
		if j.sess == nil || j.err != nil {
			continue
		}
		for b := c.from / bt; b < (c.from+c.n+bt-1)/bt; b++ {
			if err := j.sess.Write(j.ctx, layer*j.nBlocks+b, 0, s.pool.Slot(layer, j.seq.Blocks[b])); err != nil {
				j.err = err
				break
			}
		}
	}
}

// after accounts for a chunk once its step ran.
func (s *Server) after(ctx context.Context, c chunk, stepErr error, ws *sample.Workspace) {
	j := c.j
	s.mu.Lock()
	j.done += c.n
	s.queued -= int64(c.n)
	s.mu.Unlock()
	err := stepErr
	if err == nil {
		err = j.err
	}
	if err != nil {
		s.unqueue(j)
		s.fail(j, err)
		return
	}
	if j.done < len(j.tokens) {
		select {
		case j.events <- &prefillv1.PrefillResponse{Event: &prefillv1.PrefillResponse_Progress{Progress: &prefillv1.Progress{TokensDone: int32(j.done)}}}:
		default: // progress is advisory
		}
		return
	}
	s.unqueue(j)
	computed := time.Now()
	sm, err := sample.NewWithWorkspace(j.params, ws)
	if err == nil {
		err = sm.Restore(j.tokens, nil)
	}
	var t sample.Token
	if err == nil {
		t, err = sm.Sample(c.logits)
	}
	if err != nil {
		s.fail(j, err)
		return
	}
	commit := &commonv1.KVCommit{FirstToken: t.ID, PromptTokens: int32(len(j.tokens)),
		PromptHash: commonv1.PromptHash(j.tokens), FinishReason: t.Finish.String()}
	first := &prefillv1.FirstToken{Token: protoconv.Token(t, 0), QueueUs: j.started.Sub(j.enqueued).Microseconds(),
		ComputeUs: computed.Sub(j.started).Microseconds(), Transport: "local"}
	if j.sess != nil {
		first.Transport = s.tr.Name()
	}
	s.m.queue.Observe(j.started.Sub(j.enqueued).Seconds())
	s.m.compute.Observe(computed.Sub(j.started).Seconds())
	if ce := s.lg.Check(zap.DebugLevel, "prefilled"); ce != nil {
		ce.Write(zap.String("request-id", j.id), zap.Int("prompt-tokens", len(j.tokens)), zap.Duration("queue", j.started.Sub(j.enqueued)),
			zap.Duration("compute", computed.Sub(j.started)), zap.String("transport", first.Transport), zap.Int32("first-token", t.ID))
	}
	j.events <- &prefillv1.PrefillResponse{Event: &prefillv1.PrefillResponse_FirstToken{FirstToken: first}}
	if j.sess == nil {
		j.commitFn(commit)
		s.end(j, nil)
		return
	}
	payload, _ := proto.Marshal(commit)
	s.commits.Add(1)
	go func() {
		defer s.commits.Done()
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CommitTimeout)
		err := j.sess.Commit(cctx, payload)
		cancel()
		if err == nil {
			s.m.commitWait.Observe(time.Since(computed).Seconds())
		}
		if ce := s.lg.Check(zap.DebugLevel, "committed"); ce != nil {
			ce.Write(zap.String("request-id", j.id), zap.Duration("transfer-wait", time.Since(computed)), zap.Error(err))
		}
		s.end(j, err)
	}()
}

// unqueue removes j from the queue (it is no longer planned), with the
// prompt tokens it had left.
func (s *Server) unqueue(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.queue {
		if q == j {
			s.queued -= int64(len(j.tokens) - j.done)
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.queue = s.queue[:len(s.queue):len(s.queue)]
			break
		}
	}
}

// fail ends a job that will not commit: its session is aborted (the decode
// node frees the reservation) and its blocks freed once the transport no
// longer reads them.
func (s *Server) fail(j *job, err error) {
	if j.sess != nil {
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = j.sess.Abort(actx, err.Error())
		cancel()
	} else if j.release != nil {
		j.release()
	}
	s.end(j, err)
}

// end frees the job's own blocks and delivers its outcome.
func (s *Server) end(j *job, err error) {
	s.m.ended(err)
	if err != nil {
		level := zap.DebugLevel
		if !canceled(err) {
			level = zap.WarnLevel // a failure nobody asked for
		}
		if ce := s.lg.Check(level, "prefill failed"); ce != nil {
			ce.Write(zap.String("request-id", j.id), zap.Int("prompt-tokens-done", j.done), zap.Error(err))
		}
	}
	if j.own && len(j.seq.Blocks) > 0 {
		if ferr := s.pool.Release(&j.seq); ferr != nil {
			s.lg.Error("free prefill blocks", zap.String("request-id", j.id), zap.Error(ferr))
		}
	}
	j.final <- err
	s.leave()
}
