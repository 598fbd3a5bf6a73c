package load

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Errors of workload specifications.
var (
	ErrBadLengths  = errors.New("load: bad length")
	ErrBadClass    = errors.New("load: bad request class")
	ErrBadWorkload = errors.New("load: bad workload")
)

// Lengths is a token count: fixed (Min == Max) or uniform in [Min, Max].
type Lengths struct{ Min, Max int }

// Fixed returns lengths that are always n.
func Fixed(n int) Lengths { return Lengths{n, n} }

// ParseLengths parses "N" (fixed) or "A:B" (uniform, inclusive).
func ParseLengths(s string) (Lengths, error) {
	a, b, ranged := strings.Cut(strings.TrimSpace(s), ":")
	lo, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return Lengths{}, fmt.Errorf("%w %q: want N or MIN:MAX", ErrBadLengths, s)
	}
	hi := lo
	if ranged {
		if hi, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
			return Lengths{}, fmt.Errorf("%w %q: want N or MIN:MAX", ErrBadLengths, s)
		}
	}
	l := Lengths{lo, hi}
	return l, l.validate()
}

func (l Lengths) validate() error {
	if l.Min < 1 || l.Max < l.Min || l.Max > 1<<20 {
		return fmt.Errorf("%w %s: want 1 ≤ MIN ≤ MAX ≤ %d", ErrBadLengths, l, 1<<20)
	}
	return nil
}

func (l Lengths) String() string {
	if l.Min == l.Max {
		return strconv.Itoa(l.Min)
	}
	return fmt.Sprintf("%d:%d", l.Min, l.Max)
}

func (l Lengths) draw(r *rand.Rand) int {
	if l.Max <= l.Min {
		return l.Min
	}
	return l.Min + r.IntN(l.Max-l.Min+1)
}

// Class is one kind of request of a mixed workload: each request is of a
// class drawn by weight.
type Class struct {
	Name   string
	Weight float64
	Prompt Lengths // prompt tokens (ignored with a prompt file)
	Output Lengths // max_tokens (a prompt file's max_tokens wins)
}

// ParseClass parses "name=long,weight=1,prompt=1024:4096,output=16".
// prompt and output are required; weight defaults to 1.
func ParseClass(s string) (Class, error) {
	c := Class{Weight: 1}
	var havePrompt, haveOutput bool
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return c, fmt.Errorf("%w %q: %q is not key=value", ErrBadClass, s, part)
		}
		var err error
		switch k {
		case "name":
			c.Name = v
		case "weight":
			c.Weight, err = strconv.ParseFloat(v, 64)
			if err == nil && (c.Weight <= 0 || math.IsInf(c.Weight, 0) || math.IsNaN(c.Weight)) {
				err = errors.New("weight must be positive")
			}
		case "prompt":
			c.Prompt, err = ParseLengths(v)
			havePrompt = true
		case "output":
			c.Output, err = ParseLengths(v)
			haveOutput = true
		default:
			err = fmt.Errorf("unknown key %q (want name, weight, prompt, output)", k)
		}
		if err != nil {
			return c, fmt.Errorf("%w %q: %v", ErrBadClass, s, err)
		}
	}
	if !havePrompt || !haveOutput {
		return c, fmt.Errorf("%w %q: prompt= and output= are required", ErrBadClass, s)
	}
	if c.Name == "" {
		c.Name = "p" + c.Prompt.String() + "-o" + c.Output.String()
	}
	return c, nil
}

// Arrival is how requests are issued.
type Arrival string

// Arrivals.
const (
	// Poisson sends at Rate on average with exponential gaps (open loop).
	Poisson Arrival = "poisson"
	// Constant sends every 1/Rate seconds (open loop).
	Constant Arrival = "constant"
	// Closed keeps Concurrency requests in flight (closed loop).
	Closed Arrival = "closed"
)

// Workload says which requests to send and when.
type Workload struct {
	Classes []Class
	// Prompts, when set, are the prompts, used in turn; a prompt's
	// MaxTokens overrides the class's output length.
	Prompts []FilePrompt
	Arrival Arrival
	// Rate is the open-loop request rate (requests per second).
	Rate float64
	// Concurrency is the closed-loop number of requests in flight.
	Concurrency int
	// Requests is how many requests to send; Duration, when set, also
	// stops sending once it has passed.
	Requests int
	Duration time.Duration
	// Seed makes the workload reproducible: the same seed gives the same
	// prompts, lengths, classes and arrival gaps (the arrival gaps come
	// from their own stream, so a rate change keeps the prompts).
	Seed uint64
	// PromptIDs sends prompts as token ids in [FirstID, Vocab) (exact
	// lengths; duet and vLLM take them); otherwise prompts are text of
	// common English words, about one token per word.
	PromptIDs bool
	Vocab     int
	FirstID   int
}

// Validate checks the workload.
func (w *Workload) Validate() error {
	if len(w.Classes) == 0 {
		return fmt.Errorf("%w: no request class", ErrBadWorkload)
	}
	for _, c := range w.Classes {
		if err := c.Prompt.validate(); err != nil && len(w.Prompts) == 0 {
			return err
		}
		if err := c.Output.validate(); err != nil {
			return err
		}
		if c.Weight <= 0 {
			return fmt.Errorf("%w: class %q has weight %v", ErrBadWorkload, c.Name, c.Weight)
		}
	}
	switch w.Arrival {
	case Poisson, Constant:
		if !(w.Rate > 0) || math.IsInf(w.Rate, 0) {
			return fmt.Errorf("%w: %s arrivals need a positive rate, got %v", ErrBadWorkload, w.Arrival, w.Rate)
		}
	case Closed:
		if w.Concurrency < 1 {
			return fmt.Errorf("%w: closed loop needs concurrency ≥ 1, got %d", ErrBadWorkload, w.Concurrency)
		}
	default:
		return fmt.Errorf("%w: arrival %q (want poisson, constant or closed)", ErrBadWorkload, w.Arrival)
	}
	if w.Requests < 1 {
		return fmt.Errorf("%w: requests must be ≥ 1, got %d", ErrBadWorkload, w.Requests)
	}
	if w.Duration < 0 {
		return fmt.Errorf("%w: negative duration", ErrBadWorkload)
	}
	if w.PromptIDs && (w.FirstID < 0 || w.Vocab <= w.FirstID) {
		return fmt.Errorf("%w: token-id prompts need 0 ≤ first id < vocab, got %d, %d", ErrBadWorkload, w.FirstID, w.Vocab)
	}
	return nil
}

// Request is one planned request.
type Request struct {
	ID    int
	Class string
	// At is when an open-loop run sends it, from the start of the run.
	At time.Duration
	// Exactly one of PromptText and PromptIDs is set.
	PromptText string
	PromptIDs  []int32
	// PromptTokens is the intended prompt length (exact for ids, about
	// right for generated text, 0 when unknown).
	PromptTokens int
	MaxTokens    int
}

// Planner yields a workload's requests in order, deterministically.
type Planner struct {
	w        Workload
	content  *rand.Rand
	arrivals *rand.Rand
	cum      []float64
	n        int
	at       time.Duration
}

// NewPlanner returns a planner for a validated workload.
func NewPlanner(w Workload) *Planner {
	p := &Planner{w: w,
		content:  rand.New(rand.NewPCG(w.Seed, 0x636f6e74656e74)), // "content"
		arrivals: rand.New(rand.NewPCG(w.Seed, 0x6172726976616c)), // "arrival"
	}
	total := 0.0
	for _, c := range w.Classes {
		total += c.Weight
		p.cum = append(p.cum, total)
	}
	return p
}

// Next returns the next request; ok is false once Requests were planned
// or the next arrival would come after Duration.
func (p *Planner) Next() (r Request, ok bool) {
	if p.n >= p.w.Requests {
		return r, false
	}
	// The first request goes at once; each later one after a gap.
	if p.n > 0 {
		switch p.w.Arrival {
		case Poisson:
			p.at += time.Duration(p.arrivals.ExpFloat64() / p.w.Rate * float64(time.Second))
		case Constant:
			p.at = time.Duration(float64(p.n) / p.w.Rate * float64(time.Second))
		}
	}
	if p.w.Duration > 0 && p.w.Arrival != Closed && p.at >= p.w.Duration {
		return r, false
	}
	c := p.w.Classes[0]
	if len(p.w.Classes) > 1 {
		x := p.content.Float64() * p.cum[len(p.cum)-1]
		for i, v := range p.cum {
			if x < v {
				c = p.w.Classes[i]
				break
			}
		}
	}
	r = Request{ID: p.n, Class: c.Name, At: p.at, MaxTokens: c.Output.draw(p.content)}
	if len(p.w.Prompts) > 0 {
		fp := p.w.Prompts[p.n%len(p.w.Prompts)]
		r.PromptText, r.PromptIDs, r.PromptTokens = fp.Text, fp.IDs, fp.Tokens
		if fp.IDs != nil {
			r.PromptTokens = len(fp.IDs)
		}
		if fp.MaxTokens > 0 {
			r.MaxTokens = fp.MaxTokens
		}
	} else {
		n := c.Prompt.draw(p.content)
		r.PromptTokens = n
		if p.w.PromptIDs {
			r.PromptIDs = make([]int32, n)
			for i := range r.PromptIDs {
				r.PromptIDs[i] = int32(p.w.FirstID + p.content.IntN(p.w.Vocab-p.w.FirstID))
			}
		} else {
			r.PromptText = words(p.content, n)
		}
	}
	p.n++
	return r, true
}

// words returns n words drawn from a list of common English words, each
// one token for Llama-family tokenizers (a leading space and the word).
// The count includes no BOS; servers add their own.
func words(r *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n * 6)
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(commonWords[r.IntN(len(commonWords))])
	}
	return b.String()
}

var commonWords = strings.Fields(`the of and to in is was that for it with as on be at by this had not are but
from or have an they which one you were all we her she there would their will when who him been has more if no
out do so can what up said about other into than its time only could new them man some these then two first may
any like now my such make over our even most me state after also made many did must before back see through way
where get much go well your know should down work year because come people just say each those take day good how
long little use very great still own men life old world here both last between three high place house home under
while right think small name part water going found never city want word light give tree sound open point hand
kind look day ran live came away story end ask bird boy girl dog cat sun sky red blue green happy played friend
big walk run play saw tell help fish ball box car book tall warm cold fast slow mom dad read sing jump rain`)
