package sample

import (
	"errors"
	"strings"
	"testing"
)

// refStop is the definition: scan the whole text for the first position at
// which a stop string ends; on equal ends the earlier start, then the lower
// index. It returns the text before the stop and the stop's index, or the
// whole text and -1.
func refStop(text string, stops []string) (string, int) {
	for end := 1; end <= len(text); end++ {
		best, bestLen := -1, 0
		for i, st := range stops {
			if len(st) > bestLen && strings.HasSuffix(text[:end], st) {
				best, bestLen = i, len(st)
			}
		}
		if best >= 0 {
			return text[:end-bestLen], best
		}
	}
	return text, -1
}

// runStopper pushes the pieces and returns everything emitted (with Flush),
// whether it stopped, and Matched.
func runStopper(t *testing.T, stops []string, pieces []string) (string, bool, int) {
	t.Helper()
	s, err := NewStopper(stops)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	stopped := false
	for _, p := range pieces {
		emit, st := s.Push(p)
		if stopped && (emit != "" || !st) {
			t.Fatalf("Push after the stop returned %q, %v", emit, st)
		}
		out.WriteString(emit)
		stopped = st
	}
	out.WriteString(s.Flush())
	if s.Stopped() != stopped {
		t.Fatalf("Stopped() = %v, Push said %v", s.Stopped(), stopped)
	}
	return out.String(), stopped, s.Matched()
}

func TestStopper(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		want    string
		stopped bool
		matched int
	}{
		{"no stops", nil, []string{"abc", "def"}, "abcdef", false, -1},
		{"no match", []string{"xyz"}, []string{"abc", "xy", "def"}, "abcxydef", false, -1},
		{"match in one piece", []string{"END"}, []string{"helloENDworld"}, "hello", true, 0},
		{"match across pieces", []string{"END"}, []string{"hello E", "N", "D world"}, "hello ", true, 0},
		{"match at the start", []string{"ab"}, []string{"a", "bc"}, "", true, 0},
		{"partial then no match", []string{"abc"}, []string{"xab", "d"}, "xabd", false, -1},
		{"partial at the end is flushed", []string{"abc"}, []string{"xyab"}, "xyab", false, -1},
		{"earliest end wins", []string{"abcde", "c"}, []string{"abcde"}, "ab", true, 1},
		{"earliest end across pushes", []string{"abcde", "c"}, []string{"ab", "cde"}, "ab", true, 1},
		{"same end: longer wins", []string{"b", "ab"}, []string{"xab"}, "x", true, 1},
		{"same stop twice: lower index", []string{"q", "q"}, []string{"aqa"}, "a", true, 0},
		{"overlapping prefix", []string{"aab"}, []string{"a", "a", "a", "b", "c"}, "a", true, 0},
		{"newline stop", []string{"\n\n"}, []string{"line one\n", "\nline two"}, "line one", true, 0},
		{"utf-8", []string{"ß!"}, []string{"straß", "e ß", "! x"}, "straße ", true, 0},
		{"empty pushes", []string{"zz"}, []string{"", "z", "", "z"}, "", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, stopped, matched := runStopper(t, tt.stops, tt.pieces)
			if got != tt.want || stopped != tt.stopped || matched != tt.matched {
				t.Fatalf("got %q stopped %v matched %d, want %q %v %d", got, stopped, matched, tt.want, tt.stopped, tt.matched)
			}
			ref, refIdx := refStop(strings.Join(tt.pieces, ""), tt.stops)
			if ref != tt.want || refIdx != tt.matched {
				t.Fatalf("reference %q %d disagrees with the table", ref, refIdx)
			}
		})
	}
}

func TestStopperHoldsBack(t *testing.T) {
	s, err := NewStopper([]string{"</s>", "###"})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ push, emit string }{
		{"hello <", "hello "},
		{"/", ""},
		{"x", "</x"},
		{"#", ""},
		{"#", ""},
		{"a", "##a"},
	} {
		if emit, stopped := s.Push(step.push); emit != step.emit || stopped {
			t.Fatalf("Push(%q) = %q, %v; want %q", step.push, emit, stopped, step.emit)
		}
	}
}

func TestNewStopperErrors(t *testing.T) {
	for _, stops := range [][]string{
		{"a", "b", "c", "d", "e"},
		{"a", ""},
	} {
		var pe *ParamError
		if _, err := NewStopper(stops); !errors.As(err, &pe) || pe.Param != "stop" || !errors.Is(err, ErrInvalidParams) {
			t.Errorf("NewStopper(%q) = %v, want a ParamError for stop", stops, err)
		}
	}
	if _, err := NewStopper([]string{"a", "b", "c", "d"}); err != nil {
		t.Errorf("four stops: %v", err)
	}
}

// FuzzStopper splits a random text into random pieces: the emitted text,
// whether it stopped and which stop matched must equal the whole-text
// definition, and so must pushing the text at once and byte by byte.
func FuzzStopper(f *testing.F) {
	f.Add("hello END world", "END", "", []byte{3, 1, 4})
	f.Add("abcde", "abcde", "c", []byte{2})
	f.Add("aaab", "aab", "ab", []byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, text, stop1, stop2 string, cuts []byte) {
		var stops []string
		for _, s := range []string{stop1, stop2} {
			if s != "" {
				stops = append(stops, s)
			}
		}
		want, wantIdx := refStop(text, stops)
		wantStopped := wantIdx >= 0
		var pieces []string
		rest := text
		for _, c := range cuts {
			if rest == "" {
				break
			}
			n := int(c) % (len(rest) + 1)
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		pieces = append(pieces, rest)
		bytewise := make([]string, len(text))
		for i := 0; i < len(text); i++ {
			bytewise[i] = text[i : i+1]
		}
		for _, split := range [][]string{pieces, {text}, bytewise} {
			got, stopped, idx := runStopper(t, stops, split)
			if got != want || stopped != wantStopped || idx != wantIdx {
				t.Fatalf("stops %q, pieces %q: got %q %v %d, want %q %v %d", stops, split, got, stopped, idx, want, wantStopped, wantIdx)
			}
		}
	})
}
