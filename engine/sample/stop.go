package sample

import (
	"fmt"
	"strings"
)

// Stopper cuts a stream of detokenized text at the first stop string. Feed
// it each piece of text as it is produced (Push) and send what it returns;
// at the end of the stream send what Flush returns.
//
// The completion stops at the first position where a stop string ends; the
// text is cut where that stop string starts, and neither it nor anything
// after it is ever returned. When two stop strings end at the same position
// the one that starts first (the longer) wins, then the one given first.
// The result does not depend on how the text is split into pushes: Push holds
// back the longest tail of the text that could still be the start of a stop
// string, and releases it once it cannot. Stop strings are matched byte for
// byte.
//
// A Stopper is not safe for concurrent use.
type Stopper struct {
	stops   []string
	maxLen  int
	pending string // held back: a tail that is a proper prefix of a stop string
	stopped bool
	matched int
}

// NewStopper returns a Stopper for up to MaxStops non-empty stop strings. No
// stop strings is valid: the text then passes through unchanged.
func NewStopper(stops []string) (*Stopper, error) {
	if len(stops) > MaxStops {
		return nil, &ParamError{Param: "stop", Reason: fmt.Sprintf("at most %d stop strings, got %d", MaxStops, len(stops))}
	}
	s := &Stopper{stops: make([]string, len(stops)), matched: -1}
	for i, st := range stops {
		if st == "" {
			return nil, &ParamError{Param: "stop", Reason: fmt.Sprintf("stop string %d is empty", i)}
		}
		s.stops[i] = strings.Clone(st)
		s.maxLen = max(s.maxLen, len(st))
	}
	return s, nil
}

// Push takes the next piece of text and returns the text that can be sent
// now, and whether a stop string has been seen (then emit is the text up to
// it, and every later Push returns "", true).
func (s *Stopper) Push(text string) (emit string, stopped bool) {
	if s.stopped {
		return "", true
	}
	if len(s.stops) == 0 {
		return text, false
	}
	buf := text
	if s.pending != "" {
		buf = s.pending + text
	}
	// No match ends inside pending (it was searched before), so the earliest
	// match in buf is the earliest in the whole stream.
	idx, start, end := -1, 0, 0
	for i, st := range s.stops {
		j := strings.Index(buf, st)
		if j < 0 {
			continue
		}
		e := j + len(st)
		if idx < 0 || e < end || (e == end && j < start) {
			idx, start, end = i, j, e
		}
	}
	if idx >= 0 {
		s.stopped, s.matched, s.pending = true, idx, ""
		return buf[:start], true
	}
	hold := s.holdBack(buf)
	s.pending = strings.Clone(buf[len(buf)-hold:]) // do not pin the caller's text
	return buf[:len(buf)-hold], false
}

// holdBack returns the length of the longest tail of buf that is a proper
// prefix of a stop string.
func (s *Stopper) holdBack(buf string) int {
	for n := min(len(buf), s.maxLen-1); n > 0; n-- {
		tail := buf[len(buf)-n:]
		for _, st := range s.stops {
			if len(st) > n && st[:n] == tail {
				return n
			}
		}
	}
	return 0
}

// Flush ends the stream: it returns the text still held back (it did not
// turn into a stop string), or "" after a stop.
func (s *Stopper) Flush() string {
	out := s.pending
	s.pending = ""
	return out
}

// Stopped reports whether a stop string has been seen.
func (s *Stopper) Stopped() bool { return s.stopped }

// Matched returns the index (in the slice given to NewStopper) of the stop
// string that stopped the stream, or -1.
func (s *Stopper) Matched() int { return s.matched }
