package sample

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Finish says whether a sampled token ends the completion.
type Finish uint8

const (
	// NotFinished: the completion goes on.
	NotFinished Finish = iota
	// FinishStop: the token is one of Params.StopTokens.
	FinishStop
	// FinishLength: the token is the Params.MaxTokens-th output token.
	FinishLength
)

// String returns OpenAI's finish_reason ("stop", "length"), or "" while the
// completion goes on.
func (f Finish) String() string {
	switch f {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	}
	return ""
}

// TokenLogprob is a token id and its log probability.
type TokenLogprob struct {
	ID      int32
	Logprob float32
}

// Token is one sampled token.
type Token struct {
	ID int32
	// Logprob is the token's log probability (log-softmax of the penalized
	// logits, before temperature) when Params.Logprobs is set, else 0. It is
	// -Inf for a token with a -Inf logit; OpenAI's wire format has no
	// infinity (it sends -9999.0), the HTTP edge maps it.
	Logprob float32
	// TopLogprobs holds the Params.TopLogprobs most likely tokens, best first
	// (ties by lower id), NaN logits never listed. It is the Sampler's memory:
	// valid until the next Sample or Restore; copy it to keep it.
	TopLogprobs []TokenLogprob
	// Finish tells whether this token ends the completion.
	Finish Finish
}

type savedLogit struct {
	id int32
	v  float32
}

// Sampler turns the logits of one sequence into its next token, one call per
// output token. It is not safe for concurrent use.
type Sampler struct {
	p      Params
	vocab  int
	seed   uint64
	invT   float32
	ws     *Workspace
	stops  []int32 // sorted, distinct
	track  bool    // a penalty is on: keep gen*
	step   int     // output tokens so far; the index of the next one
	finish Finish
	greedy bool // temperature 0, or so small that 1/temperature overflows

	// Distinct output tokens so far, sorted, with their counts.
	genIDs []int32
	genCnt []int32
	// Distinct prompt tokens (only with a repetition penalty), sorted, and
	// the same set as a bitset for membership tests.
	promptIDs []int32
	promptSet []uint64

	saved   []savedLogit   // logits changed by the penalties, to put back
	topHeap []uint64       // MaxTopLogprobs keys for the alternatives
	top     []TokenLogprob // Token.TopLogprobs
}

// New returns a Sampler for one completion over a vocabulary of that size,
// at output token 0 with no prompt (call Restore to give it the prompt for
// the repetition penalty, or the tokens generated so far on another node).
// It allocates its own Workspace; see NewWithWorkspace to share one. Without
// Params.Seed it draws a seed from crypto/rand (the only I/O it does).
func New(p Params, vocab int) (*Sampler, error) {
	if vocab <= 0 || vocab > MaxVocab {
		return nil, errVocab(vocab)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ws, err := NewWorkspace(vocab)
	if err != nil {
		return nil, err
	}
	return NewWithWorkspace(p, ws)
}

// NewWithWorkspace is New with a shared Workspace (whose vocabulary is the
// sampler's). Samplers that share a Workspace must not Sample at the same
// time.
func NewWithWorkspace(p Params, ws *Workspace) (*Sampler, error) {
	if ws == nil {
		return nil, fmt.Errorf("%w: nil workspace", ErrWorkspace)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	vocab := ws.vocab
	stops := slices.Clone(p.StopTokens)
	slices.Sort(stops)
	stops = slices.Compact(stops)
	for _, id := range stops {
		if int(id) >= vocab {
			return nil, &ParamError{Param: "stop_token_ids", Reason: fmt.Sprintf("token id %d is outside the vocabulary of %d", id, vocab)}
		}
	}
	s := &Sampler{p: p, vocab: vocab, ws: ws, stops: stops}
	s.p.StopTokens = stops
	if p.Seed != nil {
		seed := *p.Seed
		s.seed = seed
		s.p.Seed = &seed
	} else {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
		s.seed = binary.LittleEndian.Uint64(b[:])
		seed := s.seed
		s.p.Seed = &seed
	}
	s.invT = 1 / p.Temperature
	s.greedy = p.Temperature == 0 || math.IsInf(float64(s.invT), 1)
	if p.TopK < 0 || p.TopK >= vocab {
		s.p.TopK = 0
	}
	s.track = p.RepetitionPenalty != 1 || p.PresencePenalty != 0 || p.FrequencyPenalty != 0
	if s.track {
		n := min(vocab, 1024)
		if p.MaxTokens > 0 {
			n = min(n, p.MaxTokens)
		}
		s.genIDs = make([]int32, 0, n)
		s.genCnt = make([]int32, 0, n)
		s.saved = make([]savedLogit, 0, 2*n)
	}
	if p.Logprobs {
		s.topHeap = make([]uint64, MaxTopLogprobs+1)
		s.top = make([]TokenLogprob, 0, p.TopLogprobs)
	}
	return s, nil
}

// Seed returns the seed in use (the request's, or the one New drew). Hand it
// to whoever samples the rest of the completion.
func (s *Sampler) Seed() uint64 { return s.seed }

// Params returns (a copy of) the parameters in use, with Seed always set,
// StopTokens sorted without duplicates and TopK normalized (0 when off).
func (s *Sampler) Params() Params {
	p := s.p
	seed := s.seed
	p.Seed = &seed
	p.StopTokens = slices.Clone(s.stops)
	return p
}

// Step returns the number of output tokens so far, which is the index of the
// next one.
func (s *Sampler) Step() int { return s.step }

// Finished returns why the completion ended, or NotFinished.
func (s *Sampler) Finished() Finish { return s.finish }

// Restore puts the sampler in the state it would be in after sampling
// generated (the output tokens so far, in order) for a completion of prompt:
// the next Sample draws output token len(generated) with the same random
// number and the same penalties as a sampler that generated them itself. The
// prompt matters only for the repetition penalty. It fails, changing nothing,
// when a token is outside the vocabulary, a stop token occurs before the last
// position, or generated is longer than MaxTokens.
func (s *Sampler) Restore(prompt, generated []int32) error {
	for _, id := range prompt {
		if id < 0 || int(id) >= s.vocab {
			return fmt.Errorf("%w: prompt token %d, vocabulary %d", ErrToken, id, s.vocab)
		}
	}
	for i, id := range generated {
		if id < 0 || int(id) >= s.vocab {
			return fmt.Errorf("%w: generated token %d, vocabulary %d", ErrToken, id, s.vocab)
		}
		if i < len(generated)-1 && s.isStop(id) {
			return fmt.Errorf("%w: stop token %d at position %d of %d", ErrHistory, id, i, len(generated))
		}
	}
	if s.p.MaxTokens > 0 && len(generated) > s.p.MaxTokens {
		return fmt.Errorf("%w: %d generated tokens, max_tokens %d", ErrHistory, len(generated), s.p.MaxTokens)
	}

	s.promptIDs, s.promptSet = nil, nil
	if s.p.RepetitionPenalty != 1 && len(prompt) > 0 {
		set := make([]uint64, (s.vocab+63)/64)
		for _, id := range prompt {
			set[id/64] |= 1 << (id % 64)
		}
		ids := make([]int32, 0, min(len(prompt), s.vocab))
		for w, x := range set {
			for x != 0 {
				b := x & -x
				ids = append(ids, int32(w*64+bits.TrailingZeros64(b)))
				x &^= b
			}
		}
		s.promptIDs, s.promptSet = ids, set
	}
	s.genIDs, s.genCnt = s.genIDs[:0], s.genCnt[:0]
	s.step, s.finish = 0, NotFinished
	for _, id := range generated {
		s.accept(id)
	}
	// penalize saves each prompt token once and each output token up to
	// twice (repetition, then frequency/presence).
	if need := len(s.promptIDs) + 2*cap(s.genIDs); cap(s.saved) < need {
		s.saved = make([]savedLogit, 0, need)
	}
	return nil
}

// Sample returns output token Step() for this row of logits (len == vocab,
// the model's scores for the next position). It changes the penalized
// entries of logits during the call and puts the original values back
// before it returns, so one row can feed several samplers one after the
// other (n > 1 completions of one prompt), but not at the same time. On
// error the sampler is unchanged. It does not allocate (see doc.go).
func (s *Sampler) Sample(logits []float32) (Token, error) {
	if s.finish != NotFinished {
		return Token{}, ErrFinished
	}
	if len(logits) != s.vocab {
		return Token{}, fmt.Errorf("%w: %d logits, vocabulary %d", ErrLogits, len(logits), s.vocab)
	}
	s.penalize(logits)
	id, lmax, err := s.choose(logits)
	var t Token
	if err == nil {
		t.ID = id
		if s.p.Logprobs {
			t.Logprob, t.TopLogprobs = s.logprobs(logits, id, lmax)
		}
	}
	s.unpenalize(logits)
	if err != nil {
		return Token{}, err
	}
	s.accept(id)
	t.Finish = s.finish
	return t, nil
}

// choose picks the token from the penalized logits and returns it with the
// largest logit.
func (s *Sampler) choose(l []float32) (int32, float32, error) {
	s.ws.gathered, s.ws.probsT1 = -1, false
	if s.greedy {
		i := argmax(l)
		if i < 0 {
			return 0, 0, ErrNoCandidates
		}
		if math.IsInf(float64(l[i]), 1) {
			return 0, 0, ErrInfLogit
		}
		return int32(i), l[i], nil
	}
	ws := s.ws
	u := uniform24(s.seed, uint64(s.step))
	if k := s.p.TopK; k > 0 {
		// Top-k: the k best by logit, then everything on that short list.
		n := topLogits(l, k, ws.keys)
		if n == 0 {
			return 0, 0, ErrNoCandidates
		}
		cand := ws.keys[:n]
		lmax := logitKeyValue(cand[0])
		if err := checkMax(lmax); err != nil {
			return 0, 0, err
		}
		var z uint64
		for j, k := range cand {
			id := logitKeyID(k)
			p := prob(float32(l[id]-lmax) * s.invT)
			cand[j] = probKey(p, id)
			z += mass(p)
		}
		slices.Sort(cand)
		kept := z
		if s.p.TopP < 1 {
			tgt := topPTarget(s.p.TopP, z)
			var c uint64
			for _, k := range cand {
				c += mass(keyProb(k))
				if c >= tgt {
					break
				}
			}
			kept = c
		}
		if s.p.MinP > 0 {
			var c uint64
			for _, k := range cand {
				p := keyProb(k)
				if p < s.p.MinP {
					break
				}
				c += mass(p)
			}
			kept = min(kept, c)
		}
		r := scaleUniform(u, kept)
		var c uint64
		for _, k := range cand {
			c += mass(keyProb(k))
			if c > r {
				return keyID(k), lmax, nil
			}
		}
		return keyID(cand[0]), lmax, nil // unreachable: c reaches kept > r
	}

	// No top-k: probabilities of the whole vocabulary, exact mass per
	// bucket, then only the bucket that holds the cut is sorted.
	lmax := maxLogit(l)
	if err := checkMax(lmax); err != nil {
		return 0, 0, err
	}
	ws.hist = [nBucket]uint64{}
	z := fillProbs(l, ws.probs, lmax, s.invT, &ws.hist)
	ws.probsT1 = s.invT == 1
	kept := z
	if s.p.TopP < 1 {
		_, kept = s.firstAbove(topPTarget(s.p.TopP, z) - 1)
	}
	if s.p.MinP > 0 {
		kept = min(kept, massAtLeast(ws.probs, s.p.MinP))
	}
	id, _ := s.firstAbove(scaleUniform(u, kept))
	return id, lmax, nil
}

// firstAbove returns the first token, in probability order, at which the
// running sum of mass exceeds x, and that running sum. x must be below the
// total mass in ws.hist.
func (s *Sampler) firstAbove(x uint64) (int32, uint64) {
	ws := s.ws
	var c uint64
	for b := nBucket - 1; b >= 0; b-- {
		h := ws.hist[b]
		if c+h <= x {
			c += h
			continue
		}
		if ws.gathered != b {
			ws.nkeys = len(gatherBucket(ws.probs, uint32(b), ws.keys))
			ws.gathered = b
		}
		for _, k := range ws.keys[:ws.nkeys] {
			c += mass(keyProb(k))
			if c > x {
				return keyID(k), c
			}
		}
		break // unreachable: the bucket's mass takes c past x
	}
	return 0, c
}

// topPTarget is the mass the top-p prefix must reach: ceil(topP * z), at
// least 1 (so the most likely token is always kept) and at most z.
func topPTarget(topP float32, z uint64) uint64 {
	t := uint64(math.Ceil(float64(topP) * float64(z)))
	return max(1, min(t, z))
}

func checkMax(lmax float32) error {
	switch {
	case math.IsInf(float64(lmax), -1):
		return ErrNoCandidates
	case math.IsInf(float64(lmax), 1):
		return ErrInfLogit
	}
	return nil
}

// logprobs returns the log-softmax of the penalized logits (temperature 1)
// for id and for the TopLogprobs best tokens.
func (s *Sampler) logprobs(l []float32, id int32, lmax float32) (float32, []TokenLogprob) {
	ws := s.ws
	if !ws.probsT1 {
		// The draw is done: the scratch memory is free to hold
		// exp(logit - max); the histogram that comes with it is not used.
		fillProbs(l, ws.probs, lmax, 1, &ws.hist)
		ws.gathered, ws.probsT1 = -1, true
	}
	lse := float64(lmax) + math.Log(sumProbs(ws.probs))
	s.top = s.top[:0]
	if n := s.p.TopLogprobs; n > 0 {
		m := topLogits(l, n, s.topHeap)
		for _, k := range s.topHeap[:m] {
			s.top = append(s.top, TokenLogprob{ID: logitKeyID(k), Logprob: float32(float64(logitKeyValue(k)) - lse)})
		}
	}
	return float32(float64(l[id]) - lse), s.top
}

// accept records id as the next output token.
func (s *Sampler) accept(id int32) {
	s.step++
	if s.track {
		j, found := slices.BinarySearch(s.genIDs, id)
		if found {
			s.genCnt[j]++
		} else {
			s.genIDs = slices.Insert(s.genIDs, j, id)
			s.genCnt = slices.Insert(s.genCnt, j, 1)
		}
	}
	switch {
	case s.isStop(id):
		s.finish = FinishStop
	case s.p.MaxTokens > 0 && s.step >= s.p.MaxTokens:
		s.finish = FinishLength
	}
}

func (s *Sampler) isStop(id int32) bool {
	_, found := slices.BinarySearch(s.stops, id)
	return found
}

// penalize applies the repetition penalty (prompt and output tokens, once
// per distinct token) and then the frequency and presence penalties (output
// tokens), saving every value it changes.
func (s *Sampler) penalize(l []float32) {
	s.saved = s.saved[:0]
	if !s.track {
		return
	}
	if r := s.p.RepetitionPenalty; r != 1 {
		for _, id := range s.promptIDs {
			s.saved = append(s.saved, savedLogit{id, l[id]})
			l[id] = repetition(l[id], r)
		}
		for _, id := range s.genIDs {
			if s.promptSet != nil && s.promptSet[id/64]&(1<<(id%64)) != 0 {
				continue
			}
			s.saved = append(s.saved, savedLogit{id, l[id]})
			l[id] = repetition(l[id], r)
		}
	}
	if f, pr := s.p.FrequencyPenalty, s.p.PresencePenalty; f != 0 || pr != 0 {
		for j, id := range s.genIDs {
			s.saved = append(s.saved, savedLogit{id, l[id]})
			v := l[id] - float32(float32(s.genCnt[j])*f)
			l[id] = v - pr
		}
	}
}

// repetition is the HF transformers rule: a positive logit is divided by r,
// a negative one multiplied.
func repetition(v, r float32) float32 {
	if v > 0 {
		return v / r
	}
	return v * r
}

// unpenalize puts back what penalize changed, last change first, so a token
// changed twice ends with its original value.
func (s *Sampler) unpenalize(l []float32) {
	for i := len(s.saved) - 1; i >= 0; i-- {
		l[s.saved[i].id] = s.saved[i].v
	}
	s.saved = s.saved[:0]
}

func errVocab(vocab int) error {
	return fmt.Errorf("%w: %d (want 1 to %d)", ErrVocab, vocab, MaxVocab)
}
